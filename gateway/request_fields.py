"""What the gateway reads of a client's request besides the model: the body itself, the client's key, and the
gateway's own extras (kept for the monitors, never sent upstream)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from gateway.errors import GatewayError, bad_request, body_too_large
from gateway.exchange import Endpoint
from llmops.contract import PINNING_KINDS, VARIANT_HEADER

if TYPE_CHECKING:
    from gateway.access import AccessControl
    from gateway.exchange import Exchange
    from gateway.inbound import Translator

#: The gateway's own request field: ``{"llmops": {"reference": ..., "contexts": [...]}}``.
EXTRAS_FIELD = "llmops"
_LEGACY_EXTRAS = ("reference", "contexts")  # their old home: OpenAI's ``metadata`` (deprecated)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def credentials(request: Request) -> str | None:
    """The client's key: ``Authorization: Bearer KEY``, or Anthropic's ``x-api-key: KEY``."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        key = request.headers.get("x-api-key")
        if key is not None:
            return "Bearer " + key
    return authorization


def gateway_extras(endpoint: Endpoint, payload: dict[str, Any]) -> dict[str, Any]:
    """The gateway's extras (``reference``, ``contexts``, ...), taken out of the request: the ``llmops`` object, or
    (deprecated) an OpenAI ``metadata`` object holding ``reference`` or ``contexts``. Any other ``metadata`` is the
    client's own (OpenAI's stored-completion tags, Anthropic's ``user_id``) and goes upstream."""
    extras = payload.pop(EXTRAS_FIELD, None)
    if extras is not None:
        if not isinstance(extras, dict):
            raise bad_request(f"'{EXTRAS_FIELD}' must be an object.", param=EXTRAS_FIELD)
        return extras
    metadata = payload.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise bad_request("'metadata' must be an object.", param="metadata")
    if endpoint.api == "openai" and metadata and any(key in metadata for key in _LEGACY_EXTRAS):
        del payload["metadata"]
        return metadata
    return {}


def sticky_user(endpoint: Endpoint, payload: dict[str, Any]) -> str | None:
    """The end user the client names (A/B variants stick to it): OpenAI's ``user``, Anthropic's
    ``metadata.user_id``."""
    if endpoint.api == "openai":
        user = payload.get("user")
    else:
        metadata = payload.get("metadata")
        user = metadata.get("user_id") if isinstance(metadata, dict) else None
    return user if isinstance(user, str) and user else None


def variant_pin(request: Request, ex: Exchange, access: AccessControl | None) -> str | None:
    """The A/B variant the request pins (``x-llmops-variant``), honoured on shadow traffic only
    (:data:`~llmops.contract.PINNING_KINDS`): on any other kind the header is ignored, so applications stay in the
    split. Where keys are configured, only a key with ``variant_pin: true`` may pin (403 for another key's shadow
    request that tries); the variant itself is checked where the model is known (400 when it has no such variant)."""
    if ex.traffic not in PINNING_KINDS:  # first: most requests are user traffic (a header lookup costs ~0.7 µs)
        return None
    pin = request.headers.get(VARIANT_HEADER)
    if pin is None:
        return None
    if access is not None and not access.may_pin(ex.key):
        raise GatewayError(
            403,
            f"Key '{ex.key}' may not pin a variant ({VARIANT_HEADER}): only a key configured with variant_pin: true "
            "(the monitors' key) may, on shadow traffic.",
            code="variant_pin_not_allowed",
        )
    return pin


def relayed_headers(ex: Exchange) -> dict[str, str] | None:
    """The client's headers a native relay passes on: Anthropic's ``anthropic-beta`` (features in beta) to an Anthropic
    deployment answering the Messages API as it is."""
    if ex.beta is not None and ex.upstream_endpoint.label == "messages":
        return {"anthropic-beta": ex.beta}
    return None


def names_upstream_state(ex: Exchange) -> bool:
    """Whether the request names state the upstream keeps (a previous response): its 404 is then the client's."""
    return ex.upstream_endpoint.label == "responses" and bool(ex.payload and ex.payload.get("previous_response_id"))


def as_chat(translator: Translator | None, payload: dict[str, Any]) -> dict[str, Any]:
    """The request as the monitors read it: chat completions where the route speaks another format."""
    if translator is None:
        return dict(payload)
    try:
        return translator.to_chat_request(payload)
    except GatewayError:  # a request no chat host could take is still sampled, as it came
        return dict(payload)
