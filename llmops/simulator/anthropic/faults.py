"""Per-request faults of the Anthropic simulator: the body field ``simulate`` (which Anthropic itself would refuse)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from llmops.simulator.anthropic.errors import ERROR_STATUS, AnthropicError, default_message, invalid

DEFAULT_AFTER_TOKENS = 3


@dataclass(slots=True)
class Midstream:
    """A planned error after ``after_tokens`` text deltas of a stream."""

    error: AnthropicError
    after_tokens: int


async def apply_simulate(simulate: Any) -> Midstream | None:
    """Apply a request's ``simulate`` field: wait its delay, raise its error; returns the planned mid-stream error, if
    any (see the package docstring for the fields)."""
    if simulate is None:
        return None
    if not isinstance(simulate, dict):
        raise invalid("simulate: Input should be a valid dictionary")
    fault = simulate.get("fault", "none")
    if fault not in ("none", "error", "midstream_error", "slow"):
        raise invalid("simulate.fault: Input should be 'none', 'error', 'midstream_error' or 'slow'")
    delay = simulate.get("delay_ms")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0):
        raise invalid("simulate.delay_ms: Input should be a number of at least 0")
    if fault == "slow" or delay:
        await asyncio.sleep((1000 if delay is None else delay) / 1000.0)
    if fault not in ("error", "midstream_error"):
        return None
    err_type = simulate.get("error_type")
    err_type = err_type if isinstance(err_type, str) else None
    status = simulate.get("status") or ERROR_STATUS.get(err_type or "", 500 if fault == "error" else 529)
    if not isinstance(status, int) or not 400 <= status < 600:
        raise invalid("simulate.status: Input should be an HTTP error status (400..599)")
    error = AnthropicError(status, "", err_type)
    message = simulate.get("message")
    error.message = message if isinstance(message, str) and message else default_message(error.type)
    if fault == "error":
        raise error
    after = simulate.get("after_tokens", DEFAULT_AFTER_TOKENS)
    return Midstream(error, after if isinstance(after, int) and after >= 0 else DEFAULT_AFTER_TOKENS)
