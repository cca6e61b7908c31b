"""Relaying a streamed answer: events go to the client as they arrive, measured on the way.

:class:`StreamRelay` is the ASGI response; the provider's event handling is a small strategy: :class:`OpenAIEvents`
(OpenAI-compatible SSE: rewrite ``model``, take the usage chunk, spot errors inside the 200 stream) or
:class:`AnthropicEvents` (Anthropic's event stream translated to OpenAI chunks).
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import orjson
from starlette.types import Receive, Scope, Send

from gateway.errors import GatewayError, error_body, normalise_upstream_error
from gateway.exchange import Exchange
from gateway.pricing import Usage
from gateway.sse import SSEDecoder
from gateway.upstream import UpstreamFailure, classify_exception

if TYPE_CHECKING:
    from gateway.providers.anthropic import AnthropicStreamTranslator

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class StreamEvents(Protocol):
    """How one provider's stream becomes OpenAI SSE bytes for the client."""

    done: bool  # the stream ended properly ([DONE] or the provider's end event)
    error: bool  # an error event arrived inside the 200 stream

    def feed(self, chunk: bytes, now: float) -> bytes: ...

    def flush(self, now: float) -> bytes: ...


class OpenAIEvents:
    """OpenAI-compatible SSE: forward each event, with the public model name and without unasked-for usage."""

    def __init__(self, ex: Exchange) -> None:
        assert ex.model is not None and ex.deployment is not None
        self.ex = ex
        self.upstream_field = ex.deployment.upstream_model_field
        self.public_field = ex.model.public_model_field
        self.public_name = ex.model.name
        self.decoder = SSEDecoder()
        self.done = False
        self.error = False

    def feed(self, chunk: bytes, now: float) -> bytes:
        out = [self._event(event, now) for event in self.decoder.feed(chunk)]
        return b"".join(part for part in out if part)

    def flush(self, now: float) -> bytes:
        tail = self.decoder.flush()
        return (self._event(tail, now) or b"") if tail is not None else b""

    def _event(self, event: bytes, now: float) -> bytes | None:
        """One SSE event (without its blank-line terminator) → the bytes to forward, or ``None`` to drop it."""
        if event.startswith(b"data:"):
            return self._data(event, now)
        head, found, data_line = event.rpartition(b"\ndata:")
        if not found:
            return event + b"\n\n"  # comments and other fields pass through untouched
        # ``id:`` / ``event:`` / comment lines before the data line: forwarded as they are, the data handled as usual.
        handled = self._data(b"data:" + data_line, now)
        return None if handled is None else head + b"\n" + handled

    def _data(self, event: bytes, now: float) -> bytes | None:
        data = event[6:] if event[5:6] == b" " else event[5:]
        if data == b"[DONE]":
            self.done = True
            return b"data: [DONE]\n\n"
        ex = self.ex
        if ex.first_token_at is None and carries_output(data):
            ex.first_token_at = now
        if ex.first_token_at is not None:
            ex.output_events += 1  # for an estimate, should the usage chunk never come
        if b'"error"' in data:
            error = stream_error(data)
            if error is not None:
                self.error = True
                code = error["error"].get("code")
                ex.status = int(code) if code and str(code).isdigit() and 400 <= int(code) < 600 else 502
                ex.upstream_reason = "http_4xx" if ex.status < 500 else "http_5xx"
                return b"data: " + orjson.dumps(error) + b"\n\n"
        chunk: Any = None
        if b'"finish_reason":"' in data:  # only the last chunk of a choice has a non-null one
            chunk = loads_or_none(data)
            choices = chunk.get("choices") if isinstance(chunk, dict) else None
            if isinstance(choices, list) and choices and isinstance(choices[0], dict):
                ex.finish_reason = choices[0].get("finish_reason") or ex.finish_reason
        if ex.sample is not None:
            if chunk is None:
                chunk = loads_or_none(data)
            if isinstance(chunk, dict) and isinstance(chunk.get("choices"), list):
                for choice in chunk["choices"]:
                    if isinstance(choice, dict):
                        ex.sample.collect_choice(choice)
        if b'"usage"' in data and b'"usage":null' not in data:
            if chunk is None:
                chunk = loads_or_none(data)
            if isinstance(chunk, dict):
                usage = Usage.from_openai(chunk.get("usage"))
                if usage is not None:
                    ex.usage = usage
                    ex.usage_final = True
                    if chunk.get("choices") == [] and not ex.client_wants_usage:
                        return None
        rewritten = data.replace(self.upstream_field, self.public_field, 1)
        if rewritten is data and b'"model"' in data:
            chunk = loads_or_none(data)
            if isinstance(chunk, dict) and "model" in chunk:
                chunk["model"] = self.public_name
                rewritten = orjson.dumps(chunk)
        return b"data: " + rewritten + b"\n\n"


class AnthropicEvents:
    """Anthropic's event stream, translated to OpenAI ``chat.completion.chunk`` events."""

    def __init__(self, ex: Exchange, translator: AnthropicStreamTranslator) -> None:
        self.ex = ex
        self.translator = translator
        self.decoder = SSEDecoder()
        self.done = False
        self.error = False

    def feed(self, chunk: bytes, now: float) -> bytes:
        out = [part for event in self.decoder.feed(chunk) for part in self.translator.feed_raw(event)]
        self._update(now)
        if self.ex.first_token_at is not None:
            self.ex.output_events += len(out)
        return b"".join(out)

    def flush(self, now: float) -> bytes:
        tail = self.decoder.flush()
        out = self.translator.feed_raw(tail) if tail is not None else []
        self._update(now)
        return b"".join(out)

    def _update(self, now: float) -> None:
        t, ex = self.translator, self.ex
        if ex.first_token_at is None and t.has_output:
            ex.first_token_at = now
        usage = t.usage
        if usage is not None:
            ex.usage = usage
            ex.usage_final = t.usage_final
        if t.error is not None and not self.error:
            self.error = True
            ex.status = t.error_status or 502
            ex.upstream_reason = "http_4xx" if ex.status < 500 else "http_5xx"
        self.done = t.done and not self.error
        if t.finish_reason:
            ex.finish_reason = t.finish_reason
        if ex.sample is not None and t.done:
            ex.sample.text = [t.text]
            ex.sample.finish_reason = t.finish_reason


class StreamRelay:
    """An ASGI response that relays the upstream's events as they arrive and cancels the upstream call when the
    client goes away; ``on_end(ex)`` runs once, however the stream ended."""

    def __init__(
        self,
        ex: Exchange,
        upstream: aiohttp.ClientResponse,
        events: StreamEvents,
        headers: dict[str, str],
        on_end: Any,
    ) -> None:
        self.ex = ex
        self.upstream = upstream
        self.events = events
        self.headers = _SSE_HEADERS + [(k.encode(), v.encode()) for k, v in headers.items()]
        self.on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ex = self.ex
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
            if pump.done():
                watch.cancel()
                pump.result()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
                ex.disconnected = True
        except OSError:  # the client went away while we were writing to it
            ex.disconnected = True
        except UpstreamFailure as failure:  # the upstream broke off after the stream started: never retried
            ex.upstream_reason = failure.reason
            ex.status = failure.error.status
            await self._send_error_event(send, failure.error)
        finally:
            if not watch.done():
                watch.cancel()
            if not pump.done():
                pump.cancel()
            self.upstream.close()
            if ex.disconnected:
                ex.status = 499
            elif not self.events.done and not self.events.error and ex.upstream_reason is None:
                ex.status = 502
                ex.upstream_reason = "invalid_response"
            self.on_end(ex)

    async def _send_error_event(self, send: Send, error: GatewayError) -> None:
        event = b"data: " + orjson.dumps(error.body()) + b"\n\n"
        try:
            await send({"type": "http.response.body", "body": event, "more_body": False})
        except OSError:
            self.ex.disconnected = True

    async def _pump(self, send: Send) -> None:
        ex = self.ex
        route = ex.deployment
        assert route is not None
        events = self.events
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        try:
            async for chunk in self.upstream.content.iter_any():
                started = perf_counter()
                body = events.feed(chunk, started)
                ex.own_seconds += perf_counter() - started
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise classify_exception(route, exc) from exc
        body = events.flush(perf_counter())
        if body:
            await send({"type": "http.response.body", "body": body, "more_body": True})


def carries_output(data: bytes) -> bool:
    """Whether a chunk holds the first generated output (text, reasoning or a tool call), so that time to first
    token is not fooled by a role-only first chunk some servers send before generation starts. Parses only the
    chunks before the first token."""
    chunk = loads_or_none(data)
    if not isinstance(chunk, dict):
        return False
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if choice.get("text"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning") or delta.get("tool_calls")
        ):
            return True
    return False


def loads_or_none(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def stream_error(data: bytes) -> dict[str, Any] | None:
    """An ``{"error": ...}`` event sent inside a 200 stream, normalised to OpenAI's shape; ``None`` otherwise."""
    chunk = loads_or_none(data)
    if not isinstance(chunk, dict) or "error" not in chunk or "choices" in chunk:
        return None
    message, err_type, param, code = normalise_upstream_error(chunk, "The upstream reported an error mid-stream.")
    return error_body(message, err_type, param, code)


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
