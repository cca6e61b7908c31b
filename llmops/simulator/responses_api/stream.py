"""A streamed Responses API answer: typed server-sent events (``event: TYPE`` and ``data: {"type": TYPE, ...,
"sequence_number": N}``, numbered from 0, no ``[DONE]``), paced by the engine like chat.

Order: ``response.created``, ``response.in_progress``; for text ``response.output_item.added`` (the message),
``response.content_part.added``, ``response.output_text.delta`` per token, ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``; for each function call ``response.output_item.added``,
``response.function_call_arguments.delta`` per piece, ``response.function_call_arguments.done``,
``response.output_item.done``; last ``response.completed`` with the whole response and its usage (status
``incomplete`` when ``max_output_tokens`` cut it, as vLLM sends it). A mid-stream fault sends an ``error`` event
(``{"type": "error", "code": "server_error", "message", "param": null}``) and ends the stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from llmops.simulator.answers import Choice
from llmops.simulator.engine import Engine, Run
from llmops.simulator.faults import FaultPlan
from llmops.simulator.generation import SSE_HEADERS, advance, fault_step, strike
from llmops.simulator.responses import usage
from llmops.simulator.responses_api.output import ResponsesFormat, logprob_entry


class TypedEvents:
    """Typed SSE events, numbered, buffered only until the next flush."""

    __slots__ = ("_buffer", "_response", "sequence")

    def __init__(self, response: web.StreamResponse) -> None:
        self._response = response
        self._buffer: list[bytes] = []
        self.sequence = 0

    def add(self, kind: str, **fields: Any) -> None:
        data = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        self._buffer.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    async def flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            await self._response.write(data)


class _Emitter:
    """The output events of one answer, token by token."""

    def __init__(self, events: TypedEvents, fmt: ResponsesFormat, choice: Choice) -> None:
        self.events = events
        self.fmt = fmt
        self.choice = choice
        self.streamed: dict[int, str] = {}  # call index -> arguments so far

    def token(self, step: int, text: str) -> None:
        if self.choice.tool_calls:
            self._call_piece(step, text)
            return
        events, fmt = self.events, self.fmt
        where = {"item_id": fmt.message_id, "output_index": 0}
        if step == 0:
            events.add("response.output_item.added", output_index=0, item=fmt.message_item([], "in_progress"))
            events.add("response.content_part.added", **where, content_index=0, part=fmt.text_part("", []))
        if text:
            gen = fmt.req.gen
            logprobs = [logprob_entry(text, step, gen.top_logprobs, with_bytes=False)] if gen.logprobs else []
            events.add("response.output_text.delta", **where, content_index=0, delta=text, logprobs=logprobs)

    def _call_piece(self, step: int, text: str) -> None:
        choice, events = self.choice, self.events
        index, header = choice.tool_steps[step]
        call = choice.tool_calls[index]
        item_id = f"fc_{call.call_id}"
        if header:
            self.streamed[index] = ""
            item = self.fmt.call_item(call, "in_progress", arguments="")
            events.add("response.output_item.added", output_index=index, item=item)
        else:
            self.streamed[index] += text
            events.add("response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=text)
        following = choice.tool_steps[step + 1] if step + 1 < len(choice.tool_steps) else None
        if following is None or following[1]:  # the call's last piece
            arguments = self.streamed[index]
            events.add(
                "response.function_call_arguments.done",
                item_id=item_id,
                output_index=index,
                name=call.name,
                arguments=arguments,
            )
            events.add("response.output_item.done", output_index=index, item=self.fmt.call_item(call, "completed"))

    def close(self) -> None:
        """The text's closing events (a function call closes itself with its last piece)."""
        choice, fmt, events = self.choice, self.fmt, self.events
        if choice.tool_calls:
            return
        text, logprobs = choice.text, fmt.logprobs(choice)
        where = {"item_id": fmt.message_id, "output_index": 0, "content_index": 0}
        events.add("response.output_text.done", **where, text=text, logprobs=logprobs)
        part = fmt.text_part(text, logprobs)
        events.add("response.content_part.done", **where, part=part)
        events.add("response.output_item.done", output_index=0, item=fmt.message_item([part], "completed"))


async def stream_response(
    engine: Engine,
    request: web.Request,
    plan: FaultPlan,
    fmt: ResponsesFormat,
    choice: Choice,
    run: Run,
) -> web.StreamResponse:
    """Stream ``choice`` (faults before the answer already applied); ``run`` is its engine run."""
    response = web.StreamResponse(status=200, headers=SSE_HEADERS)
    await response.prepare(request)
    events = TypedEvents(response)
    skeleton = fmt.skeleton("in_progress")
    events.add("response.created", response=skeleton)
    events.add("response.in_progress", response=skeleton)
    emitter = _Emitter(events, fmt, choice)
    try:
        await events.flush()
        await run.admit()
        strike_at = fault_step(plan, [choice])
        for step in range(max(len(choice.tokens), 1)):
            await run.wait(step, events.flush)
            if step == strike_at:
                await events.flush()
                events.add("error", code="server_error", message=strike(engine, request, plan, run), param=None)
                await events.flush()
                return response
            for seq, _, text, last in advance(run, [choice], step):
                emitter.token(step, text)
                if last:
                    run.finish(seq, choice.engine_finish)
        emitter.close()
        prompt_tokens = fmt.req.gen.prompts[0].tokens
        final = fmt.response([choice], usage(prompt_tokens, sum(run.generated), run.usage_cached_tokens))
        events.add("response.completed", response=final)
        await events.flush()
    except ConnectionResetError:
        raise asyncio.CancelledError from None  # the client went away: the run ends as "abort"
    return response
