"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class GatewayError(Exception):
    """An error the client sees, already classified (status, OpenAI ``type`` and ``code``)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The OpenAI-shaped error body."""
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: Any = None) -> dict[str, Any]:
    """``{"error": {...}}``; ``code`` is a string or null, as OpenAI's (vLLM sends integers: they are converted)."""
    return {
        "error": {
            "message": message,
            "type": type,
            "param": param,
            "code": None if code is None else str(code),
        }
    }


def error_response(error: GatewayError, request_id: str | None = None, body: dict[str, Any] | None = None) -> Response:
    """A JSON response for ``error`` (OpenAI's shape unless ``body`` gives the route's own), with ``x-request-id``
    when known."""
    headers = dict(error.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return Response(
        orjson.dumps(error.body() if body is None else body),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )


def bad_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    """400 invalid_request_error."""
    return GatewayError(400, message, param=param, code=code)


def model_not_found(name: object) -> GatewayError:
    """404 for a model name the gateway does not serve (OpenAI's code ``model_not_found``)."""
    shown = name if isinstance(name, str) and len(name) <= 200 else "(invalid)"
    return GatewayError(
        404,
        f"The model `{shown}` does not exist on this gateway. GET /v1/models lists the models it serves.",
        param="model",
        code="model_not_found",
    )


def body_too_large(limit: int) -> GatewayError:
    """413 for a request body over ``server.max_body_bytes``."""
    return GatewayError(
        413, f"Request body is larger than the gateway's limit of {limit} bytes.", code="request_too_large"
    )


def upstream_error(status: int, message: str, code: str) -> GatewayError:
    """502/504: the upstream failed, timed out or could not be reached."""
    return GatewayError(status, message, type="upstream_error", code=code)


def normalise_upstream_error(payload: Any, fallback_message: str) -> tuple[str, str, str | None, Any]:
    """Read an upstream error body (OpenAI's ``{"error": {...}}``, vLLM's older flat
    ``{"object": "error", "message": ...}``, or anything else) into ``(message, type, param, code)``."""
    inner = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(inner, str):
        inner = {"message": inner}
    if not isinstance(inner, dict) and isinstance(payload, dict) and "message" in payload:
        inner = payload
    if not isinstance(inner, dict):
        return fallback_message, "invalid_request_error", None, None
    message = inner.get("message")
    if not isinstance(message, str) or not message:
        message = fallback_message
    err_type: str = inner["type"] if isinstance(inner.get("type"), str) else "invalid_request_error"
    param: str | None = inner["param"] if isinstance(inner.get("param"), str) else None
    return message, err_type, param, inner.get("code")


class UpstreamFailure(Exception):
    """The upstream exchange failed: ``error`` is what the client sees, ``reason`` the metric label, ``retryable``
    whether another deployment may be tried (connect errors, timeouts, a dropped connection, 429, 5xx), and
    ``retry_after`` the upstream's ``Retry-After`` in seconds, if it sent one."""

    def __init__(
        self, reason: str, error: GatewayError, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(error.message)
        self.reason = reason
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after
        self.detail: str | None = None  # the upstream's own message, for the log, when the client gets another


def retry_after_seconds(headers: Any) -> float | None:
    """An upstream's ``Retry-After`` header in seconds (``None`` when absent or an HTTP date)."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: rare from model APIs; the default cooldown applies
