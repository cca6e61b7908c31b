"""Inbound API formats that deployments may not speak natively: each translates its requests to OpenAI chat
completions and the answers back (unary and streamed), and shapes its errors.

A deployment whose provider serves an endpoint natively (``Provider.serves``) gets the request as it is; any other
deployment gets it through chat completions by the endpoint's :class:`Translator`. Adding an inbound format means an
``Endpoint`` in :mod:`gateway.exchange`, a module here, and one entry in :data:`TRANSLATORS`.
"""

from __future__ import annotations

from typing import Any, Protocol

from gateway.errors import GatewayError
from gateway.inbound import messages


class ChatStream(Protocol):
    """Chat completion chunks (SSE bytes) → the inbound format's stream."""

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class Translator(Protocol):
    """One inbound format's translation to and from chat completions."""

    def check_request(self, payload: dict[str, Any]) -> None:
        """What the format itself requires of every request, whoever serves it (raises ``GatewayError``)."""
        ...

    def to_chat_request(self, payload: dict[str, Any]) -> dict[str, Any]: ...

    def to_response(self, data: dict[str, Any], public_model: str) -> dict[str, Any]: ...

    def chat_stream(self, public_model: str) -> ChatStream: ...

    def error_payload(self, error: GatewayError) -> dict[str, Any]: ...


class _Messages:
    """Anthropic's Messages API (:mod:`gateway.inbound.messages`)."""

    check_request = staticmethod(messages.check_request)
    to_chat_request = staticmethod(messages.to_chat_request)
    to_response = staticmethod(messages.to_message)
    error_payload = staticmethod(messages.error_payload)

    def chat_stream(self, public_model: str) -> ChatStream:
        return messages.ChatToMessagesStream(public_model)


TRANSLATORS: dict[str, Translator] = {"messages": _Messages()}
