"""Anthropic's SSE events → OpenAI ``chat.completion.chunk`` events, for one streamed response."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from gateway.pricing import Usage
from gateway.providers.anthropic.errors import ERROR_STATUS, map_error
from gateway.providers.anthropic.response import finish_reason, openai_usage, positive_int


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
    (``choices: []``, only with ``include_usage``) and ``data: [DONE]``. With ``response_tool`` (a
    ``response_format``), the first call of that tool is the answer: its ``input_json_delta`` fragments are
    ``delta.content`` (``"{}"`` for an empty input), text and its later calls give nothing, and ``stop_reason:
    tool_use`` is ``stop`` unless the client's tools were called. An ``error`` event gives
    ``data: {"error": ...}`` (OpenAI's shape, see :func:`map_error`) and ``data: [DONE]``. After either end
    (``.done``) further events are ignored; ``ping`` and unknown events give nothing.
    """

    __slots__ = (
        "_answer",
        "_cache_creation",
        "_cache_read",
        "_created",
        "_head",
        "_id",
        "_include_usage",
        "_input",
        "_model",
        "_output",
        "_response_tool",
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

    def __init__(self, public_model: str, include_usage: bool, response_tool: str | None = None) -> None:
        self._model = public_model
        self._include_usage = include_usage
        self._response_tool = response_tool
        self._answer: list[Any] | None = None  # the response tool's call: [Anthropic block index, content sent]
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
        return Usage(
            input=self._input + cached + self._cache_creation,
            output=self._output,
            cached_input=cached,
            cache_write=self._cache_creation,
        )

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
            self._input = positive_int(usage["input_tokens"])
        if usage.get("cache_read_input_tokens") is not None:
            self._cache_read = positive_int(usage["cache_read_input_tokens"])
        if usage.get("cache_creation_input_tokens") is not None:
            self._cache_creation = positive_int(usage["cache_creation_input_tokens"])
        if usage.get("output_tokens") is not None:
            self._output = positive_int(usage["output_tokens"])

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
            if text and isinstance(text, str) and self._response_tool is None:
                out.append(self._content(text))
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json")
            answer = self._answer
            if answer is not None and answer[0] == data.get("index"):
                if fragment and isinstance(fragment, str):
                    answer[1] = True
                    out.append(self._content(fragment))
                return out
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

    def _content(self, text: str) -> bytes:
        """A ``delta.content`` chunk (the answer's text)."""
        self._text.append(text)
        self.has_output = True
        return self._head + _OPEN_CONTENT + orjson.dumps(text) + _CLOSE_DELTA + _CHUNK_END

    def _tool_chunk(self, call: dict[str, Any]) -> bytes:
        return self._chunk([{"index": 0, "delta": {"tool_calls": [call]}, "logprobs": None, "finish_reason": None}])

    def _block_start(self, data: dict[str, Any]) -> list[bytes]:
        block = data.get("content_block")
        if not isinstance(block, dict):
            return []
        kind = block.get("type")
        out = self._ensure_head()
        if kind == "tool_use" and self._response_tool is not None and block.get("name") == self._response_tool:
            if self._answer is None:  # later calls of it (none when it is forced) are left out
                tool_input = block.get("input")
                self._answer = [data.get("index"), False]
                self.has_output = True
                if isinstance(tool_input, dict) and tool_input:
                    self._answer[1] = True
                    out.append(self._content(orjson.dumps(tool_input).decode()))
        elif kind == "tool_use":
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
            if text and isinstance(text, str) and self._response_tool is None:
                out.append(self._content(text))
        return out

    def _block_stop(self, data: dict[str, Any]) -> list[bytes]:
        answer = self._answer
        if answer is not None and answer[0] == data.get("index"):
            if answer[1]:
                return []
            answer[1] = True  # an answer without input: still a JSON object
            return [self._content("{}")]
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
        if self.finish_reason == "tool_calls" and not self._tools:
            self.finish_reason = "stop"  # only the response tool was called: the answer
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
