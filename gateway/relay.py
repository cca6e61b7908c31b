"""Relaying a streamed answer: events go to the client as they arrive, measured on the way.

:class:`StreamRelay` is the ASGI response: it pumps the upstream's bytes through the deployment provider's
:class:`~gateway.providers.base.StreamEvents` (which rewrites, translates and measures them), stops when the client
goes away (cancelling the upstream call), and calls ``on_end`` once however the stream ended. It runs in the
request's own task: our HTTP protocol calls it back when the connection is lost (a task per stream waiting on
``receive()`` cost ~3 % of the CPU of a streamed request); under another ASGI server such a task watches instead.

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
from typing import TYPE_CHECKING, Any

import aiohttp
from starlette.types import Receive, Scope, Send

from gateway.drain import SHUTTING_DOWN, Drain
from gateway.errors import GatewayError, UpstreamFailure
from gateway.http_protocol import CLIENT_STALLED, CONNECTION, ClientConnection
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
        self._task: asyncio.Task[Any] | None = None  # the request's task, which pumps
        self._pumping = True
        self._stopped: str | None = None  # why it was stopped from outside: "client" or "cut"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ex = self.ex
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        connection: ClientConnection | None = scope.get(CONNECTION)
        watch = None
        if connection is not None:  # our HTTP protocol says when the client goes away
            connection.on_client_lost = self._client_left
        else:  # another ASGI server (a test transport): a task waits for its disconnect message instead
            watch = asyncio.ensure_future(self._watch(receive))
        if self.drain is not None:
            self.drain.add(self._cut)
        try:
            try:
                await self._pump(send)
            finally:
                self._pumping = False
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if self._stopped is None or task.uncancel() > 0:  # not (only) ours: the server cancelled the request
                raise
            if self._stopped == "cut":  # the shutdown deadline passed: a last error event, then a clean end
                ex.status = SHUTTING_DOWN.status
                ex.error_type = SHUTTING_DOWN.code
                await self._send_error_event(send, SHUTTING_DOWN)
        except OSError:  # the client went away while we were writing to it
            ex.disconnected = True
        except _ClientStalled:
            ex.client_stalled = True
        except UpstreamFailure as failure:  # the upstream broke off after the stream started: never retried
            ex.upstream_reason = failure.reason
            ex.status = failure.error.status
            await self._send_error_event(send, failure.error)
        finally:
            self._pumping = False
            if connection is not None:
                connection.on_client_lost = None
            if watch is not None:
                watch.cancel()
            if self.drain is not None:
                self.drain.discard(self._cut)
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

    def _stop(self, why: str) -> None:
        """End the relay from outside its task (``why``: ``client`` left or shutdown ``cut``), if it still pumps."""
        if self._pumping and self._stopped is None and self._task is not None:
            self._stopped = why
            self._task.cancel()

    def _client_left(self) -> None:
        self.ex.disconnected = True
        self._stop("client")

    def _cut(self) -> None:  # the shutdown deadline passed
        if self._pumping:
            self.ex.shutdown_cut = True
        self._stop("cut")

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._client_left()

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
