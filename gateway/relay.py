"""Relaying a streamed answer: events go to the client as they arrive, measured on the way.

:class:`StreamRelay` is the ASGI response: it pumps the upstream's bytes through the deployment provider's
:class:`~gateway.providers.base.StreamEvents` (which rewrites, translates and measures them), watches for the client
going away (cancelling the upstream call), and calls ``on_end`` once however the stream ended.

A client that does not read is not the upstream's fault. The gateway buffers at most ``server.client_buffer_bytes``
for it (the connection's write buffer; the upstream is not read meanwhile) and cuts it off after
``server.client_stall_seconds`` without progress (:mod:`gateway.http_protocol`, which frees that buffer). The relay
counts the time it waited for the client: an upstream timeout that only happened because of that wait (the
upstream's time less the client's is within ``timeouts.total``) is the client's, not the deployment's. Either way
the request ends as 499 ``client_stalled``, and the deployment's health hears nothing of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING

import aiohttp
from starlette.types import Receive, Scope, Send

from gateway.drain import SHUTTING_DOWN, Drain
from gateway.errors import GatewayError, UpstreamFailure
from gateway.http_protocol import CLIENT_STALLED
from gateway.inbound import ChatStream, stream_error_event
from gateway.upstream import classify_exception

if TYPE_CHECKING:
    from gateway.exchange import Exchange
    from gateway.providers.base import StreamEvents

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class TranslatedEvents:
    """A deployment's chat completion stream (``inner``, measured as usual) turned into the client's format."""

    def __init__(self, inner: StreamEvents, outer: ChatStream) -> None:
        self.inner = inner
        self.outer = outer

    @property
    def done(self) -> bool:
        return self.inner.done

    @property
    def error(self) -> bool:
        return self.inner.error

    def feed(self, chunk: bytes, now: float) -> bytes:
        return self.outer.feed(self.inner.feed(chunk, now))

    def flush(self, now: float) -> bytes:
        return self.outer.feed(self.inner.flush(now)) + self.outer.flush()


class _ClientStalled(Exception):
    """The upstream timed out while the relay waited for a client that did not read."""


class StreamRelay:
    """An ASGI response that relays the upstream's events as they arrive and cancels the upstream call when the
    client goes away; ``on_end(ex)`` runs once, however the stream ended."""

    def __init__(
        self,
        ex: Exchange,
        upstream: aiohttp.ClientResponse,
        events: StreamEvents,
        headers: dict[str, str],
        on_end: Callable[[Exchange], None],
        sent_at: float | None = None,
        drain: Drain | None = None,
    ) -> None:
        self.ex = ex
        self.sent_at = perf_counter() if sent_at is None else sent_at  # when the upstream request was sent
        self.upstream = upstream
        self.events = events
        self.headers = _SSE_HEADERS + [(k.encode(), v.encode()) for k, v in headers.items()]
        self.on_end = on_end
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ex = self.ex
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(_wait_for_disconnect(receive))

        def cut() -> None:  # the shutdown deadline passed
            ex.shutdown_cut = True
            pump.cancel()

        if self.drain is not None:
            self.drain.add(cut)
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
            if ex.shutdown_cut and not watch.done():
                watch.cancel()
                await asyncio.gather(pump, return_exceptions=True)
                ex.status = SHUTTING_DOWN.status
                ex.error_type = SHUTTING_DOWN.code
                await self._send_error_event(send, SHUTTING_DOWN)
            elif pump.done():
                watch.cancel()
                pump.result()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
                ex.disconnected = True
        except OSError:  # the client went away while we were writing to it
            ex.disconnected = True
        except _ClientStalled:
            ex.client_stalled = True
        except UpstreamFailure as failure:  # the upstream broke off after the stream started: never retried
            ex.upstream_reason = failure.reason
            ex.status = failure.error.status
            await self._send_error_event(send, failure.error)
        finally:
            if self.drain is not None:
                self.drain.discard(cut)
            if not watch.done():
                watch.cancel()
            if not pump.done():
                pump.cancel()
            self.upstream.close()
            if ex.client_stalled or scope.get(CLIENT_STALLED):  # cut off for not reading (or it made us time out)
                ex.client_stalled = ex.disconnected = True
                ex.error_type = "client_stalled"
            if ex.disconnected:
                ex.status = 499
            elif not ex.shutdown_cut and not self.events.done and not self.events.error and ex.upstream_reason is None:
                ex.status = 502
                ex.upstream_reason = "invalid_response"
            self.on_end(ex)

    async def _send_error_event(self, send: Send, error: GatewayError) -> None:
        event = stream_error_event(self.ex.endpoint.label, error)  # in the route's own shape
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
                fed = perf_counter()
                ex.own_seconds += fed - started
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    ex.client_wait += perf_counter() - fed  # nearly 0 unless the client's buffer is full
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = classify_exception(route, exc)
            upstream_seconds = perf_counter() - self.sent_at - ex.client_wait
            if failure.reason == "timeout" and ex.client_wait and upstream_seconds < route.config.timeouts.total:
                raise _ClientStalled from exc
            raise failure from exc
        body = events.flush(perf_counter())
        if body:
            await send({"type": "http.response.body", "body": body, "more_body": True})


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
