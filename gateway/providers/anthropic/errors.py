"""Anthropic HTTP errors and error events → OpenAI-shaped errors (see the table in the package docstring)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import error_body

#: Anthropic ``error.type`` → the HTTP status Anthropic sends it with (for errors inside a stream).
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def map_error(status: int, err_type: str | None, message: str) -> tuple[int, dict[str, Any]]:
    """An Anthropic error (HTTP status, ``error.type``, message) → (client status, OpenAI error body); see the
    table in the module docstring."""
    if status in (401, 403):
        return 502, error_body(
            f"The Anthropic upstream rejected the gateway's credentials (HTTP {status}, {err_type}: {message}); "
            "check the deployment's api_key.",
            "upstream_error",
            None,
            "upstream_auth_error",
        )
    if status == 400:
        return 400, error_body(message, "invalid_request_error")
    if status == 404:
        return 404, error_body(message, "invalid_request_error", None, "not_found")
    if status == 413:
        return 413, error_body(message, "invalid_request_error", None, "request_too_large")
    if status == 429:
        return 429, error_body(message, "requests", None, "rate_limit_exceeded")
    if 400 <= status < 500:
        return status, error_body(message, "invalid_request_error", None, err_type)
    if status == 529 or err_type == "overloaded_error":
        return 502, error_body(
            f"The Anthropic upstream is overloaded (HTTP {status}): {message}",
            "upstream_error",
            None,
            "upstream_overloaded",
        )
    return 502, error_body(
        f"The Anthropic upstream failed with HTTP {status} ({err_type or 'error'}): {message}",
        "upstream_error",
        None,
        "upstream_http_error",
    )


def anthropic_error(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    """An Anthropic HTTP error response → (the status the client gets, OpenAI-shaped error body)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    inner = payload.get("error") if isinstance(payload, dict) else None
    err_type = inner.get("type") if isinstance(inner, dict) and isinstance(inner.get("type"), str) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    if not isinstance(message, str) or not message:
        message = body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
    return map_error(status, err_type, message)
