"""Anthropic's errors: the ``error.type`` of each HTTP status, and the error body with its ``request_id``."""

from __future__ import annotations

from typing import Any

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
ERROR_STATUS = {kind: status for status, kind in ERROR_TYPES.items()}
_DEFAULT_MESSAGES = {
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "rate_limit_error": "This request would exceed the rate limit for your organization. Please retry later.",
}


class AnthropicError(Exception):
    """An error Anthropic would answer: HTTP ``status``, ``error.type`` and message."""

    def __init__(self, status: int, message: str, err_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = err_type or ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def invalid(message: str) -> AnthropicError:
    """A 400 ``invalid_request_error``."""
    return AnthropicError(400, message)


def default_message(err_type: str) -> str:
    """The message Anthropic sends with an error of ``err_type`` (when a simulated fault names none)."""
    return _DEFAULT_MESSAGES.get(err_type, f"Simulated {err_type}")


def error_object(err_type: str, message: str, request_id: str) -> dict[str, Any]:
    """Anthropic's error body."""
    return {"type": "error", "error": {"type": err_type, "message": message}, "request_id": request_id}
