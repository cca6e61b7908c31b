"""The stream relay's ways of ending, driven directly: the client leaving (told by our HTTP protocol's connection
hook, or by ``http.disconnect`` under another ASGI server), the shutdown deadline, the server cancelling the request,
and a normal end. The end-to-end versions (a real gateway, real clients) are in test_gateway_errors.py,
test_shutdown.py and test_slow_clients.py; these pin down what the relay does in its own task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.drain import Drain
from gateway.exchange import CHAT, Exchange
from gateway.http_protocol import CONNECTION
from gateway.relay import StreamRelay


class _Upstream:
    """An upstream response whose body yields ``chunks`` and then waits (or ends, with ``end=True``)."""

    def __init__(self, chunks: list[bytes], end: bool = False) -> None:
        self.chunks = chunks
        self.end = end
        self.closed = False
        self.content = self

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if not self.end:
            await asyncio.Event().wait()  # a long generation

    def close(self) -> None:
        self.closed = True


class _Events:
    def __init__(self) -> None:
        self.done = False
        self.error = False

    def feed(self, chunk: bytes, now: float) -> bytes:
        if chunk == b"data: [DONE]\n\n":
            self.done = True
        return chunk

    def flush(self, now: float) -> bytes:
        return b""


class _Connection:
    on_client_lost: Any = None


def _relay(upstream: _Upstream, drain: Drain | None = None) -> tuple[StreamRelay, list[Exchange]]:
    ex = Exchange(CHAT, "req-relay-test", 0.0)
    ex.deployment = SimpleNamespace(config=SimpleNamespace(timeouts=SimpleNamespace(total=60.0)))  # type: ignore[assignment]
    ended: list[Exchange] = []
    relay = StreamRelay(ex, upstream, _Events(), {}, ended.append, drain=drain)  # type: ignore[arg-type]
    return relay, ended


class _Client:
    """Collects what the relay sends; ``first`` is set once the first body chunk went out."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.first = asyncio.Event()

    async def send(self, message: Any) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            self.first.set()

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def _never() -> Any:
    await asyncio.Event().wait()


class _Streaming:
    """A relay started under our HTTP protocol (a connection hook in its scope), its first chunk sent."""

    def __init__(self, drain: Drain | None = None) -> None:
        self.upstream = _Upstream([b'data: {"a":1}\n\n'])
        self.relay, self.ended = _relay(self.upstream, drain)
        self.client, self.connection = _Client(), _Connection()

    async def start(self) -> asyncio.Future[None]:
        scope = {"type": "http", CONNECTION: self.connection}
        task = asyncio.ensure_future(self.relay(scope, _never, self.client.send))  # type: ignore[arg-type]
        await asyncio.wait_for(self.client.first.wait(), 2)
        return task


async def test_the_connection_hook_ends_a_stream_whose_client_left() -> None:
    stream = _Streaming()
    task = await stream.start()
    connection, ended, upstream = stream.connection, stream.ended, stream.upstream
    assert connection.on_client_lost is not None, "the relay listens for the client leaving"
    connection.on_client_lost()
    await asyncio.wait_for(task, 2)  # ends by itself: the cancellation was the relay's own, not the server's
    assert not task.cancelled()
    assert [ex.status for ex in ended] == [499] and ended[0].disconnected
    assert upstream.closed, "the upstream call is cancelled"
    assert connection.on_client_lost is None, "the hook is released with the request"


async def test_without_the_hook_a_disconnect_message_ends_the_stream() -> None:
    upstream = _Upstream([b'data: {"a":1}\n\n'])
    relay, ended = _relay(upstream)
    client = _Client()
    left = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    task = asyncio.ensure_future(relay({"type": "http"}, receive, client.send))
    await asyncio.wait_for(client.first.wait(), 2)
    left.set()
    await asyncio.wait_for(task, 2)
    assert [ex.status for ex in ended] == [499] and upstream.closed


async def test_a_complete_stream_ends_cleanly_and_a_late_hook_call_does_nothing() -> None:
    upstream = _Upstream([b'data: {"a":1}\n\n', b"data: [DONE]\n\n"], end=True)
    relay, ended = _relay(upstream)
    client, connection = _Client(), _Connection()
    await relay({"type": "http", CONNECTION: connection}, _never, client.send)
    assert [ex.status for ex in ended] == [200] and not ended[0].disconnected
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert client.body() == b'data: {"a":1}\n\ndata: [DONE]\n\n'
    relay._client_left()  # the connection closing after the response: no effect on a finished relay
    assert ended[0].status == 200 and len(ended) == 1


async def test_the_shutdown_deadline_ends_the_stream_with_an_error_event() -> None:
    drain = Drain()
    stream = _Streaming(drain)
    task = await stream.start()
    drain._cut()  # what the deadline's timer calls
    await asyncio.wait_for(task, 2)
    ex = stream.ended[0]
    assert ex.shutdown_cut and ex.status == 503 and ex.error_type == "server_shutting_down"
    assert b"server_shutting_down" in stream.client.body()
    assert stream.client.sent[-1]["more_body"] is False
    assert not drain._running, "the relay left the drain"


async def test_the_server_cancelling_the_request_still_records_it() -> None:
    stream = _Streaming()
    task = await stream.start()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(stream.ended) == 1 and stream.upstream.closed and stream.connection.on_client_lost is None


async def test_a_client_leaving_while_the_server_cancels_too_still_propagates_the_cancellation() -> None:
    stream = _Streaming()
    task = await stream.start()
    task.cancel()
    stream.connection.on_client_lost()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [ex.status for ex in stream.ended] == [499]
