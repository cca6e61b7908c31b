"""A wire-faithful simulator of Anthropic's Messages API, for the gateway's ``provider: anthropic`` deployments.

``llmops simulate --api anthropic --port 8001 [--echo] [--api-key KEY]``; clients use
``anthropic.Anthropic(base_url="http://127.0.0.1:8001", api_key=KEY)``, the gateway ``base_url:
http://127.0.0.1:8001/v1``.

Endpoints:
  - ``POST /v1/messages``: Anthropic's request validation, response body and SSE stream (``event: NAME`` +
    ``data: JSON`` per event: ``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``
    (``text_delta`` / ``input_json_delta``), ``content_block_stop``, ``message_delta``, ``message_stop``; ``error``
    for a fault after the 200)
  - ``POST /v1/messages/count_tokens`` (``{"input_tokens": N}``), ``GET /v1/models``, ``GET /health``

Checks, as Anthropic answers them (``{"type": "error", "error": {"type", "message"}, "request_id"}`` plus a
``request-id`` header): ``x-api-key`` (or ``Authorization: Bearer KEY``, as newer SDKs send it; 401
``authentication_error`` when a key is configured and neither matches), the ``anthropic-version`` header (any value;
400 when missing), then 400 ``invalid_request_error`` for a missing ``model`` / ``max_tokens`` / ``messages``,
unknown top-level fields, a first message that is not ``user``, roles that do not alternate, empty text blocks or
contents, trailing whitespace in a final assistant message, ``tool_use`` ids without their ``tool_result`` in the
next message (and the reverse), bad ``tools`` / ``tool_choice``, ``temperature`` or ``top_p`` outside 0..1. With
``--model`` names, another model is a 404 ``not_found_error``.

Answers (tokens are whitespace-separated words, as in :mod:`llmops.simulator.text`):
  - ``simulate.response``, else a scripted tool call, else with ``--echo`` the last user message's text (its tool
    results' text when it has no text), else ``--output-tokens`` lorem-ipsum words seeded by the conversation;
  - tool call: the request has ``tools``, ``tool_choice`` is not ``none``, and the last user text contains
    ``call tool NAME`` (``NAME`` one of the tools), optionally followed by a JSON object: a ``tool_use`` block with
    that input (``{}`` otherwise), ``stop_reason: tool_use``. ``tool_choice`` ``any`` / ``tool`` force a call to
    the first / named tool when no ``call tool`` phrase says otherwise;
  - text is cut at the first of ``stop_sequences`` (``stop_reason: stop_sequence``), then at ``max_tokens`` words
    (``stop_reason: max_tokens``), else ``end_turn``.

Usage: ``input_tokens`` are the words of ``system``, text, tool results and tool inputs; a ``system`` prompt seen
before by this process is reported as ``cache_read_input_tokens`` (and left out of ``input_tokens``); the first
time, it is ``cache_creation_input_tokens`` when it carries ``cache_control``.

Faults, per request, with a body field ``simulate`` (which Anthropic itself would refuse):

=====================================================================  ============================================
``{"fault": "error", "status": 529, "message": "..."}``                that status with its Anthropic error type
                                                                       (529 ``overloaded_error``, 429
                                                                       ``rate_limit_error`` + ``retry-after``, 500
                                                                       ``api_error``, ...; or ``error_type``)
``{"fault": "midstream_error", "after_tokens": 2}``                    a stream sends 2 text deltas, then
                                                                       ``event: error`` (``overloaded_error``
                                                                       unless ``error_type``) and ends; unary:
                                                                       that error as an HTTP status
``{"fault": "slow", "delay_ms": 200}``                                 everything 200 ms later
``{"response": "fixed text"}``                                         this answer text
=====================================================================  ============================================
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from llmops.simulator.background import BackgroundApp
from llmops.simulator.errors import SimulatorSettingsError
from llmops.simulator.settings import AnthropicSimulatorSettings, build
from llmops.simulator.text import count_tokens, generate_tokens, split_tokens, text_digest

logger = logging.getLogger("llmops.simulator.anthropic")

MAX_BODY_BYTES = 32 * 1024 * 1024
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
ERROR_STATUS = {kind: status for status, kind in ERROR_TYPES.items()}
_DEFAULT_MESSAGES = {
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "rate_limit_error": "This request would exceed the rate limit for your organization. Please retry later.",
}
_TOP_LEVEL = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "simulate",
    }
)
_BLOCK_TYPES = frozenset(
    {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking", "search_result"}
)
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_SEEN_SYSTEMS = 4096
DEFAULT_AFTER_TOKENS = 3


class AnthropicError(Exception):
    """An error Anthropic would answer: HTTP ``status``, ``error.type`` and message."""

    def __init__(self, status: int, message: str, err_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = err_type or ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def _invalid(message: str) -> AnthropicError:
    return AnthropicError(400, message)


def _default_message(err_type: str) -> str:
    return _DEFAULT_MESSAGES.get(err_type, f"Simulated {err_type}")


@dataclass(slots=True)
class Midstream:
    """A planned error after ``after_tokens`` text deltas of a stream."""

    error: AnthropicError
    after_tokens: int


# ---- request validation ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class MessagesRequest:
    """A validated Messages API request, reduced to what the simulator needs."""

    model: str
    max_tokens: int
    stream: bool
    system_text: str
    system_cache_control: bool
    last_user_text: str
    input_tokens: int
    system_tokens: int
    digest: bytes
    tools: list[str]
    tool_choice: dict[str, Any] | None
    stop_sequences: list[str]
    simulate: Any


def _text_of(blocks: Any) -> str:
    if isinstance(blocks, str):
        return blocks
    if isinstance(blocks, list):
        return "\n".join(b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def _check_block(block: Any, where: str, role: str) -> None:
    if not isinstance(block, dict):
        raise _invalid(f"{where}: Input should be a valid dictionary")
    kind = block.get("type")
    if kind not in _BLOCK_TYPES:
        raise _invalid(f"{where}.type: Input tag {kind!r} found using 'type' does not match any of the expected tags")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise _invalid(f"{where}.text: Field required")
        if not block["text"]:
            raise _invalid("messages: text content blocks must be non-empty")
    elif kind == "image":
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
            raise _invalid(f"{where}.source: Input should be a base64 or url image source")
        if source["type"] == "base64" and source.get("media_type") not in _IMAGE_TYPES:
            raise _invalid(
                f"{where}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
            )
        if source["type"] == "url" and not isinstance(source.get("url"), str):
            raise _invalid(f"{where}.source.url: Field required")
    elif kind == "tool_use":
        if role != "assistant":
            raise _invalid(f"{where}: `tool_use` blocks can only be in `assistant` messages")
        for name, kinds in (("id", str), ("name", str), ("input", dict)):
            if not isinstance(block.get(name), kinds):
                raise _invalid(f"{where}.{name}: Field required")
    elif kind == "tool_result":
        if role != "user":
            raise _invalid(f"{where}: `tool_result` blocks can only be in `user` messages")
        if not isinstance(block.get("tool_use_id"), str):
            raise _invalid(f"{where}.tool_use_id: Field required")


def _check_messages(messages: Any) -> list[list[dict[str, Any]]]:
    """Validate ``messages``; returns each message's content as blocks."""
    if messages is None:
        raise _invalid("messages: Field required")
    if not isinstance(messages, list):
        raise _invalid("messages: Input should be a valid list")
    if not messages:
        raise _invalid("messages: at least one message is required")
    contents: list[list[dict[str, Any]]] = []
    previous = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise _invalid('messages: first message must use the "user" role')
        if role == previous:
            raise _invalid(
                f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" roles '
                "in a row"
            )
        previous = role
        content = message.get("content")
        last = i == len(messages) - 1
        if isinstance(content, str):
            blocks = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            for j, block in enumerate(content):
                _check_block(block, f"messages.{i}.content.{j}", role)
            blocks = content
        else:
            raise _invalid(f"messages.{i}.content: Field required")
        if not blocks and not (last and role == "assistant"):
            raise _invalid(
                f"messages.{i}: all messages must have non-empty content except for the optional final assistant "
                "message"
            )
        if last and role == "assistant" and blocks and blocks[-1].get("type") == "text":
            text = blocks[-1]["text"]
            if text != text.rstrip():
                raise _invalid("messages: final assistant content cannot end with trailing whitespace")
        contents.append(blocks)
    _check_tool_pairs(messages, contents)
    return contents


def _check_tool_pairs(messages: list[dict[str, Any]], contents: list[list[dict[str, Any]]]) -> None:
    """Every ``tool_use`` has its ``tool_result`` in the next message, and every ``tool_result`` its ``tool_use``
    in the previous one."""
    for i, blocks in enumerate(contents):
        if messages[i]["role"] == "user":
            used = {b["id"] for b in contents[i - 1] if b.get("type") == "tool_use"} if i else set()
            for j, block in enumerate(blocks):
                if block.get("type") == "tool_result" and block["tool_use_id"] not in used:
                    raise _invalid(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block['tool_use_id']}. Each `tool_result` block must have a corresponding `tool_use` "
                        "block in the previous message."
                    )
            continue
        ids = [b["id"] for b in blocks if b.get("type") == "tool_use"]
        if not ids or i + 1 == len(contents):
            continue
        answered = {b.get("tool_use_id") for b in contents[i + 1] if b.get("type") == "tool_result"}
        missing = [tool_id for tool_id in ids if tool_id not in answered]
        if missing:
            raise _invalid(
                f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in the "
                "next message."
            )


def _check_number(body: dict[str, Any], name: str, low: float, high: float | None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{name}: Input should be a valid number")
    if value < low:
        raise _invalid(f"{name}: Input should be greater than or equal to {low:g}")
    if high is not None and value > high:
        raise _invalid(f"{name}: Input should be less than or equal to {high:g}")


def _check_system(system: Any) -> tuple[str, bool]:
    """The system prompt's text and whether it asks for caching."""
    if system is None:
        return "", False
    if isinstance(system, str):
        return system, False
    if not isinstance(system, list):
        raise _invalid("system: Input should be a valid string or a list of text blocks")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise _invalid(f"system.{i}: Input should be a valid text block")
        if not block["text"]:
            raise _invalid("system: text content blocks must be non-empty")
    return "\n".join(block["text"] for block in system), any("cache_control" in block for block in system)


def _check_tools(body: dict[str, Any]) -> tuple[list[str], dict[str, Any] | None]:
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
                raise _invalid(f"tools.{i}.name: Field required")
            if tool.get("type", "custom") == "custom":
                schema = tool.get("input_schema")
                if not isinstance(schema, dict):
                    raise _invalid(f"tools.{i}.custom.input_schema: Field required")
                if schema.get("type") != "object":
                    raise _invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
            names.append(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise _invalid(
                "tool_choice: Input tag found using 'type' does not match any of the expected tags: 'auto', 'any', "
                "'tool', 'none'"
            )
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            raise _invalid("tool_choice.tool.name: Field required")
        extra = set(choice) - {"type", "name", "disable_parallel_tool_use"}
        if extra:
            raise _invalid(f"tool_choice.{choice['type']}.{sorted(extra)[0]}: Extra inputs are not permitted")
    return names, choice


def _last_user_text(messages: list[dict[str, Any]], contents: list[list[dict[str, Any]]]) -> str:
    for message, blocks in zip(reversed(messages), reversed(contents), strict=True):
        if message["role"] != "user":
            continue
        text = _text_of([b for b in blocks if b.get("type") == "text"])
        if text:
            return text
        return "\n".join(_text_of(b.get("content")) for b in blocks if b.get("type") == "tool_result")
    return ""


def _count_input(system_text: str, contents: list[list[dict[str, Any]]]) -> int:
    tokens = count_tokens(system_text)
    for blocks in contents:
        for block in blocks:
            kind = block.get("type")
            if kind == "text":
                tokens += count_tokens(block["text"])
            elif kind == "tool_result":
                tokens += count_tokens(_text_of(block.get("content")))
            elif kind == "tool_use":
                tokens += count_tokens(orjson.dumps(block["input"]).decode())
    return tokens


def parse_messages_request(body: dict[str, Any], need_max_tokens: bool = True) -> MessagesRequest:
    """Validate a Messages API body as Anthropic does; raises :class:`AnthropicError` (400)."""
    for name in body:
        if name not in _TOP_LEVEL:
            raise _invalid(f"{name}: Extra inputs are not permitted")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None and need_max_tokens:
        raise _invalid("max_tokens: Field required")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
        raise _invalid("max_tokens: Input should be a valid integer")
    if max_tokens is not None and max_tokens < 1:
        raise _invalid("max_tokens: Input should be greater than or equal to 1")
    messages = body.get("messages")
    contents = _check_messages(messages)
    system_text, cache_control = _check_system(body.get("system"))
    _check_number(body, "temperature", 0, 1)
    _check_number(body, "top_p", 0, 1)
    _check_number(body, "top_k", 0, None)
    stop = body.get("stop_sequences") or []
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise _invalid("stop_sequences: Input should be a valid list of strings")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream: Input should be a valid boolean")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _invalid("metadata: Input should be a valid dictionary")
        for name in metadata:
            if name != "user_id":
                raise _invalid(f"metadata.{name}: Extra inputs are not permitted")
    tools, choice = _check_tools(body)
    assert isinstance(messages, list)
    return MessagesRequest(
        model=model,
        max_tokens=max_tokens or 0,
        stream=stream,
        system_text=system_text,
        system_cache_control=cache_control,
        last_user_text=_last_user_text(messages, contents),
        input_tokens=_count_input(system_text, contents),
        system_tokens=count_tokens(system_text),
        digest=text_digest(system_text, orjson.dumps(messages).decode()),
        tools=tools,
        tool_choice=choice,
        stop_sequences=stop,
        simulate=body.get("simulate"),
    )


# ---- answers ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    """What the simulated model says: text tokens, or one tool call."""

    tokens: list[str]
    stop_reason: str
    stop_sequence: str | None = None
    tool_name: str | None = None
    tool_input: dict[str, Any] | None = None

    @property
    def output_tokens(self) -> int:
        if self.tool_input is not None:
            return max(count_tokens(orjson.dumps(self.tool_input).decode()), 1)
        return len(self.tokens)


def _scripted_tool(req: MessagesRequest) -> tuple[str, dict[str, Any]] | None:
    """The tool call that the last user text asks for (``call tool NAME {json}``), or that ``tool_choice`` forces."""
    choice = req.tool_choice or {"type": "auto"}
    if not req.tools or choice["type"] == "none":
        return None
    text = req.last_user_text
    at = text.lower().find("call tool ")
    if at >= 0:
        rest = text[at + len("call tool ") :].lstrip()
        name = rest.split(None, 1)[0].rstrip(".,;:!?") if rest.strip() else ""
        if name in req.tools:
            after = rest[len(name) :].lstrip()
            arguments: Any = {}
            if after.startswith("{"):
                try:
                    arguments, _ = json.JSONDecoder().raw_decode(after)
                except ValueError:
                    arguments = {}
            return name, arguments if isinstance(arguments, dict) else {}
    if choice["type"] == "any":
        return req.tools[0], {}
    if choice["type"] == "tool":
        return choice["name"], {}
    return None


def plan_answer(req: MessagesRequest, settings: AnthropicSimulatorSettings) -> Answer:
    """The answer to ``req`` (see the module docstring for the rules)."""
    simulate = req.simulate if isinstance(req.simulate, dict) else {}
    text = simulate.get("response")
    if not isinstance(text, str):
        tool = _scripted_tool(req)
        if tool is not None:
            return Answer([], "tool_use", tool_name=tool[0], tool_input=tool[1])
        if settings.echo:
            text = req.last_user_text
        else:
            seed = int.from_bytes(text_digest(str(settings.seed), previous=req.digest), "big")
            text = "".join(generate_tokens(seed, settings.output_tokens))
    stop_reason, stop_sequence = "end_turn", None
    cut = min(((text.find(s), s) for s in req.stop_sequences if s and s in text), default=None)
    if cut is not None:
        text, stop_reason, stop_sequence = text[: cut[0]], "stop_sequence", cut[1]
    tokens = split_tokens(text)
    if len(tokens) > req.max_tokens:
        tokens, stop_reason, stop_sequence = tokens[: req.max_tokens], "max_tokens", None
    return Answer(tokens, stop_reason, stop_sequence)


# ---- the server ------------------------------------------------------------------------------------------------


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_object(err_type: str, message: str, request_id: str) -> dict[str, Any]:
    """Anthropic's error body."""
    return {"type": "error", "error": {"type": err_type, "message": message}, "request_id": request_id}


class AnthropicSimulator:
    """The state and handlers of one Anthropic simulator app."""

    def __init__(self, settings: AnthropicSimulatorSettings) -> None:
        self.settings = settings
        self._seen_systems: OrderedDict[bytes, None] = OrderedDict()

    # -- helpers -----------------------------------------------------------------------------------------------

    def _error(self, error: AnthropicError, request_id: str) -> web.Response:
        headers = {"request-id": request_id}
        if error.status == 429:
            headers["retry-after"] = "1"
        return web.Response(
            body=orjson.dumps(error_object(error.type, error.message, request_id)),
            status=error.status,
            headers=headers,
            content_type="application/json",
        )

    def _check_headers(self, request: web.Request) -> None:
        key = self.settings.api_key
        headers = request.headers
        # newer SDKs send the key as a bearer token
        if key is not None and headers.get("x-api-key") != key and headers.get("Authorization") != f"Bearer {key}":
            raise AnthropicError(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            raise _invalid("anthropic-version: header is required")

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as error:
            raise _invalid(f"There was an error parsing the body: {error}") from None
        if not isinstance(body, dict):
            raise _invalid("Input should be a valid dictionary")
        return body

    def _cache(self, req: MessagesRequest) -> tuple[int, int]:
        """(cache read, cache creation) tokens of the system prompt; remembers it."""
        if not req.system_tokens:
            return 0, 0
        key = text_digest("system", req.system_text)
        seen = self._seen_systems
        if key in seen:
            seen.move_to_end(key)
            return req.system_tokens, 0
        seen[key] = None
        if len(seen) > _SEEN_SYSTEMS:
            seen.popitem(last=False)
        return 0, req.system_tokens if req.system_cache_control else 0

    def _check_model(self, model: str) -> None:
        if self.settings.models and model not in self.settings.models:
            raise AnthropicError(404, f"model: {model}")

    # -- endpoints ---------------------------------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/messages``."""
        request_id = _new_id("req_")
        try:
            self._check_headers(request)
            req = parse_messages_request(await self._body(request))
            self._check_model(req.model)
            fault = await self._early_fault(req)
            answer = plan_answer(req, self.settings)
            cache_read, cache_creation = self._cache(req)
            usage = {
                "input_tokens": req.input_tokens - cache_read - cache_creation,
                "cache_creation_input_tokens": cache_creation,
                "cache_read_input_tokens": cache_read,
                "output_tokens": answer.output_tokens,
                "service_tier": "standard",
            }
            if req.stream:
                return await self._stream(request, request_id, req, answer, usage, fault)
            if fault is not None:  # a mid-stream fault of a unary request: the error as its status
                raise fault.error
            await self._pace(len(answer.tokens) or 1)
            return web.json_response(
                self._message(req, answer, usage), headers={"request-id": request_id}, dumps=_dumps
            )
        except AnthropicError as error:
            return self._error(error, request_id)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/messages/count_tokens``."""
        request_id = _new_id("req_")
        try:
            self._check_headers(request)
            req = parse_messages_request(await self._body(request), need_max_tokens=False)
            self._check_model(req.model)
        except AnthropicError as error:
            return self._error(error, request_id)
        return web.json_response({"input_tokens": req.input_tokens}, headers={"request-id": request_id})

    async def models(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/models``, Anthropic's list shape."""
        names = self.settings.models or ("claude-sim",)
        data = [
            {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"} for name in names
        ]
        return web.json_response({"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]})

    async def health(self, request: web.Request) -> web.StreamResponse:
        """``GET /health``: 200, empty body."""
        return web.Response(status=200)

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        """Anything else: Anthropic's 404 body."""
        return self._error(AnthropicError(404, "Not Found"), _new_id("req_"))

    # -- answering ---------------------------------------------------------------------------------------------

    async def _early_fault(self, req: MessagesRequest) -> Midstream | None:
        """Apply ``simulate``'s delay and error (raised); returns the planned mid-stream error, if any."""
        simulate = req.simulate
        if simulate is None:
            return None
        if not isinstance(simulate, dict):
            raise _invalid("simulate: Input should be a valid dictionary")
        fault = simulate.get("fault", "none")
        if fault not in ("none", "error", "midstream_error", "slow"):
            raise _invalid("simulate.fault: Input should be 'none', 'error', 'midstream_error' or 'slow'")
        delay = simulate.get("delay_ms")
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0):
            raise _invalid("simulate.delay_ms: Input should be a number of at least 0")
        if fault == "slow" or delay:
            await asyncio.sleep((1000 if delay is None else delay) / 1000.0)
        if fault not in ("error", "midstream_error"):
            return None
        err_type = simulate.get("error_type")
        err_type = err_type if isinstance(err_type, str) else None
        status = simulate.get("status") or ERROR_STATUS.get(err_type or "", 500 if fault == "error" else 529)
        if not isinstance(status, int) or not 400 <= status < 600:
            raise _invalid("simulate.status: Input should be an HTTP error status (400..599)")
        error = AnthropicError(status, "", err_type)
        message = simulate.get("message")
        error.message = message if isinstance(message, str) and message else _default_message(error.type)
        if fault == "error":
            raise error
        after = simulate.get("after_tokens", DEFAULT_AFTER_TOKENS)
        return Midstream(error, after if isinstance(after, int) and after >= 0 else DEFAULT_AFTER_TOKENS)

    async def _pace(self, tokens: int) -> None:
        settings = self.settings
        delay = settings.ttft_ms / 1000.0
        if settings.tokens_per_second > 0:
            delay += max(tokens - 1, 0) / settings.tokens_per_second
        if delay > 0:
            await asyncio.sleep(delay)

    def _message(self, req: MessagesRequest, answer: Answer, usage: dict[str, Any]) -> dict[str, Any]:
        if answer.tool_input is not None:
            content = [
                {"type": "tool_use", "id": _new_id("toolu_"), "name": answer.tool_name, "input": answer.tool_input}
            ]
        else:
            text = "".join(answer.tokens)
            content = [{"type": "text", "text": text}] if text else []
        return {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": content,
            "stop_reason": answer.stop_reason,
            "stop_sequence": answer.stop_sequence,
            "usage": usage,
        }

    async def _stream(
        self,
        request: web.Request,
        request_id: str,
        req: MessagesRequest,
        answer: Answer,
        usage: dict[str, Any],
        fault: Midstream | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={**SSE_HEADERS, "request-id": request_id})
        await response.prepare(request)
        writer = _Writer(response, self.settings)
        start = {**self._message(req, answer, usage), "content": [], "stop_reason": None, "stop_sequence": None}
        start["usage"] = {**usage, "output_tokens": 1}
        writer.add("message_start", {"type": "message_start", "message": start})
        try:
            if answer.tool_input is not None:
                await self._stream_tool(writer, answer)
            elif not answer.tokens:
                writer.add("ping", {"type": "ping"})
            elif not await self._stream_text(writer, answer, fault):
                return response  # a mid-stream error ended it
            delta = {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence}
            final = {"output_tokens": answer.output_tokens}
            writer.add("message_delta", {"type": "message_delta", "delta": delta, "usage": final})
            writer.add("message_stop", {"type": "message_stop"})
            await writer.flush()
        except ConnectionResetError:
            raise asyncio.CancelledError from None
        return response

    async def _stream_text(self, writer: _Writer, answer: Answer, fault: Midstream | None) -> bool:
        """The text block; ``False`` when a mid-stream fault ended the stream."""
        block = {"type": "text", "text": ""}
        writer.add("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        writer.add("ping", {"type": "ping"})
        strike = None if fault is None else min(fault.after_tokens, max(len(answer.tokens) - 1, 0))
        for step, token in enumerate(answer.tokens):
            await writer.wait(step)
            if step == strike:
                assert fault is not None
                error = {"type": fault.error.type, "message": fault.error.message}
                writer.add("error", {"type": "error", "error": error})
                await writer.flush()
                return False
            delta = {"type": "text_delta", "text": token}
            writer.add("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        writer.add("content_block_stop", {"type": "content_block_stop", "index": 0})
        return True

    async def _stream_tool(self, writer: _Writer, answer: Answer) -> None:
        block: dict[str, Any] = {"type": "tool_use", "id": _new_id("toolu_"), "name": answer.tool_name, "input": {}}
        writer.add("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        writer.add("ping", {"type": "ping"})
        arguments = orjson.dumps(answer.tool_input).decode() if answer.tool_input else ""
        pieces = [""] + [arguments[i : i + 8] for i in range(0, len(arguments), 8)]
        for step, piece in enumerate(pieces):
            await writer.wait(step)
            delta = {"type": "input_json_delta", "partial_json": piece}
            writer.add("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        writer.add("content_block_stop", {"type": "content_block_stop", "index": 0})


class _Writer:
    """SSE events written to a prepared response, buffered only until the next wait."""

    __slots__ = ("_buffer", "_response", "_settings")

    def __init__(self, response: web.StreamResponse, settings: AnthropicSimulatorSettings) -> None:
        self._response = response
        self._settings = settings
        self._buffer: list[bytes] = []

    def add(self, name: str, data: dict[str, Any]) -> None:
        self._buffer.append(_event(name, data))

    async def flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            await self._response.write(data)

    async def wait(self, step: int) -> None:
        """Pace token ``step``: the time to first token before step 0, one inter-token gap before the others."""
        settings = self._settings
        if step == 0:
            delay = settings.ttft_ms / 1000.0
        else:
            delay = 1.0 / settings.tokens_per_second if settings.tokens_per_second > 0 else 0.0
        if delay > 0:
            await self.flush()
            await asyncio.sleep(delay)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


# ---- application, background runner, command line --------------------------------------------------------------

ANTHROPIC_SIMULATOR_KEY = web.AppKey("anthropic_simulator", AnthropicSimulator)


def with_options(settings: AnthropicSimulatorSettings, options: dict[str, Any]) -> AnthropicSimulatorSettings:
    """``settings`` with some fields replaced, validated; raises :class:`SimulatorSettingsError` naming the flag."""
    if not options:
        return settings
    return build(AnthropicSimulatorSettings, **{**settings.model_dump(), **options})


def create_anthropic_app(settings: AnthropicSimulatorSettings | None = None, **options: Any) -> web.Application:
    """The simulator's aiohttp application; ``options`` override fields of ``settings`` (e.g. ``echo=True``)."""
    settings = with_options(settings or AnthropicSimulatorSettings(), options)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    sim = AnthropicSimulator(settings)
    app[ANTHROPIC_SIMULATOR_KEY] = sim
    app.router.add_post("/v1/messages", sim.messages)
    app.router.add_post("/v1/messages/count_tokens", sim.count_tokens)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_get("/health", sim.health)
    app.router.add_route("*", "/{tail:.*}", sim.not_found)
    return app


#: The in-process simulator's defaults, for speed: a free port, no pacing.
BACKGROUND_DEFAULTS = AnthropicSimulatorSettings(port=0, ttft_ms=0, tokens_per_second=0)


class BackgroundAnthropicSimulator(BackgroundApp):
    """The simulator served from a daemon thread (tests, demos). Without ``settings`` it starts from
    :data:`BACKGROUND_DEFAULTS` (a free port, no pacing); ``options`` override fields.

    with BackgroundAnthropicSimulator(echo=True) as sim:
        client = anthropic.Anthropic(base_url=sim.url, api_key="unused")
    """

    thread_name = "anthropic-simulator"

    def __init__(self, settings: AnthropicSimulatorSettings | None = None, **options: Any) -> None:
        self.settings = with_options(settings or BACKGROUND_DEFAULTS, options)
        super().__init__(create_anthropic_app(self.settings), self.settings.host, self.settings.port)


def serve_anthropic(settings: AnthropicSimulatorSettings) -> None:
    """Serve until interrupted (``llmops simulate --api anthropic``); raises :class:`SimulatorSettingsError` when
    the port cannot be bound."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def announce(*_: object, **__: object) -> None:
        logger.info(
            "llmops simulate --api anthropic: serving %s on http://%s:%s/v1/messages%s",
            ", ".join(settings.models) or "any model",
            settings.host,
            settings.port,
            " (echo)" if settings.echo else "",
        )

    try:
        web.run_app(
            create_anthropic_app(settings),
            host=settings.host,
            port=settings.port,
            handler_cancellation=True,
            access_log=None,
            print=announce,
            shutdown_timeout=2.0,
        )
    except OSError as error:
        raise SimulatorSettingsError(
            f"--host/--port: cannot listen on {settings.host}:{settings.port}: {error}"
        ) from None
