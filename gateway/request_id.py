"""Request ids: taken from a well-formed client ``x-request-id`` or made here, and returned on every response."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SCOPE_KEY = "llmops.request_id"
_CLIENT_ID = re.compile(rb"^[A-Za-z0-9._:-]{8,128}$")
_IDS_PER_READ = 128  # one getrandom() call per this many ids: a system call per request cost ~0.3 us


class _RandomIds:
    """128-bit random hex ids from the OS's random source, read in blocks."""

    __slots__ = ("_hex", "_next")

    def __init__(self) -> None:
        self._hex = ""
        self._next = 0

    def reset(self) -> None:
        """Forget the ids read so far (in a forked child, which must not repeat its parent's)."""
        self._hex = ""
        self._next = 0

    def __call__(self) -> str:
        at = self._next
        if at >= len(self._hex):
            self._hex = os.urandom(16 * _IDS_PER_READ).hex()
            at = 0
        self._next = at + 32
        return self._hex[at : at + 32]


_random_id = _RandomIds()
os.register_at_fork(after_in_child=_random_id.reset)


def new_request_id() -> str:
    """A random id (128 bits, hex)."""
    return _random_id()


def request_id_of(scope: Scope) -> str:
    """The id the middleware put in the ASGI scope (a fresh one outside it, e.g. in unit tests)."""
    return scope.get(SCOPE_KEY) or new_request_id()


class RequestIdMiddleware:
    """Pure ASGI middleware: puts the request id in the scope and an ``x-request-id`` header on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if _CLIENT_ID.match(value):
                    request_id = value.decode()
                break
        if request_id is None:
            request_id = new_request_id()
        scope[SCOPE_KEY] = request_id
        await self.app(scope, receive, _SendWithId(send, (b"x-request-id", request_id.encode())))


class _SendWithId:
    """``send`` with the request id header added to the response start. Returns ``send``'s own awaitable instead
    of being a coroutine itself: a stream's every event passes here."""

    __slots__ = ("header", "send")

    def __init__(self, send: Send, header: tuple[bytes, bytes]) -> None:
        self.send = send
        self.header = header

    def __call__(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), self.header]
        return self.send(message)
