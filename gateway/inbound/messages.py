"""Anthropic's Messages API spoken by clients (``POST /v1/messages``), for deployments that do not speak it: the
request becomes an OpenAI chat request, the answer (unary or streamed) an Anthropic message again.

Request (Anthropic → OpenAI chat): ``system`` (a string or text blocks) → a leading ``system`` message; ``user`` and
``assistant`` messages with ``text``, ``image`` (base64 or URL source), ``tool_use`` (→ assistant ``tool_calls``) and
``tool_result`` (→ ``tool`` messages) blocks; ``thinking`` and ``redacted_thinking`` blocks of earlier turns are
dropped (a chat host cannot verify them); ``max_tokens``, ``temperature``, ``top_p``, ``top_k`` (passed on: vLLM
takes it), ``stop_sequences`` → ``stop``, ``stream``, ``tools`` (custom tools: ``input_schema`` → ``parameters``),
``tool_choice`` (``auto``, ``any`` → ``required``, ``tool`` → the named function, ``none``;
``disable_parallel_tool_use`` → ``parallel_tool_calls: false``), ``metadata.user_id`` → ``user``. ``cache_control``
marks are dropped (the host caches prefixes by itself, if at all), as is ``thinking``. Refused with a 400 naming the
field: server tools (``web_search``, ...), ``document`` blocks, ``container``, ``mcp_servers``.

Response (OpenAI → Anthropic): ``reasoning_content`` → a ``thinking`` block, text → a ``text`` block, ``tool_calls``
→ ``tool_use`` blocks; ``finish_reason`` ``stop`` → ``end_turn``, ``length`` → ``max_tokens``, ``tool_calls`` →
``tool_use``, ``content_filter`` → ``refusal``; usage ``input_tokens`` = prompt tokens not served from a cache,
``cache_read_input_tokens`` = cached prompt tokens, ``output_tokens`` = completion tokens.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from gateway.errors import GatewayError, bad_request
from gateway.inbound.chat_chunks import ChatChunkReader

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
_UNSUPPORTED_FIELDS = ("container", "mcp_servers")


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                raise bad_request(f"'{where}' must be a string or a list of text blocks.", param=where)
            parts.append(block["text"])
        return "\n\n".join(parts)
    raise bad_request(f"'{where}' must be a string or a list of text blocks.", param=where)


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise bad_request(f"'{where}.source' must be a base64 or url image source.", param=where)
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result_text(block: dict[str, Any], where: str) -> str:
    content = block.get("content", "")
    text = content if isinstance(content, str) else _text_of([b for b in content if b.get("type") == "text"], where)
    return f"Error: {text}" if block.get("is_error") else text


def _turn(message: Any, index: int) -> list[dict[str, Any]]:
    """One Anthropic message → the chat messages it becomes (tool results are messages of their own)."""
    where = f"messages[{index}]"
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise bad_request(f"'{where}.role' must be 'user' or 'assistant'.", param=f"{where}.role")
    role = message["role"]
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise bad_request(f"'{where}.content' must be a string or a list of content blocks.", param=where)
    parts: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for position, block in enumerate(content):
        at = f"{where}.content[{position}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_use" and role == "assistant":
            arguments = orjson.dumps(block.get("input", {})).decode()
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
        elif kind == "tool_result" and role == "user":
            results.append(
                {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": _tool_result_text(block, at)}
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise bad_request(f"'{at}': content blocks of type {kind!r} cannot be sent to this model.", param=at)
    out: list[dict[str, Any]] = list(results)
    if role == "assistant":
        text = "".join(p.get("text", "") for p in parts if p["type"] == "text")
        turn: dict[str, Any] = {"role": "assistant", "content": text or None}
        if tool_calls:
            turn["tool_calls"] = tool_calls
        if text or tool_calls:
            out.append(turn)
    elif parts:
        only_text = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "".join(p["text"] for p in parts) if only_text else parts})
    return out


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise bad_request("'tools' must be an array.", param="tools")
    out = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or "input_schema" not in tool or tool.get("type") not in (None, "custom"):
            raise bad_request(
                f"'tools[{index}]': only custom tools (name, description, input_schema) can be sent to this model.",
                param=f"tools[{index}]",
            )
        function: dict[str, Any] = {"name": tool.get("name"), "parameters": tool["input_schema"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, chat: dict[str, Any]) -> None:
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise bad_request("'tool_choice.type' must be 'auto', 'any', 'tool' or 'none'.", param="tool_choice")
    kind = choice["type"]
    if kind == "tool":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    else:
        chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use") is True:
        chat["parallel_tool_calls"] = False


def to_chat_request(payload: dict[str, Any]) -> dict[str, Any]:
    """A Messages API request → an OpenAI chat request (same ``model``: the gateway maps it per deployment)."""
    for field in _UNSUPPORTED_FIELDS:
        if payload.get(field) is not None:
            raise bad_request(f"'{field}' is not supported by this model's deployment.", param=field)
    messages: list[dict[str, Any]] = []
    system = payload.get("system")
    if system is not None:
        text = _text_of(system, "system")
        if text:
            messages.append({"role": "system", "content": text})
    for index, message in enumerate(payload["messages"]):
        messages.extend(_turn(message, index))
    chat: dict[str, Any] = {"model": payload["model"], "messages": messages, "max_tokens": payload["max_tokens"]}
    for name in ("temperature", "top_p", "top_k", "stream"):
        if payload.get(name) is not None:
            chat[name] = payload[name]
    stop = payload.get("stop_sequences")
    if stop is not None:
        chat["stop"] = stop
    if payload.get("tools"):
        chat["tools"] = _tools(payload["tools"])
    if payload.get("tool_choice") is not None:
        _tool_choice(payload["tool_choice"], chat)
    metadata = payload.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        chat["user"] = metadata["user_id"]
    return chat


def check_request(payload: dict[str, Any]) -> None:
    """What the Messages API itself requires of every request, whoever serves it."""
    max_tokens = payload.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise bad_request("max_tokens: Field required (a positive integer).", param="max_tokens")


def anthropic_usage(usage: dict[str, Any] | None) -> dict[str, int]:
    """Anthropic's ``usage`` for an OpenAI ``usage`` object (cached prompt tokens are cache reads)."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens") if isinstance(details, dict) else None)
    prompt = _count(usage.get("prompt_tokens"))
    output = _count(usage.get("completion_tokens"))
    return {
        "input_tokens": max(prompt - cached, 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": output,
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _tool_input(arguments: Any) -> Any:
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        return {"arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def to_message(data: dict[str, Any], public_model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` → an Anthropic message named ``public_model``."""
    choices = data.get("choices")
    choice: dict[str, Any] = (
        choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    )
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    if isinstance(message.get("content"), str) and message["content"]:
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name"),
                "input": _tool_input(function.get("arguments")),
            }
        )
    return {
        "id": _message_id(data.get("id")),
        "type": "message",
        "role": "assistant",
        "model": public_model,
        "content": content,
        "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
        "stop_sequence": None,
        "usage": anthropic_usage(data.get("usage")),
    }


def _message_id(chat_id: Any) -> str:
    return f"msg_{chat_id}" if isinstance(chat_id, str) and chat_id else f"msg_{uuid.uuid4().hex}"


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


class ChatToMessagesStream(ChatChunkReader):
    """OpenAI chat completion chunks (SSE bytes, as a provider relays them) → Anthropic's stream events, in order:
    ``message_start``, for each block ``content_block_start`` / ``content_block_delta`` / ``content_block_stop``,
    ``message_delta`` (stop reason and the whole usage, once the usage chunk came), ``message_stop``. An error
    event of the chat stream becomes an Anthropic ``error`` event."""

    def __init__(self, public_model: str) -> None:
        super().__init__()
        self.model = public_model
        self.started = False
        self.block: str | None = None  # the open block's kind: "thinking", "text" or "tool_use"
        self.index = -1
        self.tools: dict[int, int] = {}  # chat tool call index → block index
        self.stop_reason: str | None = None

    def _finish_reason(self, reason: Any) -> None:
        self.stop_reason = STOP_REASONS.get(reason, "end_turn")

    def _end(self, usage: dict[str, Any] | None) -> bytes:
        return self._finish(usage)

    def _start(self, chunk: dict[str, Any]) -> bytes:
        if self.started:
            return b""
        self.started = True
        message: dict[str, Any] = {
            "id": _message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _event("message_start", {"message": message})

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        closed = self._close()
        self.index += 1
        self.block = kind
        return closed + _event("content_block_start", {"index": self.index, "content_block": block})

    def _close(self) -> bytes:
        if self.block is None:
            return b""
        self.block = None
        return _event("content_block_stop", {"index": self.index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        out = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            if self.block != "thinking":
                out.append(self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""}))
            out.append(
                _event(
                    "content_block_delta",
                    {"index": self.index, "delta": {"type": "thinking_delta", "thinking": reasoning}},
                )
            )
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self.block != "text":
                out.append(self._open("text", {"type": "text", "text": ""}))
            out.append(
                _event("content_block_delta", {"index": self.index, "delta": {"type": "text_delta", "text": text}})
            )
        for call in delta.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            position = call.get("index", 0)
            function = call.get("function") or {}
            if position not in self.tools:
                block: dict[str, Any] = {
                    "type": "tool_use",
                    "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                    "name": function.get("name"),
                    "input": {},
                }
                out.append(self._open("tool_use", block))
                self.tools[position] = self.index
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments and self.tools[position] == self.index:
                delta_block = {"type": "input_json_delta", "partial_json": arguments}
                out.append(_event("content_block_delta", {"index": self.index, "delta": delta_block}))
        return b"".join(out)

    def _finish(self, usage: dict[str, Any] | None) -> bytes:
        if self.finished:
            return b""
        self.finished = True
        out = [self._start({}), self._close()]
        out.append(
            _event(
                "message_delta",
                {
                    "delta": {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None},
                    "usage": anthropic_usage(usage),
                },
            )
        )
        out.append(_event("message_stop", {}))
        return b"".join(out)

    def _error(self, error: Any) -> bytes:
        self.finished = True
        error = error if isinstance(error, dict) else {"message": str(error)}
        status = error.get("code")
        status = int(status) if isinstance(status, int | str) and str(status).isdigit() else 500
        body = anthropic_error_body(status, str(error.get("message") or "The upstream failed mid-stream."))
        return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"


#: Anthropic's ``error.type`` for an HTTP status.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}`` for ``status`` (5xx other than 529: ``api_error``)."""
    kind = "overloaded_error" if code == "upstream_overloaded" else ERROR_TYPES.get(status)
    if kind is None:
        kind = "invalid_request_error" if 400 <= status < 500 else "api_error"
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_payload(error: GatewayError) -> dict[str, Any]:
    """A gateway error in Anthropic's shape."""
    return anthropic_error_body(error.status, error.message, error.code)
