"""Serving one chat or completion request: faults, admission, token pacing, SSE streaming and the final body.

Timing: after admission the first token comes ``ttft`` later, then one token every ``1 / tokens_per_second``
seconds; the choices of a request advance in lockstep. Stream events are written as they are produced: everything
produced so far is flushed before each wait, so no event waits in a buffer while the simulator sleeps (with no
delays at all, a whole stream goes out in one write).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any, Protocol

import orjson
from aiohttp import web

from llmops.simulator.answers import Choice
from llmops.simulator.engine import Engine, Run
from llmops.simulator.faults import FaultPlan
from llmops.simulator.protocol import GenerationRequest, error_bytes, error_object
from llmops.simulator.responses import chunk_usage, final_usage_chunk, usage

JSON = "application/json"
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_DONE = b"data: [DONE]\n\n"


class Format(Protocol):
    """What :class:`~llmops.simulator.responses.ChatFormat` and ``CompletionFormat`` provide."""

    base: dict[str, Any]

    def opening(self, index: int, usage_now: dict | None) -> dict[str, Any] | None: ...

    def chunk(self, choice: Choice, step: int, text: str, finish: bool, usage_now: dict | None) -> dict: ...

    def response(self, choices: list[Choice], usage_object: dict[str, Any]) -> dict[str, Any]: ...


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON response serialised with orjson."""
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON)


def error_response(message: str, status: int, param: str | None = None, err_type: str | None = None) -> web.Response:
    """An error in vLLM's shape."""
    return web.Response(body=error_bytes(message, status, param, err_type), status=status, content_type=JSON)


def _phrase(status: int) -> str:
    """The status's reason phrase, or ``HTTP <status>`` for one outside the standard list (e.g. 499, 529)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def drop_connection(request: web.Request) -> None:
    """Close the client's connection at once, without (the rest of) a response; ends the handler quietly."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError


class _Events:
    """Server-sent events written to a prepared response, buffered only until the next flush."""

    __slots__ = ("_buffer", "_response")

    def __init__(self, response: web.StreamResponse) -> None:
        self._response = response
        self._buffer: list[bytes] = []

    def add(self, obj: Any) -> None:
        self._buffer.append(b"data: " + orjson.dumps(obj) + b"\n\n")

    def raw(self, data: bytes) -> None:
        self._buffer.append(data)

    async def flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            await self._response.write(data)


async def apply_early_faults(engine: Engine, request: web.Request, plan: FaultPlan) -> web.Response | None:
    """The delay of a slow request, then an injected error response or disconnection (None: carry on)."""
    faults = engine.metrics.faults
    if plan.delay_s > 0:
        faults["slow"].inc()
        await asyncio.sleep(plan.delay_s)
    if plan.kind == "error":
        faults["error"].inc()
        message = plan.message or f"Simulated fault: {_phrase(plan.status)}"
        return error_response(message, plan.status)
    if plan.kind == "disconnect" and plan.after_tokens is None:
        faults["disconnect"].inc()
        drop_connection(request)
    return None


def fault_step(plan: FaultPlan, choices: list[Choice]) -> int | None:
    """After how many tokens a mid-stream fault strikes (before the last token, so the answer is cut)."""
    if plan.kind not in ("midstream_error", "disconnect") or plan.after_tokens is None:
        return None
    longest = max((len(choice.tokens) for choice in choices), default=0)
    return min(plan.after_tokens, max(longest - 1, 0))


async def generate(
    engine: Engine,
    request: web.Request,
    gen: GenerationRequest,
    plan: FaultPlan,
    fmt: Format,
    choices: list[Choice],
    arrival: float,
    report_cached: bool,
) -> web.StreamResponse:
    """Serve a chat or completion request whose answer is ``choices`` (faults before the answer already applied)."""
    run = engine.run([gen.prompts[choice.prompt_index] for choice in choices], arrival, plan.ttft_s, plan.itl_s)
    try:
        if gen.stream:
            return await _stream(engine, request, gen, plan, fmt, choices, run, report_cached)
        return await _complete(engine, request, gen, plan, fmt, choices, run, report_cached)
    finally:
        run.close("abort")


def _usage(gen: GenerationRequest, run: Run, report_cached: bool) -> dict[str, Any]:
    prompt_tokens = sum(prompt.tokens for prompt in gen.prompts)
    return usage(prompt_tokens, sum(run.generated), run.usage_cached_tokens if report_cached else None)


def advance(run: Run, choices: list[Choice], step: int) -> list[tuple[int, Choice, str, bool]]:
    """Advance every choice by one token: (sequence, choice, token text, is last) for those that produced one."""
    out = []
    for seq, choice in enumerate(choices):
        count = len(choice.tokens)
        if step < count:
            run.token(seq)
            out.append((seq, choice, choice.tokens[step], step == count - 1))
        elif step == 0 and count == 0:
            out.append((seq, choice, "", True))
    return out


async def _complete(
    engine: Engine,
    request: web.Request,
    gen: GenerationRequest,
    plan: FaultPlan,
    fmt: Format,
    choices: list[Choice],
    run: Run,
    report_cached: bool,
) -> web.Response:
    await run.admit()
    strike_at = fault_step(plan, choices)
    steps = max(max((len(choice.tokens) for choice in choices), default=0), 1)
    for step in range(steps):
        await run.wait(step)
        if step == strike_at:
            return error_response(strike(engine, request, plan, run), 500)
        for seq, choice, _, last in advance(run, choices, step):
            if last:
                run.finish(seq, choice.engine_finish)
    return json_response(fmt.response(choices, _usage(gen, run, report_cached)))


def strike(engine: Engine, request: web.Request, plan: FaultPlan, run: Run) -> str:
    """Strike the planned mid-answer fault: drop the connection, or end the run as ``error`` and return the message."""
    if plan.kind == "disconnect":
        engine.metrics.faults["disconnect"].inc()
        run.close("abort")
        drop_connection(request)
    engine.metrics.faults["midstream_error"].inc()
    run.close("error")
    return plan.message or "Internal server error"


async def _stream(
    engine: Engine,
    request: web.Request,
    gen: GenerationRequest,
    plan: FaultPlan,
    fmt: Format,
    choices: list[Choice],
    run: Run,
    report_cached: bool,
) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers=SSE_HEADERS)
    await response.prepare(request)  # headers go out now, before queueing, as vLLM's do
    events = _Events(response)
    continuous = gen.continuous_usage
    try:
        await run.admit()
        for choice in choices:
            prompt_tokens = gen.prompts[choice.prompt_index].tokens
            opening = fmt.opening(choice.index, chunk_usage(prompt_tokens, 0) if continuous else None)
            if opening is not None:
                events.add(opening)
        strike_at = fault_step(plan, choices)
        steps = max(max((len(choice.tokens) for choice in choices), default=0), 1)
        for step in range(steps):
            # vLLM sends the role-only opening chunk with the first token, after prefill: hold it until then.
            await run.wait(step, events.flush if step else None)
            if step == strike_at:
                await events.flush()
                events.add(error_object(strike(engine, request, plan, run), 500))
                events.raw(_DONE)
                await events.flush()
                return response
            for seq, choice, text, last in advance(run, choices, step):
                usage_now = None
                if continuous:
                    usage_now = chunk_usage(gen.prompts[choice.prompt_index].tokens, run.generated[seq])
                events.add(fmt.chunk(choice, step, text, last, usage_now))
                if last:
                    run.finish(seq, choice.engine_finish)
        if gen.include_usage:
            events.add(final_usage_chunk(fmt.base, _usage(gen, run, report_cached)))
        events.raw(_DONE)
        await events.flush()
    except ConnectionResetError:
        raise asyncio.CancelledError from None  # the client went away: the run ends as "abort"
    return response
