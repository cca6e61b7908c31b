"""Charges of finished requests to their keys' Redis counters, batched: one pipeline per :data:`FLUSH_SECONDS` for
every request that finished meanwhile, off the request path.

A charge adds to its key's pending tokens and spend (summed per Redis key, so a batch has a few commands whatever
the traffic) and counts at once against the key's limits in this process (:class:`~gateway.admission.KeyState`).
The first charge after a quiet spell is written at once; the ones that follow within FLUSH_SECONDS go together after
it. The same pipeline gives back the slots of requests per minute that a process reserved and did not use.

While Redis is unreachable (or a write fails), spend goes to the :class:`~gateway.spend_ledger.SpendLedger`, charged
when Redis is back; a write whose reply was lost (a timeout) may be charged again: budgets err high. Tokens are not
kept: their minute is over long before Redis returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from gateway.admission import KeyState
from gateway.redis_guard import RedisBusy, RedisGuard, RedisUnavailable
from gateway.spend_ledger import SpendLedger

FLUSH_SECONDS = 0.05
_TPM_WINDOW_MS = 61_000

# (state, tpm key or "", spend key) -> [tokens, USD]
Pending = dict[tuple[KeyState, str, str], list[float]]


class ChargeBatcher:
    """Pending charges and slots to give back, written by one background task."""

    def __init__(
        self,
        guard: RedisGuard,
        kept: SpendLedger,
        on_spend: Callable[[str, float], None],
        on_kept: Callable[[], None],
    ) -> None:
        self.guard = guard
        self.kept = kept  # spend that could not be written
        self.on_spend = on_spend  # (key name, its period's spend in Redis) after each write
        self.on_kept = on_kept  # spend was kept: charge it once Redis answers again
        self._pending: Pending = {}
        self._holding: set[KeyState] = set()  # states with reserved slots, given back when unused
        self._wake: asyncio.Event | None = None
        self._urgent: asyncio.Event | None = None  # a charge of a key near its limit: written without waiting
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="llmops-charges")

    async def close(self) -> None:
        """Stop the task and write what is pending (slots held are given back)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for state in self._holding:
            state.slots_until = 0.0
        with contextlib.suppress(Exception):
            await self.flush()

    def add(self, state: KeyState, tokens: int, cost: float) -> None:
        """Charge a finished request's tokens and cost to its key (written within FLUSH_SECONDS; never waits)."""
        config = state.config
        state.roll(time.time())
        tpm_key = state.tpm_key if config.tpm and tokens else ""
        spend_key = state.spend_key
        entry = self._pending.get((state, tpm_key, spend_key))
        if entry is None:
            self._pending[(state, tpm_key, spend_key)] = [float(tokens), cost]
        else:
            entry[0] += tokens
            entry[1] += cost
        if tpm_key:
            state.tokens_unsent += tokens
        state.spend_unsent += cost
        state.charged += 1
        state.token_sum += tokens
        state.cost_sum += cost
        self._poke(urgent=state.near)

    def hold(self, state: KeyState) -> None:
        """``state`` holds reserved slots: give back those still unused when they expire."""
        self._holding.add(state)
        self._poke()

    def _poke(self, urgent: bool = False) -> None:
        if self._wake is not None and not self._wake.is_set():
            self._wake.set()
        if urgent and self._urgent is not None and not self._urgent.is_set():
            self._urgent.set()

    async def _run(self) -> None:
        assert self._wake is not None and self._urgent is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._urgent.clear()
            with contextlib.suppress(Exception):  # a failed write is kept (spend) by flush itself
                await self.flush()
            if not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), FLUSH_SECONDS)
            if self._pending or self._holding:
                self._wake.set()

    def _give_backs(self) -> dict[str, int]:
        """rpm slots held past their time, per Redis counter (those of a minute that is over are dropped)."""
        mono, minute = time.monotonic(), int(time.time() // 60)
        out: dict[str, int] = {}
        for state in list(self._holding):
            if state.minute != minute:  # that minute's counter is over: nothing to give back
                state.slots = 0
            elif state.slots > 0 and mono >= state.slots_until:
                if state.config.rpm:
                    out[state.rpm_key] = out.get(state.rpm_key, 0) + state.slots
                state.slots = 0
            if not state.slots:
                self._holding.discard(state)
        return out

    async def flush(self) -> None:
        """Write the pending charges and give back unused slots in one pipeline."""
        give_back = self._give_backs()
        batch, self._pending = self._pending, {}
        if not batch and not give_back:
            return
        if not self.guard.up:  # charged when Redis is back (the guard says when)
            self._keep(batch, settle=False)
            return

        async def write(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for (state, tpm_key, spend_key), (tokens, cost) in batch.items():
                if tpm_key:
                    pipe.incrby(tpm_key, int(tokens))
                    pipe.pexpire(tpm_key, _TPM_WINDOW_MS)
                pipe.incrbyfloat(spend_key, cost)
                if state.spend_ttl:
                    pipe.expire(spend_key, state.spend_ttl)
            for rpm_key, slots in give_back.items():
                pipe.decrby(rpm_key, slots)
            return await pipe.execute()

        try:  # nobody waits for a charge: it may wait longer than an admission for a connection
            results = await self.guard.call(write, wait_seconds=10 * self.guard.wait_seconds)
        except (RedisUnavailable, RedisBusy):
            self._keep(batch)
            return
        except asyncio.CancelledError:  # shutting down: kept, charged by the shutdown's settling (maybe twice)
            self._keep(batch, settle=False)
            raise
        i = 0
        for (state, tpm_key, spend_key), (tokens, cost) in batch.items():
            if tpm_key:
                if tpm_key == state.tpm_key:
                    state.tokens_unsent -= tokens
                    state.tokens = max(state.tokens, float(results[i]))
                i += 2
            spent = float(results[i])
            i += 2 if state.spend_ttl else 1
            if spend_key == state.spend_key:
                state.spend_unsent -= cost
                state.spent = max(state.spent, spent)
            self.on_spend(state.name, spent)

    def _keep(self, batch: Pending, settle: bool = True) -> None:
        """A batch that could not be written: its spend kept for later, its tokens dropped."""
        for (state, tpm_key, spend_key), (tokens, cost) in batch.items():
            if tpm_key and tpm_key == state.tpm_key:
                state.tokens_unsent -= tokens
            if spend_key == state.spend_key:
                state.spend_unsent -= cost
            self.kept.add(spend_key, cost, state.spend_ttl)
        if settle and len(self.kept):
            self.on_kept()
