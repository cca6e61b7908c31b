"""Request ids: taken from a well-formed client ``x-request-id`` or made here, and returned on every response."""

from __future__ import annotations

import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SCOPE_KEY = "llmops.request_id"
_CLIENT_ID = re.compile(rb"^[A-Za-z0-9._:-]{8,128}$")


def new_request_id() -> str:
    """A random id (128 bits, hex)."""
    return os.urandom(16).hex()


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
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
