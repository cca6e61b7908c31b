"""Inbound API formats that deployments may not speak natively: each translates its requests to OpenAI chat
completions and the answers back (unary and streamed), and shapes its errors.

A deployment that answers an endpoint itself (``Provider.native``) gets the request as it is; any other
deployment gets it through chat completions by the endpoint's :class:`Translator`. Adding an inbound format means an
``Endpoint`` in :mod:`gateway.exchange`, a module here, and one entry in :data:`TRANSLATORS`.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from gateway.errors import GatewayError
from gateway.inbound import messages, responses


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

    def stream_error(self, error: GatewayError) -> bytes:
        """The event that ends a started stream with ``error``."""
        ...


class _Messages:
    """Anthropic's Messages API (:mod:`gateway.inbound.messages`)."""

    check_request = staticmethod(messages.check_request)
    to_chat_request = staticmethod(messages.to_chat_request)
    to_response = staticmethod(messages.to_message)
    error_payload = staticmethod(messages.error_payload)

    def stream_error(self, error: GatewayError) -> bytes:
        return b"event: error\ndata: " + orjson.dumps(messages.error_payload(error)) + b"\n\n"

    def chat_stream(self, public_model: str) -> ChatStream:
        return messages.ChatToMessagesStream(public_model)


class _Responses:
    """OpenAI's Responses API (:mod:`gateway.inbound.responses`)."""

    check_request = staticmethod(responses.check_request)
    to_chat_request = staticmethod(responses.to_chat_request)
    to_response = staticmethod(responses.to_response)
    error_payload = staticmethod(responses.error_payload)

    def stream_error(self, error: GatewayError) -> bytes:
        body = {"type": "error", "code": error.code, "message": error.message, "param": error.param}
        return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"

    def chat_stream(self, public_model: str) -> ChatStream:
        return responses.ChatToResponsesStream(public_model)


TRANSLATORS: dict[str, Translator] = {"messages": _Messages(), "responses": _Responses()}


def stream_error_event(label: str, error: GatewayError) -> bytes:
    """The event that ends a started stream of the ``label`` endpoint with ``error`` (chat's ``data: {"error"}``
    for OpenAI's own endpoints)."""
    translator = TRANSLATORS.get(label)
    if translator is None:
        return b"data: " + orjson.dumps(error.body()) + b"\n\n"
    return translator.stream_error(error)
