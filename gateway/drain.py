"""Shutdown with a deadline (``server.drain_seconds``).

On SIGTERM the server stops accepting connections and lets running requests finish; :meth:`Drain.begin` starts the
clock. When it runs out, every request still running is ended by the gateway: a stream gets a last error event in
its route's shape (code ``server_shutting_down``) and ends cleanly, a request still waiting for its upstream gets
503; each is counted (``llm_gateway_shutdown_cut_total``) and said in one log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gateway.errors import GatewayError

log = logging.getLogger("llmops.gateway")

SHUTTING_DOWN = GatewayError(
    503,
    "The gateway is shutting down and could not finish this request in time. Send it again.",
    type="server_error",
    code="server_shutting_down",
    headers={"Retry-After": "1"},
)


class Drain:
    """The requests running in one gateway process, and the deadline after which they are cut."""

    def __init__(self) -> None:
        self._running: set[Callable[[], None]] = set()
        self.cutting = False  # the deadline passed: requests still running are being ended
        self._timer: asyncio.TimerHandle | None = None

    def add(self, cut: Callable[[], None]) -> None:
        """A request starts; ``cut()`` ends it early when the deadline passes."""
        self._running.add(cut)

    def add_current_task(self, ex: Any) -> Callable[[], None] | None:
        """Add the running task, handling request ``ex``: at the deadline it is marked (``ex.shutdown_cut``) and
        cancelled. Returns what to :meth:`discard` when it is done."""
        task = asyncio.current_task()
        if task is None:
            return None

        def cut() -> None:
            ex.shutdown_cut = True
            task.cancel()

        self._running.add(cut)
        return cut

    def discard(self, cut: Callable[[], None]) -> None:
        self._running.discard(cut)

    def begin(self, seconds: float) -> None:
        """Shutdown began: requests still running in ``seconds`` are cut."""
        if self._timer is None:
            if self._running:
                log.info("shutting down: %d requests may run for up to %g s", len(self._running), seconds)
            self._timer = asyncio.get_running_loop().call_later(seconds, self._cut)

    def _cut(self) -> None:
        self.cutting = True
        if self._running:
            log.warning("shutdown deadline passed: ending %d requests still running", len(self._running))
        for cut in list(self._running):
            cut()
