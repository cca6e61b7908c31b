"""Fault injection: run-time fault settings (``/admin/faults``) and the per-request ``simulate`` field.

Random faults follow the current :class:`FaultConfig` (flags at start, ``POST /admin/faults`` at run time). A request
may instead say exactly what happens to it with the body field ``simulate`` (the gateway passes unknown fields
through), which makes tests deterministic:

====================================================================  ================================================
``{"fault": "error", "status": 503, "message": "..."}``               answered with that status in vLLM's error shape
``{"fault": "slow", "delay_ms": 500}``                                everything (headers included) 500 ms later
                                                                      (default: ``--slow-ms``), before the engine
                                                                      sees the request (not in ``vllm:*`` latencies)
``{"fault": "midstream_error", "after_tokens": 3}``                   a stream sends 3 tokens, then
                                                                      ``data: {"error": ...}`` and ``data: [DONE]``
                                                                      (a non-streamed request: a 500 after 3 tokens);
                                                                      at most all tokens but the last are sent
``{"fault": "disconnect"}``                                           the connection is closed without an answer;
                                                                      with ``after_tokens``: mid-stream
``{"fault": "none"}``                                                 no random fault for this request
``{"response": "fixed text", "finish_reason": "stop"}``               this answer text (cut by ``max_tokens``)
``{"tool_calls": [{"name": "f", "arguments": {"x": 1}}]}``            these calls of the request's tools
                                                                      (``arguments`` optional; see
                                                                      :mod:`llmops.simulator.tools`)
``{"ttft_ms": 200, "tokens_per_second": 20}``                         this request's pacing
====================================================================  ================================================

Keys combine (``{"fault": "slow", "delay_ms": 100, "response": "ok"}``). When ``fault`` is given, no random fault
applies to the request; otherwise random faults do, rolled in the order error, slow, mid-stream error.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from llmops.simulator.protocol import RequestError
from llmops.simulator.settings import FaultConfig

__all__ = ["DEFAULT_AFTER_TOKENS", "FAULT_KINDS", "FaultConfig", "FaultPlan", "Faults"]

FAULT_KINDS = ("error", "slow", "midstream_error", "disconnect", "none")
DEFAULT_AFTER_TOKENS = 3


@dataclass(slots=True)
class FaultPlan:
    """What happens to one request."""

    kind: str | None = None  # None, "error", "midstream_error" or "disconnect"
    status: int = 500
    message: str | None = None
    delay_s: float = 0.0  # before anything is sent
    after_tokens: int | None = None  # for midstream_error and disconnect
    response: str | None = None
    finish_reason: str | None = None
    tool_calls: list[tuple[str, Any]] | None = None  # (name, arguments or None)
    ttft_s: float = 0.0
    itl_s: float = 0.0  # seconds between tokens after the first


class Faults:
    """The current fault configuration, its random source, and the plan of each request."""

    def __init__(self, config: FaultConfig, seed: int = 0) -> None:
        self.initial = config
        self.config = config
        self._rng = random.Random(seed)

    def update(self, changes: Any) -> FaultConfig:
        """Apply a partial update (a JSON object); raises :class:`RequestError` naming the bad field."""
        if not isinstance(changes, dict):
            raise RequestError("the body must be a JSON object with fields of " + ", ".join(FaultConfig.model_fields))
        try:
            self.config = FaultConfig.model_validate({**self.config.model_dump(), **changes})
        except ValidationError as error:
            item = error.errors()[0]
            field = ".".join(str(part) for part in item["loc"])
            raise RequestError(f"{field}: {item['msg']}", param=field or None) from None
        return self.config

    def reset(self) -> FaultConfig:
        """Back to the configuration of the start."""
        self.config = self.initial
        return self.config

    def plan(self, simulate: Any, stream: bool) -> FaultPlan:
        """The plan of one request from its ``simulate`` field (or None) and the random faults."""
        config = self.config
        plan = FaultPlan(
            ttft_s=config.ttft_ms / 1000.0,
            itl_s=1.0 / config.tokens_per_second if config.tokens_per_second > 0 else 0.0,
        )
        if simulate is not None:
            fault = _apply_simulate(plan, simulate, config.slow_ms / 1000.0)
            if fault is not None:
                return plan
        rng = self._rng
        if config.error_rate and rng.random() < config.error_rate:
            plan.kind = "error"
            return plan
        if config.slow_rate and rng.random() < config.slow_rate:
            plan.delay_s = config.slow_ms / 1000.0
        if stream and config.midstream_error_rate and rng.random() < config.midstream_error_rate:
            plan.kind = "midstream_error"
            plan.after_tokens = rng.randint(1, DEFAULT_AFTER_TOKENS)
        return plan


def _number(value: Any, name: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise RequestError(f"simulate.{name} must be a number >= {minimum:g}, got {value!r}", param="simulate")
    return float(value)


def _apply_simulate(plan: FaultPlan, simulate: Any, slow_s: float) -> str | None:
    """Fill ``plan`` from the ``simulate`` object; returns its ``fault`` (or None)."""
    if not isinstance(simulate, dict):
        raise RequestError('simulate must be an object, e.g. {"fault": "error"}', param="simulate")
    unknown = set(simulate) - {
        "fault",
        "status",
        "message",
        "delay_ms",
        "after_tokens",
        "response",
        "finish_reason",
        "tool_calls",
        "ttft_ms",
        "tokens_per_second",
    }
    if unknown:
        raise RequestError(f"simulate has unknown fields: {sorted(unknown)}", param="simulate")
    fault = simulate.get("fault")
    if fault is not None and fault not in FAULT_KINDS:
        raise RequestError(f"simulate.fault must be one of {list(FAULT_KINDS)}, got {fault!r}", param="simulate")
    if "response" in simulate:
        if not isinstance(simulate["response"], str):
            raise RequestError("simulate.response must be a string", param="simulate")
        plan.response = simulate["response"]
    if "finish_reason" in simulate:
        if simulate["finish_reason"] not in ("stop", "length"):
            raise RequestError("simulate.finish_reason must be 'stop' or 'length'", param="simulate")
        plan.finish_reason = simulate["finish_reason"]
    if "tool_calls" in simulate:
        plan.tool_calls = _tool_calls(simulate["tool_calls"])
    if "ttft_ms" in simulate:
        plan.ttft_s = _number(simulate["ttft_ms"], "ttft_ms") / 1000.0
    if "tokens_per_second" in simulate:
        tps = _number(simulate["tokens_per_second"], "tokens_per_second")
        plan.itl_s = 1.0 / tps if tps > 0 else 0.0
    if "after_tokens" in simulate:
        plan.after_tokens = int(_number(simulate["after_tokens"], "after_tokens"))
    if "delay_ms" in simulate:
        plan.delay_s = _number(simulate["delay_ms"], "delay_ms") / 1000.0
    if "message" in simulate:
        if not isinstance(simulate["message"], str):
            raise RequestError("simulate.message must be a string", param="simulate")
        plan.message = simulate["message"]
    if fault == "error":
        plan.kind = "error"
        status = simulate.get("status", 500)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise RequestError(f"simulate.status must be an HTTP error status (400..599), got {status!r}", "simulate")
        plan.status = status
    elif fault == "slow":
        if "delay_ms" not in simulate:
            plan.delay_s = slow_s
    elif fault in ("midstream_error", "disconnect"):
        plan.kind = fault
        if fault == "midstream_error" and plan.after_tokens is None:
            plan.after_tokens = DEFAULT_AFTER_TOKENS
    return fault


def _tool_calls(value: Any) -> list[tuple[str, Any]]:
    calls = []
    for call in value if isinstance(value, list) else [None]:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or set(call) - {"name", "arguments"}:
            raise RequestError(
                'simulate.tool_calls must be a list of {"name": ..., "arguments": {...}}', param="simulate"
            )
        arguments = call.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise RequestError("simulate.tool_calls: arguments must be an object", param="simulate")
        calls.append((call["name"], arguments))
    return calls
