"""uvicorn's httptools protocol with the limits a public HTTP server needs (``server.*`` in the config).

uvicorn with httptools caps neither the size nor the number of request headers, and times out neither slow headers
nor a connection that never sends a request. This subclass adds, per connection:

- **header bytes** (``max_header_bytes``): counted before the parser sees them; past the cap the request gets 431
  and the rest is never parsed (httptools joins a header's pieces as it goes: a 64 MB header took seconds of the
  event loop from every other client);
- **header count** (``max_headers``): 431;
- **header time** (``header_timeout_seconds``): from a new connection, or from a request's first byte, to the end
  of its headers; 408 once part of a request came, a plain close when nothing did;
- **a client that does not read** (``client_stall_seconds``, ``client_buffer_bytes``): at most this many response
  bytes wait in the connection's buffer, and as many in the kernel's (its send buffer is set to it, instead of
  growing to megabytes); a client that leaves them unread this long is cut off (the connection is aborted, its
  buffers freed) and the request is marked ``llmops.client_stalled`` in its ASGI scope.

Keep-alive idle time and the connection limit are uvicorn's own options (``timeout_keep_alive``,
``limit_concurrency``), set in :mod:`gateway.server`. A refused request's connection lingers a moment, reading and
dropping what the client still sends, so that the client can read the answer before the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from llmops.config_server import ServerConfig

#: Set in a request's ASGI scope when its client was cut off for not reading its response.
CLIENT_STALLED = "llmops.client_stalled"
#: In every request's ASGI scope: the connection (a :class:`ClientConnection`), which calls its ``on_client_lost``
#: once when the client goes away, so that a streamed response needs no task waiting for ``http.disconnect``.
CONNECTION = "llmops.connection"
_LINGER_SECONDS = 2.0  # how long a refused connection keeps reading (and dropping) before it closes
_LINGER_BYTES = 1024 * 1024  # and how much it drops at most


def _header_part(tail: bytes, data: bytes) -> int:
    """How many bytes of ``data`` belong to the headers (all of it unless their end is in it); ``tail``: the last
    bytes of the headers received before, where an end marker may have begun."""
    buffer = tail + data if tail else data
    end, size = buffer.find(b"\r\n\r\n"), 4
    if end < 0:
        end, size = buffer.find(b"\n\n"), 2  # bare line feeds, which the parser also takes
    return len(data) if end < 0 else max(end + size - len(tail), 0)


_data_received = HttpToolsProtocol.data_received
_on_message_complete = HttpToolsProtocol.on_message_complete
_on_header = HttpToolsProtocol.on_header
_on_headers_complete = HttpToolsProtocol.on_headers_complete


class ClientConnection(Protocol):
    """What a response may hook into: ``on_client_lost`` is called (once, then cleared) when the client goes away."""

    on_client_lost: Callable[[], None] | None


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a refused request."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with header, time and write-buffer limits (``limits``: set by
    :func:`protocol_class`)."""

    limits: ServerConfig = ServerConfig()
    on_client_lost: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=self.limits.client_buffer_bytes)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # and the kernel's send buffer: autotuned, it grows to megabytes per connection
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.limits.client_buffer_bytes)
        self._awaiting_headers = True
        self._header_bytes = 0
        self._tail = b""
        self._refusal: tuple[int, str] | None = None
        self._refused = False
        self._dropped = 0
        self._stall_timer: asyncio.TimerHandle | None = None
        # When the headers being awaited began (the connection, or a request's first byte); None between requests.
        # One timer per connection, not one per request: it fires at the earliest deadline it may have to enforce
        # and looks again (arming and cancelling a timer for every request cost ~1-2 µs of CPU).
        self._header_started: float | None = self.loop.time()
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.limits.header_timeout_seconds, self._headers_too_slow
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)
        callback, self.on_client_lost = self.on_client_lost, None
        if callback is not None:
            callback()

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._stall_timer = None

    # ---- request headers --------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering: read and drop, up to a bound
            self._dropped += len(data)
            if self._dropped > _LINGER_BYTES:
                self.transport.abort()
            return
        if self._awaiting_headers:
            if self._header_started is None:  # the first byte of a request on a kept-alive connection
                self._header_started = self.loop.time()
                if self._header_timer is None:
                    self._header_timer = self.loop.call_later(
                        self.limits.header_timeout_seconds, self._headers_too_slow
                    )
            self._header_bytes += _header_part(self._tail, data)
            self._tail = data[-3:]
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse(431, f"Request headers are larger than {self.limits.max_header_bytes} bytes.")
                return
        _data_received(self, data)  # the base class's, called directly: super() costs more on every request

    def on_message_complete(self) -> None:
        _on_message_complete(self)
        self._awaiting_headers = True  # what comes next is the next request's

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.limits.max_headers:
            self._refusal = (431, f"More than {self.limits.max_headers} request headers.")
            raise _Refused
        _on_header(self, name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._tail = b""
        self._header_started = None  # the timer, when it fires, finds nothing to enforce
        self.scope[CONNECTION] = self  # type: ignore[literal-required]
        _on_headers_complete(self)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error: ours when the error was a refusal of ours."""
        if self._refusal is not None:
            self._refuse(*self._refusal)
        else:
            super().send_400_response(msg)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        started = self._header_started
        if self.transport.is_closing() or started is None or not self._awaiting_headers:
            return  # no headers awaited now: the next request's first byte arms the timer again
        left = started + self.limits.header_timeout_seconds - self.loop.time()
        if left > 0:  # armed for an earlier request: this one's deadline is later
            self._header_timer = self.loop.call_later(left, self._headers_too_slow)
            return
        if self._header_bytes == 0 and self.cycle is None:  # a connection that never sent anything: just close it
            self.transport.close()
        elif self._awaiting_headers:
            self._refuse(408, f"Request headers did not arrive within {self.limits.header_timeout_seconds:g} s.")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``message`` and close, lingering a moment so that the client can read it."""
        self._refused = True
        self._cancel_timers()
        body = message.encode()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_SECONDS, self.transport.close)

    # ---- a client that does not read --------------------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.limits.client_stall_seconds, self._client_stalled)

    def resume_writing(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        super().resume_writing()

    def _client_stalled(self) -> None:
        self._stall_timer = None
        if self.cycle is not None:
            self.cycle.scope[CLIENT_STALLED] = True  # type: ignore[literal-required]
        self.transport.abort()  # drops what the client left unread


def protocol_class(limits: ServerConfig) -> type[Any]:
    """The protocol class uvicorn runs (``http=``), with ``limits``."""
    return type("GatewayHttpProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
