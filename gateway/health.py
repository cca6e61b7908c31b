"""Passive health of deployments: consecutive failures put a deployment in cooldown; when the cooldown ends one
request probes it (half-open); success restores it, failure doubles the cooldown (up to a maximum).

Only what real traffic tells counts: no synthetic pings. An upstream 429 with ``Retry-After`` cools the deployment
down for that long at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from llmops.config import RoutingConfig


@dataclass(slots=True)
class _State:
    failures: int = 0
    cooldown: float = 0.0
    until: float = 0.0
    since: float = 0.0  # when the current cooldown began
    probing: bool = False


class DeploymentHealth:
    """Health of every deployment of one gateway process (keyed by ``model|deployment``)."""

    def __init__(
        self,
        settings: RoutingConfig,
        on_change: Callable[[str, bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._states: dict[str, _State] = {}
        self._on_change = on_change
        self._clock = clock

    def _state(self, key: str) -> _State:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State()
        return state

    def available(self, key: str) -> bool:
        """True when the deployment may take a request now (healthy, or its cooldown is over and nobody probes)."""
        state = self._states.get(key)
        if state is None or state.until == 0.0:
            return True
        return self._clock() >= state.until and not state.probing

    def begin(self, key: str) -> float:
        """A request is sent to the deployment: after a cooldown it is the probe. Returns when it began (give it to
        :meth:`success`)."""
        now = self._clock()
        state = self._states.get(key)
        if state is not None and state.until and now >= state.until:
            state.probing = True
        return now

    def release(self, key: str) -> None:
        """The request sent as a probe told nothing about the deployment (it failed before or beside the upstream
        exchange): the next request probes instead."""
        state = self._states.get(key)
        if state is not None:
            state.probing = False

    def success(self, key: str, began: float | None = None) -> None:
        """The deployment served a request. One that ``began`` before the current cooldown (a long stream or
        generation started while the deployment was still taking traffic) says nothing about it since: ignored."""
        state = self._states.get(key)
        if state is None:
            return
        if began is not None and state.until and began < state.since:
            return
        was_down = state.until != 0.0
        state.failures = 0
        state.cooldown = 0.0
        state.until = 0.0
        state.probing = False
        if was_down and self._on_change:
            self._on_change(key, True)

    def failure(self, key: str, retry_after: float | None = None) -> None:
        """A retryable failure (connect, timeout, 429, 5xx)."""
        state = self._state(key)
        state.failures += 1
        settings = self.settings
        was_down = state.until != 0.0
        if state.probing or retry_after is not None or state.failures >= settings.failure_threshold:
            if retry_after is not None:
                cooldown = min(max(retry_after, 0.0), settings.max_cooldown_seconds)
            elif state.probing:
                cooldown = min(max(state.cooldown, settings.cooldown_seconds) * 2, settings.max_cooldown_seconds)
            else:
                cooldown = settings.cooldown_seconds
            state.cooldown = cooldown
            state.since = self._clock()
            state.until = state.since + cooldown
            state.probing = False
            if not was_down and self._on_change:
                self._on_change(key, False)
