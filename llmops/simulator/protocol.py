"""Request parsing and error bodies in vLLM's shapes.

Requests are validated by hand (cheaper than a pydantic model per request): wrong types give 400 in vLLM's error
shape; unknown fields are accepted and ignored, as vLLM does.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

from llmops.simulator.text import count_tokens, text_digest
from llmops.simulator.tokenizer import decode, decode_pieces, out_of_vocabulary

MAX_LOGPROBS = 20  # vLLM's default --max-logprobs


class RequestError(Exception):
    """A request that vLLM would refuse; becomes ``{"error": {...}}`` with ``status``."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, err_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.err_type = err_type  # None: vLLM's type for the status


def error_type(status: int) -> str:
    """vLLM's error ``type`` for an HTTP status: 400 → BadRequestError, 503 → ServiceUnavailableError."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "InternalServerError" if status >= 500 else "BadRequestError"
    name = "".join(phrase.replace("-", " ").replace("'", "").split())
    return name if name.endswith("Error") else name + "Error"


def error_object(message: str, status: int, param: str | None = None, err_type: str | None = None) -> dict:
    """``{"error": {"message", "type", "param", "code"}}``; ``code`` is the HTTP status as an integer, as in vLLM."""
    return {"error": {"message": message, "type": err_type or error_type(status), "param": param, "code": status}}


def error_bytes(message: str, status: int, param: str | None = None, err_type: str | None = None) -> bytes:
    """:func:`error_object` serialised."""
    return orjson.dumps(error_object(message, status, param, err_type))


@dataclass(slots=True)
class Prompt:
    """One prompt: what is matched and echoed, its token count, and its segments for the prefix cache."""

    text: str  # the last user message (chat) or the prompt (completions)
    tokens: int
    digests: list[bytes]  # digests[k] covers segments 0..k
    segment_tokens: list[int]
    pieces: list[str] | None = None  # the token pieces of a completion prompt given as token ids

    @property
    def seed(self) -> int:
        """A stable number derived from the whole prompt."""
        return int.from_bytes(self.digests[-1], "big") if self.digests else 0


@dataclass(slots=True)
class ToolCall:
    """One function call of an answer; ``call_id`` is the hex part of its ids (each API adds its prefixes)."""

    call_id: str
    name: str
    arguments: str  # JSON text


@dataclass(slots=True)
class Tooling:
    """What a request says about tools and structured output (see :mod:`llmops.simulator.tools`)."""

    tools: dict[str, Any]  # name -> parameters schema
    choice: str = "auto"  # "none", "auto", "required" or "named"
    named: str | None = None
    parallel: bool = True
    output_format: dict[str, Any] | None = None  # {"type": "json_object"} or {"type": "json_schema", "schema": ...}


@dataclass(slots=True)
class GenerationRequest:
    """A chat or completion request, reduced to what the simulator needs."""

    model: str | None
    prompts: list[Prompt]
    n: int = 1
    max_tokens: int | None = None
    min_tokens: int = 0
    stream: bool = False
    include_usage: bool = False
    continuous_usage: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    echo_prompt: bool = False  # completions' own `echo` parameter
    echo_only: bool = False  # completions with echo and max_tokens 0: the prompt, and no generated text
    fresh_turn: bool = True  # the conversation's last message is the user's (not a tool result)
    tooling: Tooling | None = None
    simulate: Any = None


@dataclass(slots=True)
class EmbeddingRequest:
    """An embeddings request."""

    model: str | None
    inputs: list[tuple[str, int]]  # (text, tokens)
    encoding_format: str = "float"
    dimensions: int | None = None
    simulate: Any = None


def loads(raw: bytes) -> dict:
    """Parse a JSON request body; 400 when it is not a JSON object."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise RequestError(f"JSON decode error: {error}") from None
    if not isinstance(body, dict):
        raise RequestError("Input should be a valid dictionary or object to extract fields from")
    return body


def _invalid(name: str, what: str) -> RequestError:
    return RequestError(f"{name}: Input should be {what}", param=name)


def _opt_int(body: dict, name: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, "a valid integer")
    if minimum is not None and value < minimum:
        raise RequestError(f"{name} must be at least {minimum}, got {value}.", param=name)
    if maximum is not None and value > maximum:
        raise RequestError(f"{name} must be at most {maximum}, got {value}.", param=name)
    return value


def _opt_bool(body: dict, name: str) -> bool | None:
    value = body.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise _invalid(name, "a valid boolean")


def _check_numbers(body: dict, names: tuple[str, ...]) -> None:
    for name in names:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _invalid(name, "a valid number")


def _model(body: dict) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _invalid("model", "a valid string")
    return model


def content_text(content: Any, where: str) -> tuple[str, int]:
    """The text of a message ``content`` (a string, or the text parts of a list) and its token count."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, count_tokens(content)
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict):
                raise _invalid(f"{where}.content.{i}", "a valid dictionary")
            if part.get("type", "text") == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise _invalid(f"{where}.content.{i}.text", "a valid string")
                texts.append(text)
        return "\n".join(texts), sum(count_tokens(text) for text in texts)
    raise _invalid(f"{where}.content", "a valid string or a list of content parts")


def _common(body: dict, request: GenerationRequest) -> None:
    request.n = _opt_int(body, "n", minimum=1) or 1
    request.min_tokens = _opt_int(body, "min_tokens", minimum=0) or 0
    _opt_bool(body, "ignore_eos")  # generated answers always run to max_tokens
    request.seed = _opt_int(body, "seed")
    request.stream = bool(_opt_bool(body, "stream"))
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _invalid("stream_options", "a valid dictionary")
        if not request.stream:
            raise RequestError("Stream options can only be defined when `stream=True`.", param="stream_options")
        include = _opt_bool(options, "include_usage")
        request.include_usage = True if include is None else include  # vLLM's StreamOptions default is True
        request.continuous_usage = request.include_usage and bool(_opt_bool(options, "continuous_usage_stats"))
    stop = body.get("stop")
    if isinstance(stop, str):
        request.stop = (stop,) if stop else ()
    elif isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        request.stop = tuple(item for item in stop if item)
    elif stop is not None:
        raise _invalid("stop", "a valid string or a list of strings")
    _check_numbers(body, ("temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty"))
    _opt_int(body, "top_k")
    request.simulate = body.get("simulate")


def _check_min_tokens(request: GenerationRequest) -> None:
    if request.max_tokens is not None and request.min_tokens > request.max_tokens:
        raise RequestError(
            f"min_tokens must be less than or equal to max_tokens={request.max_tokens}, got {request.min_tokens}.",
            param="min_tokens",
        )


def parse_chat(body: dict) -> GenerationRequest:
    """A ``/v1/chat/completions`` body; raises :class:`RequestError` on wrong types."""
    messages = body.get("messages")
    if messages is None:
        raise RequestError("messages: Field required", param="messages")
    if not isinstance(messages, list):
        raise _invalid("messages", "a valid list")
    if not messages:
        raise RequestError("messages: List should have at least 1 item after validation, not 0", param="messages")
    digests: list[bytes] = []
    segment_tokens: list[int] = []
    previous = b""
    last_user = ""
    role: Any = "user"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid(f"messages.{i}", "a valid dictionary")
        role = message.get("role")
        if not isinstance(role, str):
            raise _invalid(f"messages.{i}.role", "a valid string")
        text, tokens = message_text(message, f"messages.{i}")
        previous = text_digest(role, text, previous=previous)
        digests.append(previous)
        segment_tokens.append(tokens)
        if role == "user":
            last_user = text
    request = GenerationRequest(
        model=_model(body),
        prompts=[Prompt(last_user, sum(segment_tokens), digests, segment_tokens)],
        fresh_turn=role == "user",
    )
    _common(body, request)
    max_completion = _opt_int(body, "max_completion_tokens", minimum=1)
    request.max_tokens = max_completion or _opt_int(body, "max_tokens", minimum=1)
    _check_min_tokens(request)
    request.logprobs = bool(_opt_bool(body, "logprobs"))
    top = _opt_int(body, "top_logprobs", minimum=0, maximum=MAX_LOGPROBS)
    if top and not request.logprobs:
        raise RequestError("when using `top_logprobs`, `logprobs` must be set to true.", param="top_logprobs")
    request.top_logprobs = top or 0
    return request


def _tool_call_text(calls: Any, where: str) -> str:
    """The text of an assistant message's ``tool_calls`` (their names and arguments), which count as prompt tokens."""
    if calls is None:
        return ""
    if not isinstance(calls, list):
        raise _invalid(f"{where}.tool_calls", "a valid list")
    parts = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RequestError(f"{where}.tool_calls.{j}.function.name: Field required", param="messages")
        arguments = function.get("arguments")
        parts.append(f"{function['name']} {arguments if isinstance(arguments, str) else ''}".strip())
    return "\n".join(parts)


def message_text(message: dict[str, Any], where: str) -> tuple[str, int]:
    """The text of a chat message (its content, then its tool calls' names and arguments) and its token count."""
    text, tokens = content_text(message.get("content"), where)
    calls = _tool_call_text(message.get("tool_calls"), where)
    if calls:
        text, tokens = f"{text}\n{calls}" if text else calls, tokens + count_tokens(calls)
    return text, tokens


def _token_ids(ids: list[int], name: str) -> tuple[str, int, list[str]]:
    bad = out_of_vocabulary(ids)
    if bad is not None:
        raise RequestError(f"Token id {bad} is out of vocabulary", param=name)
    return decode(ids), len(ids), decode_pieces(ids)


def _prompt_list(value: Any, name: str) -> list[tuple[str, int, list[str] | None]]:
    """A completions ``prompt`` or embeddings ``input``: a string, strings, token ids, or lists of token ids (as
    (text, tokens, pieces of token ids))."""
    if isinstance(value, str):
        return [(value, count_tokens(value), None)]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return [(item, count_tokens(item), None) for item in value]
        if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            return [_token_ids(value, name)]
        if all(isinstance(item, list) and item for item in value) and all(
            isinstance(token, int) and not isinstance(token, bool) for item in value for token in item
        ):
            return [_token_ids(item, name) for item in value]
    if isinstance(value, list) and not value:
        raise RequestError(f"{name}: must not be empty", param=name)
    if value is None:
        raise RequestError(f"{name}: Field required", param=name)
    raise _invalid(name, "a string, a list of strings, a list of token ids or a list of lists of token ids")


def parse_completion(body: dict) -> GenerationRequest:
    """A ``/v1/completions`` body; raises :class:`RequestError` on wrong types."""
    prompts = [
        Prompt(text, tokens, [text_digest("prompt", text)], [tokens], pieces)
        for text, tokens, pieces in _prompt_list(body.get("prompt"), "prompt")
    ]
    if body.get("suffix") is not None:
        raise RequestError("suffix is not currently supported", param="suffix")
    request = GenerationRequest(model=_model(body), prompts=prompts)
    _common(body, request)
    request.echo_prompt = bool(_opt_bool(body, "echo"))
    request.max_tokens = _opt_int(body, "max_tokens", minimum=0 if request.echo_prompt else 1)
    if request.max_tokens == 0:  # vLLM generates one token for the engine, and answers with the prompt alone
        request.max_tokens, request.echo_only = 1, True
    _check_min_tokens(request)
    logprobs = _opt_int(body, "logprobs", minimum=0, maximum=MAX_LOGPROBS)
    request.logprobs = logprobs is not None
    request.top_logprobs = logprobs or 0
    return request


def parse_embedding(body: dict) -> EmbeddingRequest:
    """A ``/v1/embeddings`` body; raises :class:`RequestError` on wrong types."""
    inputs = [(text, tokens) for text, tokens, _ in _prompt_list(body.get("input"), "input")]
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise RequestError(f"encoding_format: Input should be 'float' or 'base64', got {encoding!r}", "encoding_format")
    return EmbeddingRequest(
        model=_model(body),
        inputs=inputs,
        encoding_format=encoding,
        dimensions=_opt_int(body, "dimensions", minimum=1),
        simulate=body.get("simulate"),
    )
