"""Anthropic's SSE stream of a message: ``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``
(``thinking_delta`` and ``signature_delta`` in a thinking block, then ``text_delta`` / ``input_json_delta``),
``content_block_stop``, ``message_delta``, ``message_stop``; ``error`` for a fault after the 200. Each event is
``event: NAME`` and ``data: JSON``."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from llmops.simulator.anthropic.answers import Answer, message_body, new_id
from llmops.simulator.anthropic.faults import Midstream
from llmops.simulator.anthropic.request import MessagesRequest
from llmops.simulator.settings import AnthropicSimulatorSettings

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    """One SSE event: ``event: NAME`` and its JSON ``data``."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class EventWriter:
    """SSE events written to a prepared response, buffered only until the next wait."""

    __slots__ = ("_buffer", "_response", "_settings")

    def __init__(self, response: web.StreamResponse, settings: AnthropicSimulatorSettings) -> None:
        self._response = response
        self._settings = settings
        self._buffer: list[bytes] = []

    def add(self, name: str, data: dict[str, Any]) -> None:
        """Buffer one event."""
        self._buffer.append(sse_event(name, data))

    async def flush(self) -> None:
        """Write the buffered events."""
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


async def stream_answer(
    request: web.Request,
    request_id: str,
    req: MessagesRequest,
    answer: Answer,
    usage: dict[str, Any],
    fault: Midstream | None,
    settings: AnthropicSimulatorSettings,
) -> web.StreamResponse:
    """Send ``answer`` as Anthropic's SSE stream, paced by ``settings``; ``fault`` ends it with an ``error`` event."""
    response = web.StreamResponse(status=200, headers={**SSE_HEADERS, "request-id": request_id})
    await response.prepare(request)
    writer = EventWriter(response, settings)
    start = {**message_body(req, answer, usage), "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 1}
    writer.add("message_start", {"type": "message_start", "message": start})
    try:
        index = step = 0
        if answer.thinking:
            step = await _stream_thinking(writer, answer)
            index = 1
        if answer.tool_input is not None:
            await _stream_tool(writer, answer, index, step)
        elif not answer.tokens:
            if not index:
                writer.add("ping", {"type": "ping"})
        elif not await _stream_text(writer, answer, fault, index, step):
            return response  # a mid-stream error ended it
        delta = {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence}
        final = {"output_tokens": answer.output_tokens}
        writer.add("message_delta", {"type": "message_delta", "delta": delta, "usage": final})
        writer.add("message_stop", {"type": "message_stop"})
        await writer.flush()
    except ConnectionResetError:
        raise asyncio.CancelledError from None
    return response


def _start(writer: EventWriter, index: int, block: dict[str, Any]) -> None:
    """A block's ``content_block_start`` (the first block's followed by a ``ping``, as Anthropic sends it)."""
    writer.add("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
    if not index:
        writer.add("ping", {"type": "ping"})


def _delta(writer: EventWriter, index: int, delta: dict[str, Any]) -> None:
    writer.add("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


async def _stream_thinking(writer: EventWriter, answer: Answer) -> int:
    """The thinking block at index 0; returns the steps (tokens) it took."""
    block = answer.thinking_block
    assert block is not None
    _start(writer, 0, {"type": "thinking", "thinking": "", "signature": ""})
    for step, word in enumerate(answer.thinking):
        await writer.wait(step)
        _delta(writer, 0, {"type": "thinking_delta", "thinking": word})
    _delta(writer, 0, {"type": "signature_delta", "signature": block["signature"]})
    writer.add("content_block_stop", {"type": "content_block_stop", "index": 0})
    return len(answer.thinking)


async def _stream_text(writer: EventWriter, answer: Answer, fault: Midstream | None, index: int, first: int) -> bool:
    """The text block at ``index``, its tokens paced from step ``first``; ``False`` when a mid-stream fault ended
    the stream."""
    _start(writer, index, {"type": "text", "text": ""})
    strike = None if fault is None else min(fault.after_tokens, max(len(answer.tokens) - 1, 0))
    for step, token in enumerate(answer.tokens):
        await writer.wait(first + step)
        if step == strike:
            assert fault is not None
            error = {"type": fault.error.type, "message": fault.error.message}
            writer.add("error", {"type": "error", "error": error})
            await writer.flush()
            return False
        _delta(writer, index, {"type": "text_delta", "text": token})
    writer.add("content_block_stop", {"type": "content_block_stop", "index": index})
    return True


async def _stream_tool(writer: EventWriter, answer: Answer, index: int, first: int) -> None:
    """The tool_use block at ``index``, its pieces paced from step ``first``."""
    _start(writer, index, {"type": "tool_use", "id": new_id("toolu_"), "name": answer.tool_name, "input": {}})
    arguments = orjson.dumps(answer.tool_input).decode() if answer.tool_input else ""
    pieces = [""] + [arguments[i : i + 8] for i in range(0, len(arguments), 8)]
    for step, piece in enumerate(pieces):
        await writer.wait(first + step)
        _delta(writer, index, {"type": "input_json_delta", "partial_json": piece})
    writer.add("content_block_stop", {"type": "content_block_stop", "index": index})
