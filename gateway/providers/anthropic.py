"""OpenAI chat completions ⇄ Anthropic Messages API (``POST {base_url}/messages``, ``anthropic-version: 2023-06-01``).

Clients keep speaking OpenAI's chat format; for ``provider: anthropic`` deployments the gateway sends
:func:`to_anthropic_request`'s body with :func:`request_headers`, and turns the answer back into OpenAI's shapes with
:func:`from_anthropic_response` (unary), :class:`AnthropicStreamTranslator` (SSE) and :func:`anthropic_error`
(HTTP errors). Everything here is pure and works on plain dicts (one ``orjson`` call per streamed chunk).

Request (OpenAI → Anthropic)
  - ``system`` / ``developer`` messages (strings or text parts, anywhere in the list) → top-level ``system``, joined
    with a blank line; a list of text blocks when a part carries ``cache_control`` (kept, for prompt caching).
  - ``user`` / ``assistant`` messages → ``messages``; consecutive messages of one role are merged (Anthropic wants
    alternation); text, ``image_url`` (base64 data URL or http(s) URL) and ``file`` (base64 ``file_data``) parts →
    content blocks; assistant ``tool_calls`` → ``tool_use`` blocks (``arguments`` parsed into ``input``);
    ``tool`` messages → ``tool_result`` blocks of a user message (placed before any text of that message). Empty text
    is left out (Anthropic refuses empty text blocks) and the trailing whitespace of a final assistant message (a
    prefill) is stripped (Anthropic refuses it). Message ``name`` fields are dropped.
  - ``max_completion_tokens``, else ``max_tokens``, else :data:`DEFAULT_MAX_TOKENS` (Anthropic requires one) →
    ``max_tokens``. ``temperature`` (0..1 on Anthropic: above 1 is a 400), ``top_p``, ``top_k``, ``stop`` (string or
    list) → ``stop_sequences``, ``stream``, ``tools`` (function tools), ``tool_choice`` (``auto`` → ``auto``,
    ``required`` → ``any``, ``none`` → ``none``, a named function → ``tool``), ``parallel_tool_calls: false`` →
    ``tool_choice.disable_parallel_tool_use``, ``user`` → ``metadata.user_id``.
  - Rejected with a 400 naming the field (no Anthropic equivalent changes the answer's shape): ``n`` > 1,
    ``logprobs: true``, ``top_logprobs``, a non-empty ``logit_bias``, ``audio`` / audio ``modalities``,
    ``response_format`` other than ``text``, the legacy ``functions`` / ``function_call``, ``web_search_options``,
    ``input_audio`` and ``file_id`` content parts, ``function`` messages, non-function tools.
  - Dropped (no equivalent, answer unchanged in shape): :data:`DROPPED_FIELDS` (``frequency_penalty``,
    ``presence_penalty``, ``seed``, ``metadata``, ``store``, ``service_tier``, ``stream_options``, ``prediction``,
    ``reasoning_effort``, ``verbosity``, ...) and every other field this module does not know. ``simulate`` (the
    simulators' fault-injection hook) is passed through; a real Anthropic API would refuse it.

Response (Anthropic → OpenAI): ``finish_reason`` from ``stop_reason``:

==================================  ==================
``end_turn``, ``stop_sequence``     ``stop``
``pause_turn``                      ``stop``
``max_tokens``                      ``length``
``model_context_window_exceeded``   ``length``
``tool_use``                        ``tool_calls``
``refusal``                         ``content_filter``
anything else                       ``stop``
==================================  ==================

Usage: ``prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``,
``completion_tokens = output_tokens``, ``prompt_tokens_details.cached_tokens = cache_read_input_tokens``. For cost,
cache writes count as ordinary input (Anthropic bills them at 1.25x: the cost is a slight underestimate).

Errors (:func:`anthropic_error`; Anthropic's body is ``{"type": "error", "error": {"type", "message"}}``):

=======================  ==========================  ============  =========================  ==========================
Anthropic status         Anthropic ``error.type``    client gets   OpenAI ``type``            ``code``
=======================  ==========================  ============  =========================  ==========================
400                      invalid_request_error       400           invalid_request_error      null
401, 403                 authentication_error,       502           upstream_error             upstream_auth_error
                         permission_error
404                      not_found_error             404           invalid_request_error      not_found
413                      request_too_large           413           invalid_request_error      request_too_large
429                      rate_limit_error            429           requests                   rate_limit_exceeded
other 4xx                (any)                       same          invalid_request_error      Anthropic's type
529                      overloaded_error            502           upstream_error             upstream_overloaded
500 and other 5xx        api_error                   502           upstream_error             upstream_http_error
=======================  ==========================  ============  =========================  ==========================

4xx messages reach the client unchanged; 5xx and auth messages say the upstream failed. An ``error`` event inside a
stream is mapped the same way from its ``error.type`` (``overloaded_error`` → 529 → 502, ...).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson

from gateway.errors import GatewayError, error_body
from gateway.pricing import Usage

ANTHROPIC_PATH = "/messages"
ANTHROPIC_VERSION = "2023-06-01"
#: ``max_tokens`` sent when the client sets neither ``max_completion_tokens`` nor ``max_tokens`` (Anthropic requires
#: one; OpenAI's default is "as long as the model wants"). The client's value always wins.
DEFAULT_MAX_TOKENS = 4096

#: Known OpenAI request fields dropped without a word (every unknown field is dropped as well).
DROPPED_FIELDS = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "metadata",
        "store",
        "service_tier",
        "stream_options",
        "prediction",
        "reasoning_effort",
        "verbosity",
        "prompt_cache_key",
        "safety_identifier",
        "logprobs",  # false only: true is rejected
        "n",  # 1 only: more is rejected
    }
)

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

#: Anthropic ``error.type`` → the HTTP status Anthropic sends it with (for errors inside a stream).
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

_TOOL_ID_OK = re.compile(r"[A-Za-z0-9_-]+")
_TOOL_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def request_headers(api_key: str | None) -> dict[str, str]:
    """The headers of every Messages API call (``x-api-key`` only when a key is configured)."""
    headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
    if api_key:
        headers["x-api-key"] = api_key
    return headers


# ---- request ---------------------------------------------------------------------------------------------------


def _bad(message: str, param: str | None) -> GatewayError:
    return GatewayError(400, message, param=param)


def _unsupported(field: str, what: str) -> GatewayError:
    return _bad(f"'{field}': {what} is not supported by this model's provider (Anthropic).", field)


def _reject_unsupported(payload: dict[str, Any]) -> None:
    """Raise a 400 for OpenAI features that Anthropic's Messages API cannot express."""
    n = payload.get("n")
    if n is not None and n != 1:
        if isinstance(n, int) and not isinstance(n, bool) and n > 1:
            raise _unsupported("n", "more than one choice (n > 1)")
        raise _bad("'n' must be 1.", "n")
    if payload.get("logprobs"):
        raise _unsupported("logprobs", "returning log probabilities")
    if payload.get("top_logprobs"):
        raise _unsupported("top_logprobs", "returning log probabilities")
    if payload.get("logit_bias"):
        raise _unsupported("logit_bias", "biasing token probabilities")
    if payload.get("audio") is not None:
        raise _unsupported("audio", "audio output")
    modalities = payload.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise _unsupported("modalities", "output other than text")
    response_format = payload.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict) or response_format.get("type", "text") != "text"
    ):
        raise _unsupported("response_format", "a JSON mode or JSON schema response format")
    for legacy in ("functions", "function_call"):
        if payload.get(legacy) is not None:
            raise _unsupported(legacy, "the legacy function-calling API (use 'tools' and 'tool_choice')")
    if payload.get("web_search_options") is not None:
        raise _unsupported("web_search_options", "OpenAI's web search")


def _max_tokens(payload: dict[str, Any]) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(f"'{name}' must be an integer of at least 1.", name)
        return value
    return DEFAULT_MAX_TOKENS


def _number(payload: dict[str, Any], name: str, high: float) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"'{name}' must be a number.", name)
    if not 0 <= value <= high:
        raise _bad(f"'{name}' must be between 0 and {high:g} for this model (Anthropic).", name)
    return value


def _stop_sequences(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise _bad("'stop' must be a string or an array of strings.", "stop")
    kept = [item for item in stop if item.strip()]
    return kept or None


def _tool_id(value: Any, where: str) -> str:
    """A tool call id usable by Anthropic (``^[a-zA-Z0-9_-]+$``); other characters become ``_`` (consistently, so a
    ``tool_use`` id and its ``tool_result`` still match)."""
    if not isinstance(value, str) or not value:
        raise _bad(f"'{where}' must be a non-empty string.", where)
    if _TOOL_ID_OK.fullmatch(value):
        return value
    return _TOOL_ID_BAD_CHARS.sub("_", value)


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _bad(f"'{where}.image_url.url' must be a non-empty string.", where)
    if url.startswith("data:"):
        header, comma, data = url.partition(",")
        if not comma or not header.endswith(";base64"):
            raise _bad(f"'{where}': an image data URL must be base64 (data:MEDIA_TYPE;base64,DATA).", where)
        return {"type": "image", "source": {"type": "base64", "media_type": header[5:-7], "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad(f"'{where}': an image must be a base64 data URL or an http(s) URL.", where)


def _document_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str):
        raise _unsupported(where, "a file part without inline 'file_data' (file ids)")
    header, comma, encoded = data.partition(",")
    if not header.startswith("data:") or not comma or not header.endswith(";base64"):
        raise _bad(f"'{where}.file.file_data' must be a base64 data URL.", where)
    return {"type": "document", "source": {"type": "base64", "media_type": header[5:-7], "data": encoded}}


def _content_blocks(content: Any, where: str, media: bool) -> list[dict[str, Any]]:
    """A message ``content`` (string or parts) → Anthropic content blocks; empty text is left out."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(f"'{where}.content' must be a string or an array of content parts.", where)
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        at = f"{where}.content[{i}]"
        if not isinstance(part, dict):
            raise _bad(f"'{at}' must be an object.", at)
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise _bad(f"'{at}.{kind}' must be a string.", at)
            if not text:
                continue
            block: dict[str, Any] = {"type": "text", "text": text}
        elif kind == "image_url" and media:
            block = _image_block(part, at)
        elif kind == "file" and media:
            block = _document_block(part, at)
        else:
            raise _unsupported(at, f"a content part of type {kind!r} here")
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_use_blocks(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(tool_calls, list):
        raise _bad(f"'{where}.tool_calls' must be an array.", where)
    blocks = []
    for j, call in enumerate(tool_calls):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _bad(f"'{at}' must be a function call with a 'name'.", at)
        arguments = function.get("arguments")
        if arguments is None or arguments == "":
            tool_input: Any = {}
        elif isinstance(arguments, str):
            try:
                tool_input = orjson.loads(arguments)
            except orjson.JSONDecodeError:
                raise _bad(f"'{at}.function.arguments' is not valid JSON.", at) from None
        else:
            tool_input = arguments
        if not isinstance(tool_input, dict):
            raise _bad(f"'{at}.function.arguments' must be a JSON object.", at)
        blocks.append(
            {
                "type": "tool_use",
                "id": _tool_id(call.get("id"), f"{at}.id"),
                "name": function["name"],
                "input": tool_input,
            }
        )
    return blocks


def _tool_result_block(message: dict[str, Any], where: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(message.get("tool_call_id"), where)}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        parts = _content_blocks(content, where, media=True)
        if parts:
            block["content"] = parts
    return block


def _system(parts: list[list[dict[str, Any]]]) -> str | list[dict[str, Any]] | None:
    """The top-level ``system``: one string, or text blocks when any part asks for ``cache_control``."""
    blocks = [block for message in parts for block in message]
    if not blocks:
        return None
    if any("cache_control" in block for block in blocks):
        return blocks
    return "\n\n".join("\n".join(block["text"] for block in message) for message in parts if message)


def _translate_messages(messages: list[Any]) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """OpenAI ``messages`` → (Anthropic ``system``, Anthropic ``messages``)."""
    system_parts: list[list[dict[str, Any]]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _bad(f"'{where}' must be an object.", "messages")
        role = message.get("role")
        if role == "user":
            blocks = _content_blocks(message.get("content"), where, media=True)
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"), where, media=False)
            tool_calls = message.get("tool_calls")
            if tool_calls:
                blocks.extend(_tool_use_blocks(tool_calls, where))
        elif role == "tool":
            role = "user"
            blocks = [_tool_result_block(message, f"{where}.tool_call_id")]
        elif role in ("system", "developer"):
            system_parts.append(_content_blocks(message.get("content"), where, media=False))
            continue
        elif role == "function":
            raise _unsupported("messages", "a 'function' message (legacy function calling; use 'tool')")
        else:
            raise _bad(f"'{where}.role' must be one of system, developer, user, assistant or tool.", "messages")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise _bad("'messages' must contain at least one user or assistant message with content.", "messages")
    _finish_turns(turns)
    return _system(system_parts), turns


def _finish_turns(turns: list[dict[str, Any]]) -> None:
    """Tool results first in their user message, no trailing whitespace in a final assistant message, and single
    plain text blocks as strings."""
    for turn in turns:
        blocks = turn["content"]
        if turn["role"] == "user" and len(blocks) > 1:
            results = [b for b in blocks if b["type"] == "tool_result"]
            if results and any(b["type"] != "tool_result" for b in blocks[: len(results)]):
                turn["content"] = results + [b for b in blocks if b["type"] != "tool_result"]
    last = turns[-1]
    if last["role"] == "assistant" and last["content"][-1]["type"] == "text":
        text = last["content"][-1]["text"].rstrip()
        if text:
            last["content"][-1]["text"] = text
        else:
            last["content"].pop()
            if not last["content"]:
                turns.pop()
                if not turns:
                    raise _bad("'messages' must contain at least one user message with content.", "messages")
    for turn in turns:
        blocks = turn["content"]
        if len(blocks) == 1 and blocks[0]["type"] == "text" and len(blocks[0]) == 2:
            turn["content"] = blocks[0]["text"]


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("'tools' must be an array.", "tools")
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise _unsupported(f"tools[{i}]", "a tool other than a function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _bad(f"'tools[{i}].function.name' is required.", "tools")
        schema = function.get("parameters")
        if schema is None:
            schema = {"type": "object", "properties": {}}
        elif not isinstance(schema, dict):
            raise _bad(f"'tools[{i}].function.parameters' must be a JSON schema object.", "tools")
        entry: dict[str, Any] = {"name": function["name"]}
        description = function.get("description")
        if isinstance(description, str) and description:
            entry["description"] = description
        entry["input_schema"] = schema
        out.append(entry)
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        result: dict[str, Any] = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        result = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _unsupported("tool_choice", f"the tool choice {choice!r}")
    if parallel is False:
        result["disable_parallel_tool_use"] = True
    elif choice is None:
        return None  # Anthropic's default is auto
    return result


def to_anthropic_request(payload: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """An OpenAI chat completions body → a Messages API body for ``upstream_model``.

    Raises :class:`GatewayError` (400, with ``param``) for what Anthropic cannot express or a malformed body.
    """
    _reject_unsupported(payload)
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array.", "messages")
    system, turns = _translate_messages(messages)
    body: dict[str, Any] = {"model": upstream_model, "max_tokens": _max_tokens(payload)}
    if system is not None:
        body["system"] = system
    body["messages"] = turns
    temperature = _number(payload, "temperature", 1.0)
    if temperature is not None:
        body["temperature"] = temperature
    top_p = _number(payload, "top_p", 1.0)
    if top_p is not None:
        body["top_p"] = top_p
    top_k = payload.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
        body["top_k"] = top_k
    stop = _stop_sequences(payload.get("stop"))
    if stop:
        body["stop_sequences"] = stop
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean.", "stream")
    if stream:
        body["stream"] = True
    tools = payload.get("tools")
    if tools:
        body["tools"] = _tools(tools)
        choice = _tool_choice(payload.get("tool_choice"), payload.get("parallel_tool_calls"))
        if choice is not None:
            body["tool_choice"] = choice
    user = payload.get("user")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    if "simulate" in payload:
        body["simulate"] = payload["simulate"]
    return body


# ---- unary response --------------------------------------------------------------------------------------------


def finish_reason(stop_reason: Any) -> str | None:
    """OpenAI's ``finish_reason`` for Anthropic's ``stop_reason`` (``None`` stays ``None``)."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_anthropic(usage: Any) -> Usage | None:
    """:class:`~gateway.pricing.Usage` from Anthropic's ``usage`` (cache reads and writes count as input; reads are
    the cached part); ``None`` when it is missing."""
    if not isinstance(usage, dict):
        return None
    cache_read = _int(usage.get("cache_read_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + cache_read + _int(usage.get("cache_creation_input_tokens"))
    return Usage(input=prompt, output=_int(usage.get("output_tokens")), cached_input=cache_read)


def openai_usage(usage: Usage) -> dict[str, Any]:
    """OpenAI's ``usage`` object for ``usage``."""
    return {
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input},
    }


def _invalid_response(what: str) -> GatewayError:
    return GatewayError(
        502, f"The Anthropic upstream answered with {what}.", type="upstream_error", code="upstream_invalid_response"
    )


def from_anthropic_response(body: dict[str, Any], public_model: str) -> dict[str, Any]:
    """A Messages API response → an OpenAI ``chat.completion`` named ``public_model``.

    Raises :class:`GatewayError` (502 ``upstream_invalid_response``) when ``body`` is not a message.
    """
    content = body.get("content")
    if not isinstance(content, list):
        raise _invalid_response("a body that is not a message (no 'content' array)")
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input", {})).decode()},
                }
            )
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    usage = usage_from_anthropic(body.get("usage")) or Usage()
    return {
        "id": body.get("id") or f"msg_{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": public_model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(body.get("stop_reason"))}
        ],
        "usage": openai_usage(usage),
    }


# ---- errors ----------------------------------------------------------------------------------------------------


def map_error(status: int, err_type: str | None, message: str) -> tuple[int, dict[str, Any]]:
    """An Anthropic error (HTTP status, ``error.type``, message) → (client status, OpenAI error body); see the
    table in the module docstring."""
    if status in (401, 403):
        return 502, error_body(
            f"The Anthropic upstream rejected the gateway's credentials (HTTP {status}, {err_type}: {message}); "
            "check the deployment's api_key.",
            "upstream_error",
            None,
            "upstream_auth_error",
        )
    if status == 400:
        return 400, error_body(message, "invalid_request_error")
    if status == 404:
        return 404, error_body(message, "invalid_request_error", None, "not_found")
    if status == 413:
        return 413, error_body(message, "invalid_request_error", None, "request_too_large")
    if status == 429:
        return 429, error_body(message, "requests", None, "rate_limit_exceeded")
    if 400 <= status < 500:
        return status, error_body(message, "invalid_request_error", None, err_type)
    if status == 529 or err_type == "overloaded_error":
        return 502, error_body(
            f"The Anthropic upstream is overloaded (HTTP {status}): {message}",
            "upstream_error",
            None,
            "upstream_overloaded",
        )
    return 502, error_body(
        f"The Anthropic upstream failed with HTTP {status} ({err_type or 'error'}): {message}",
        "upstream_error",
        None,
        "upstream_http_error",
    )


def anthropic_error(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    """An Anthropic HTTP error response → (the status the client gets, OpenAI-shaped error body)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    inner = payload.get("error") if isinstance(payload, dict) else None
    err_type = inner.get("type") if isinstance(inner, dict) and isinstance(inner.get("type"), str) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    if not isinstance(message, str) or not message:
        message = body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
    return map_error(status, err_type, message)


# ---- streaming -------------------------------------------------------------------------------------------------


def parse_sse_event(raw: bytes) -> tuple[str, dict[str, Any]] | None:
    """One raw SSE event (``event: NAME\\ndata: {...}``, without its blank-line terminator) → ``(name, data)``;
    ``None`` for comments, events without JSON object data, or malformed JSON. Without an ``event:`` line the
    name is the data's ``type``."""
    name = b""
    data = b""
    if raw.startswith(b"event: "):  # the shape Anthropic sends: one event line, one data line
        newline = raw.find(b"\n")
        if newline > 0 and raw.startswith(b"data: ", newline + 1) and raw.find(b"\n", newline + 1) < 0:
            name = raw[7:newline]
            data = raw[newline + 7 :]
    if not data:
        lines = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data:"):
                lines.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                name = line[6:].strip()
        if not lines:
            return None
        data = b"\n".join(lines)
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    if name:
        return name.decode("utf-8", "replace"), parsed
    kind = parsed.get("type")
    return (kind, parsed) if isinstance(kind, str) else None


_DONE = b"data: [DONE]\n\n"
_CHUNK_END = b"}\n\n"
_OPEN_CONTENT = b'[{"index":0,"delta":{"content":'
_OPEN_REASONING = b'[{"index":0,"delta":{"reasoning_content":'
_CLOSE_DELTA = b'},"logprobs":null,"finish_reason":null}]'


class AnthropicStreamTranslator:
    """Anthropic's SSE events → OpenAI ``chat.completion.chunk`` SSE lines, for one streamed response.

    ``feed(event, data)`` returns the bytes to send (``b"data: {...}\\n\\n"`` each): the ``role`` chunk at
    ``message_start``; ``delta.content`` per text delta; ``delta.tool_calls`` per ``tool_use`` block (index, id,
    type and name first, then ``arguments`` fragments; ``"{}"`` for a call without input); ``delta.reasoning_content``
    per thinking delta; the ``finish_reason`` chunk at ``message_delta``; at ``message_stop`` the usage chunk
    (``choices: []``, only with ``include_usage``) and ``data: [DONE]``. An ``error`` event gives
    ``data: {"error": ...}`` (OpenAI's shape, see :func:`map_error`) and ``data: [DONE]``. After either end
    (``.done``) further events are ignored; ``ping`` and unknown events give nothing.
    """

    __slots__ = (
        "_cache_creation",
        "_cache_read",
        "_created",
        "_head",
        "_id",
        "_include_usage",
        "_input",
        "_model",
        "_output",
        "_saw_usage",
        "_text",
        "_tools",
        "done",
        "error",
        "error_status",
        "finish_reason",
        "has_output",
        "usage_final",
    )

    def __init__(self, public_model: str, include_usage: bool) -> None:
        self._model = public_model
        self._include_usage = include_usage
        self._created = int(time.time())
        self._id = ""
        self._head = b""
        self._tools: dict[int, list[Any]] = {}  # Anthropic block index → [OpenAI tool call index, arguments sent]
        self._text: list[str] = []
        self._input = self._cache_read = self._cache_creation = self._output = 0
        self._saw_usage = False
        self.finish_reason: str | None = None
        self.error: dict[str, Any] | None = None
        self.error_status: int | None = None
        self.has_output = False  # True from the first text, tool call or reasoning chunk: time to first token
        self.usage_final = False  # message_delta (the final output token count) arrived
        self.done = False

    # -- results -------------------------------------------------------------------------------------------------

    @property
    def usage(self) -> Usage | None:
        """Token usage so far (``None`` before ``message_start``); final after ``message_delta``."""
        if not self._saw_usage:
            return None
        cached = self._cache_read
        return Usage(input=self._input + cached + self._cache_creation, output=self._output, cached_input=cached)

    @property
    def text(self) -> str:
        """The answer's text so far."""
        return "".join(self._text)

    # -- input ---------------------------------------------------------------------------------------------------

    def feed_raw(self, raw: bytes) -> list[bytes]:
        """:func:`parse_sse_event` then :meth:`feed`; unparseable events give nothing."""
        parsed = parse_sse_event(raw)
        return self.feed(*parsed) if parsed is not None else []

    def feed(self, event: str, data: dict[str, Any]) -> list[bytes]:
        """One Anthropic event → the OpenAI SSE lines to forward (possibly none)."""
        if self.done:
            return []
        if event == "content_block_delta":
            return self._delta(data)
        if event == "content_block_start":
            return self._block_start(data)
        if event == "content_block_stop":
            return self._block_stop(data)
        if event == "message_start":
            return self._message_start(data)
        if event == "message_delta":
            return self._message_delta(data)
        if event == "message_stop":
            return self._message_stop()
        if event == "error":
            return self._error(data)
        return []  # ping, and event types added after this was written

    # -- events --------------------------------------------------------------------------------------------------

    def _ensure_head(self, message_id: str | None = None) -> list[bytes]:
        """Set the chunk prefix (id, created, model) once; returns the role chunk when it is new."""
        if self._head:
            return []
        self._id = message_id or f"msg_{uuid.uuid4().hex}"
        self._head = (
            b'data: {"id":'
            + orjson.dumps(self._id)
            + b',"object":"chat.completion.chunk","created":'
            + str(self._created).encode()
            + b',"model":'
            + orjson.dumps(self._model)
            + b',"choices":'
        )
        role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        return [self._chunk([role])]

    def _chunk(self, choices: list[dict[str, Any]]) -> bytes:
        return self._head + orjson.dumps(choices) + _CHUNK_END

    def _take_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self._saw_usage = True
        if "input_tokens" in usage and usage["input_tokens"] is not None:
            self._input = _int(usage["input_tokens"])
        if usage.get("cache_read_input_tokens") is not None:
            self._cache_read = _int(usage["cache_read_input_tokens"])
        if usage.get("cache_creation_input_tokens") is not None:
            self._cache_creation = _int(usage["cache_creation_input_tokens"])
        if usage.get("output_tokens") is not None:
            self._output = _int(usage["output_tokens"])

    def _message_start(self, data: dict[str, Any]) -> list[bytes]:
        message = data.get("message")
        if not isinstance(message, dict):
            message = {}
        self._take_usage(message.get("usage"))
        message_id = message.get("id")
        return self._ensure_head(message_id if isinstance(message_id, str) else None)

    def _delta(self, data: dict[str, Any]) -> list[bytes]:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        out = self._ensure_head()
        if kind == "text_delta":
            text = delta.get("text")
            if text and isinstance(text, str):
                self._text.append(text)
                self.has_output = True
                out.append(self._head + _OPEN_CONTENT + orjson.dumps(text) + _CLOSE_DELTA + _CHUNK_END)
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json")
            tool = self._tools.get(data.get("index"))  # type: ignore[arg-type]
            if tool is not None and fragment and isinstance(fragment, str):
                tool[1] = True
                out.append(self._tool_chunk({"index": tool[0], "function": {"arguments": fragment}}))
        elif kind == "thinking_delta":
            thinking = delta.get("thinking")
            if thinking and isinstance(thinking, str):
                self.has_output = True
                out.append(self._head + _OPEN_REASONING + orjson.dumps(thinking) + _CLOSE_DELTA + _CHUNK_END)
        return out  # signature and citation deltas carry nothing OpenAI's format can say

    def _tool_chunk(self, call: dict[str, Any]) -> bytes:
        return self._chunk([{"index": 0, "delta": {"tool_calls": [call]}, "logprobs": None, "finish_reason": None}])

    def _block_start(self, data: dict[str, Any]) -> list[bytes]:
        block = data.get("content_block")
        if not isinstance(block, dict):
            return []
        kind = block.get("type")
        out = self._ensure_head()
        if kind == "tool_use":
            index = len(self._tools)
            tool_input = block.get("input")
            arguments = orjson.dumps(tool_input).decode() if isinstance(tool_input, dict) and tool_input else ""
            self._tools[data.get("index")] = [index, bool(arguments)]  # type: ignore[index]
            call = {
                "index": index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": arguments},
            }
            out.append(self._tool_chunk(call))
            self.has_output = True
        elif kind == "text":
            text = block.get("text")
            if text and isinstance(text, str):
                self._text.append(text)
                self.has_output = True
                out.append(self._head + _OPEN_CONTENT + orjson.dumps(text) + _CLOSE_DELTA + _CHUNK_END)
        return out

    def _block_stop(self, data: dict[str, Any]) -> list[bytes]:
        tool = self._tools.get(data.get("index"))  # type: ignore[arg-type]
        if tool is None or tool[1]:
            return []
        tool[1] = True  # a call without input: OpenAI clients parse the arguments as JSON
        return [self._tool_chunk({"index": tool[0], "function": {"arguments": "{}"}})]

    def _message_delta(self, data: dict[str, Any]) -> list[bytes]:
        self._take_usage(data.get("usage"))
        self.usage_final = True
        delta = data.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        self.finish_reason = finish_reason(stop_reason) or "stop"
        out = self._ensure_head()
        out.append(self._chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": self.finish_reason}]))
        return out

    def _message_stop(self) -> list[bytes]:
        self.done = True
        out = self._ensure_head()
        if self._include_usage:
            usage = openai_usage(self.usage or Usage())
            out.append(self._head + b'[],"usage":' + orjson.dumps(usage) + _CHUNK_END)
        out.append(_DONE)
        return out

    def _error(self, data: dict[str, Any]) -> list[bytes]:
        self.done = True
        inner = data.get("error")
        err_type = inner.get("type") if isinstance(inner, dict) else None
        message = inner.get("message") if isinstance(inner, dict) else None
        if not isinstance(message, str) or not message:
            message = "The Anthropic upstream reported an error mid-stream."
        status = ERROR_STATUS.get(err_type, 500) if isinstance(err_type, str) else 500
        self.error_status, self.error = map_error(status, err_type, message)
        return [b"data: " + orjson.dumps(self.error) + b"\n\n", _DONE]
