"""The interface between the request path and one kind of upstream API.

A :class:`Provider` is chosen once per deployment at start (``DeploymentRoute.adapter``) and answers everything the
request path needs to know about that upstream: the path and headers of a call, the upstream body for a client's
request, the client's answer for an upstream response (unary or streamed), and how an HTTP error is classified.
:mod:`gateway.proxy` never branches on the provider's name; adding a provider touches only ``gateway/providers/``.

Inbound formats (the API a client speaks) are :class:`gateway.exchange.Endpoint` values. A provider says which of
them a deployment answers itself (:meth:`Provider.native`, kept as ``DeploymentRoute.native``): the OpenAI-compatible
provider relays OpenAI's endpoints with only ``model`` rewritten; Anthropic answers its own Messages API as it is and
chat by translation. An inbound format is the same kind of plug-in: an ``Endpoint`` relayed to the deployments that
speak it, and answered by the others through chat completions (``gateway/inbound/``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson

from gateway.errors import bad_request

if TYPE_CHECKING:
    from gateway.errors import UpstreamFailure
    from gateway.exchange import Endpoint, Exchange
    from gateway.pricing import Usage
    from gateway.routing import DeploymentRoute
    from llmops.config import Deployment


class StreamEvents(Protocol):
    """How one provider's stream becomes the client's SSE bytes, measured on the way (first token, usage, errors)."""

    @property
    def done(self) -> bool:
        """The stream ended properly ([DONE] or the provider's end event)."""
        ...

    @property
    def error(self) -> bool:
        """An error event arrived inside the 200 stream."""
        ...

    def feed(self, chunk: bytes, now: float) -> bytes:
        """The bytes to send the client for ``chunk`` of the upstream's stream (possibly none)."""
        ...

    def flush(self, now: float) -> bytes:
        """The bytes of an event left unterminated when the upstream's stream ended."""
        ...


class Answer(NamedTuple):
    """An upstream's unary response, decoded: what the client gets and what the gateway measures."""

    body: bytes  # the client's response body
    data: dict[str, Any]  # the response in the client's (OpenAI) shape, for the sample and the finish reason
    usage: Usage | None
    response_model: str  # the upstream's name for the model that answered (traces)


class Provider(Protocol):
    """One kind of upstream API (``openai_compatible``, ``anthropic``)."""

    name: str  # the deployment's ``provider`` (a metric label value)
    one_choice_per_call: bool  # ``n`` > 1 is answered by several calls (gateway/fan_out.py)

    def headers(self, api_key: str | None) -> dict[str, str]:
        """The headers of every call to a deployment with ``api_key``."""
        ...

    def native(self, deployment: Deployment) -> frozenset[str]:
        """The endpoint labels ``deployment`` answers itself (the others it may answer through chat)."""
        ...

    def path(self, endpoint: Endpoint) -> str:
        """The path (below the deployment's ``base_url``) to call for ``endpoint``."""
        ...

    def encode_request(self, ex: Exchange, payload: dict[str, Any], route: DeploymentRoute) -> bytes:
        """The upstream body for one attempt of ``ex`` on ``route`` (raises ``GatewayError`` for a bad request)."""
        ...

    def decode_response(self, ex: Exchange, raw: bytes, data: dict[str, Any], route: DeploymentRoute) -> Answer:
        """The client's answer for a unary upstream response ``raw`` (parsed: ``data``); raises ``UpstreamFailure``
        when it is not a valid response."""
        ...

    def stream_events(self, ex: Exchange) -> StreamEvents:
        """The event handler of one streamed response."""
        ...

    def classify_error(self, route: DeploymentRoute, status: int, body: bytes, headers: Any) -> UpstreamFailure:
        """An upstream HTTP error (not 404, which every provider shares) → the client's error and its reason."""
        ...


def dumps_body(body: dict[str, Any]) -> bytes:
    """The upstream body; JSON that parsed but cannot be written back (orjson writes at most 254 levels of nesting,
    while it reads up to 1024) is the client's error, not the gateway's."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as error:
        raise bad_request(
            f"The request body cannot be forwarded: {error}. Nest arrays and objects less deeply."
        ) from None
