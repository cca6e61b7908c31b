"""What every request of a run passes first (no lm-evaluation-harness import here): the stop switch (an interrupt,
or the spend budget reached), the spend read from the gateway, and the progress shown while a run goes.

The harness's model classes (:mod:`llmops.eval.harness`) call :meth:`RunGuard.before_request` before each request,
once a slot of ``--max-concurrency`` is held, and :meth:`RunGuard.answered` with each answer. When the guard stops,
no new request starts, the requests in flight finish (their answers are cached, so a resumed run never asks them
again), and :class:`RunStopped` ends the run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from llmops.eval.meter import GatewayMeter


class RunStopped(BaseException):
    """The run stopped before its end: ``reason`` is ``interrupted`` or ``budget``. A BaseException (like
    KeyboardInterrupt), so that the harness's retries (which retry any Exception) do not retry it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Usage:
    """Tokens and requests of one model in a run, from the answers' ``usage``."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, outputs: Any) -> None:
        for output in outputs if isinstance(outputs, list) else [outputs]:
            if not isinstance(output, dict):
                continue
            self.requests += 1
            usage = output.get("usage") or {}
            self.input_tokens += int(usage.get("prompt_tokens") or 0)
            self.output_tokens += int(usage.get("completion_tokens") or 0)


@dataclass
class RunGuard:
    """The stop switch, the budget and the progress of one run (shared by its models)."""

    meter: GatewayMeter
    budget_usd: float | None = None
    progress: Any = None  #: a :class:`llmops.eval.progress.Progress`, or None
    usage: dict[str, Usage] = field(default_factory=dict)
    stopped: RunStopped | None = None
    check_interval_s: float = 0.5
    _checked_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _in_flight: int = 0

    def interrupt(self) -> None:
        """Ask the run to stop (the first Ctrl-C or SIGTERM)."""
        self.stopped = self.stopped or RunStopped(
            "interrupted", "interrupted: the answers received so far are kept; resume with llmops eval --resume RUN"
        )

    def spent_usd(self) -> float:
        """What this run's evaluation traffic cost so far (the gateway's eval cost since the run started)."""
        return self.meter.spent_usd()

    def _check_budget(self) -> None:
        if self.budget_usd is None or self.stopped is not None:
            return
        now = time.monotonic()
        if now - self._checked_at < self.check_interval_s:
            return
        self._checked_at = now
        spent = self.spent_usd()
        if spent >= self.budget_usd:
            self.stopped = RunStopped(
                "budget",
                f"budget reached: evaluation traffic cost ${spent:.6f} of --budget-usd {self.budget_usd:g}; the "
                "answers received so far are kept; resume with llmops eval --resume RUN (and a larger budget)",
            )

    def before_request(self) -> None:
        """Raise :class:`RunStopped` when no new request may start."""
        with self._lock:
            self._check_budget()
            if self.stopped is not None:
                raise self.stopped
            self._in_flight += 1

    def answered(self, model: str, outputs: Any, count: int) -> None:
        """``count`` answers of ``model`` arrived (``outputs``: the response bodies)."""
        self.usage.setdefault(model, Usage()).add(outputs)
        if self.progress is not None:
            self.progress.advance(count, self.spent_usd() if self.budget_usd is not None else None)

    def request_done(self) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def in_flight(self) -> int:
        return self._in_flight


class GuardedSemaphore:
    """The harness's concurrency semaphore, with the guard checked once a slot is held: a request that may not start
    waits for those in flight to finish (so that their answers are cached), then raises :class:`RunStopped`."""

    def __init__(self, inner: asyncio.Semaphore, guard: RunGuard) -> None:
        self.inner = inner
        self.guard = guard

    async def acquire(self) -> bool:
        await self.inner.acquire()
        try:
            self.guard.before_request()
        except RunStopped:
            self.inner.release()
            while self.guard.in_flight() > 0:  # noqa: ASYNC110 - the count is shared with the harness's threads
                await asyncio.sleep(0.01)
            raise
        return True

    def release(self) -> None:
        self.guard.request_done()
        self.inner.release()
