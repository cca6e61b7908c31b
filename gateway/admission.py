"""Admission against a key's limits with few Redis round trips: requests per minute are reserved in Redis in
chunks, and a process admits from its reservation locally.

- **Reservations.** One Lua script (:data:`RESERVE`) checks the key's budget and tokens per minute and reserves
  requests against its requests per minute, atomically across processes. It grants the requests waiting now plus a
  chunk ahead sized to what this process admitted in the last :data:`SLOT_SECONDS` (none below 1 / SLOT_SECONDS
  requests a second, at most 1/8 of the minute's room left, at most :data:`MAX_CHUNK`). The requests that follow take
  these slots without asking Redis; one round trip serves many requests.
- **rpm is exact across processes**: every admitted request was reserved in Redis first. Slots unused after
  :data:`SLOT_SECONDS` are given back (the charge batcher decrements the counter), so a process keeps other processes
  from at most the slots it holds, for at most that long.
- **tpm and budgets** are checked at each reservation in Redis and, between reservations, against what the last one
  read (at most SLOT_SECONDS old) plus this process's own charges not yet in Redis and its spend kept through an
  outage. So beyond the requests in flight (as before), a key can pass its tpm or budget by the slots other processes
  held when it crossed: at most one chunk per process.
- **Single flight.** At most one reservation per key runs at a time in a process; requests that need a slot while it
  runs wait for it (bounded by ``wait_seconds``: then :class:`RedisBusy`, a 503, never an unchecked pass), and the
  next reservation asks for all of them at once. While Redis is not known to be up nobody waits: the guard lets one
  call probe it and the others fail open at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from gateway.redis_guard import RedisBusy, RedisGuard, RedisUnavailable
from gateway.spend_ledger import SpendLedger
from llmops.config import KeyConfig

SLOT_SECONDS = 0.1  # reserved slots are used within this, or given back; also how old the tpm/budget view may be
MAX_CHUNK = 1024
ADMITTED, RPM_EXCEEDED, BUDGET_USED_UP, TPM_EXCEEDED = 0, 1, 2, 3

# KEYS: rpm counter, tpm counter, spend. ARGV: rpm (0: none), tpm left (-1: none), budget left (-1: none), window ms,
# requests waiting, slots wanted ahead. Returns {verdict, slots granted, spend, tokens} (spend and tokens as strings:
# Lua numbers would be truncated to integers).
RESERVE = """
local spent = redis.call('GET', KEYS[3]) or '0'
local budget = tonumber(ARGV[3])
if budget >= 0 and tonumber(spent) >= budget then return {2, 0, spent, '0'} end
local used = '0'
local tpm = tonumber(ARGV[2])
if tpm >= 0 then
  used = redis.call('GET', KEYS[2]) or '0'
  if tonumber(used) >= tpm then return {3, 0, spent, used} end
end
local need = tonumber(ARGV[5])
local ahead = tonumber(ARGV[6])
local rpm = tonumber(ARGV[1])
if rpm <= 0 then return {0, need + ahead, spent, used} end
local room = rpm - tonumber(redis.call('GET', KEYS[1]) or '0')
if room <= 0 then return {1, 0, spent, used} end
local grant = math.min(room, need + math.min(ahead, math.floor(math.max(room - need, 0) / 8)))
if grant > 0 and redis.call('INCRBY', KEYS[1], grant) == grant then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return {0, grant, spent, used}
"""


def period_id(period: str, now: float | None = None) -> str:
    """The current budget period's id (UTC): ``20261126`` for day, ``202611`` for month, ``total``."""
    if period == "total":
        return "total"
    stamp = time.gmtime(now if now is not None else time.time())
    return time.strftime("%Y%m%d" if period == "day" else "%Y%m", stamp)


PERIOD_TTL = {"day": 2 * 86400, "month": 40 * 86400, "total": None}


class Verdict(NamedTuple):
    """An admission's outcome: :data:`ADMITTED` or why not; ``retry_after`` in seconds for rpm and tpm."""

    code: int
    retry_after: int = 0


_ADMIT = Verdict(ADMITTED)


def _to_window_end(now: float) -> int:
    return max(1, math.ceil(60 - now % 60))


class KeyState:
    """One key's limits in one process: its Redis keys for the current minute and budget period, the slots it holds,
    what the last reservation read, and its charges not yet in Redis."""

    __slots__ = (
        "charged",
        "chunk",
        "config",
        "cost_sum",
        "minute",
        "name",
        "near",
        "period",
        "rate",
        "reserving",
        "rpm_key",
        "seen",
        "seen_since",
        "slots",
        "slots_until",
        "spend_key",
        "spend_ttl",
        "spend_unsent",
        "spent",
        "token_sum",
        "tokens",
        "tokens_unsent",
        "tpm_key",
        "waiting",
    )

    def __init__(self, name: str, config: KeyConfig) -> None:
        self.name = name
        self.config = config
        self.minute = -1
        self.period = ""
        self.rpm_key = self.tpm_key = self.spend_key = ""
        self.spend_ttl = PERIOD_TTL[config.budget_period]
        self.slots = 0  # reserved in Redis for the current minute, not yet used
        self.slots_until = 0.0  # monotonic: unused slots are given back after this
        self.spent = 0.0  # the period's spend, as the last reply read it
        self.tokens = 0.0  # the minute's tokens, as the last reply read them
        self.spend_unsent = 0.0  # charged here, not yet in Redis
        self.tokens_unsent = 0.0
        self.reserving: asyncio.Future[Verdict] | None = None
        self.waiting = 0
        self.seen = 0  # admissions asked for since seen_since, for the chunk's size
        self.seen_since = 0.0
        self.rate = 0.0
        self.chunk = 0
        self.charged = 0  # requests charged, their tokens and cost: a request's average size
        self.token_sum = 0.0
        self.cost_sum = 0.0
        self.near = bool(config.tpm or config.budget_usd is not None)  # within 8 requests of tpm or budget

    def roll(self, now: float) -> None:
        """Move to the current minute (and budget period): the old minute's slots and counts are over."""
        minute = int(now // 60)
        if minute == self.minute:
            return
        self.minute = minute
        self.rpm_key = f"llmops:rl:{self.name}:rpm:{minute}"
        self.tpm_key = f"llmops:rl:{self.name}:tpm:{minute}"
        self.slots = 0
        self.tokens = self.tokens_unsent = 0.0
        period = period_id(self.config.budget_period, now)
        if period != self.period:  # periods start on a minute
            self.period = period
            self.spend_key = f"llmops:spend:{self.name}:{period}"
            self.spent = self.spend_unsent = 0.0

    def local_verdict(self, now: float, kept: float) -> Verdict:
        """tpm and budget against what this process knows (``kept``: its spend kept through an outage)."""
        config = self.config
        if config.budget_usd is not None and self.spent + self.spend_unsent + kept >= config.budget_usd:
            return Verdict(BUDGET_USED_UP)
        if config.tpm and self.tokens + self.tokens_unsent >= config.tpm:
            return Verdict(TPM_EXCEEDED, _to_window_end(now))
        return _ADMIT

    def ahead(self, mono: float, kept: float) -> int:
        """Slots to reserve beyond the requests waiting: what this process admits in SLOT_SECONDS at its rate, within
        the headroom of tpm and budget (``kept``: spend kept through an outage)."""
        elapsed = mono - self.seen_since
        if elapsed >= SLOT_SECONDS:
            self.rate = self.seen / elapsed
            self.seen = 0
            self.seen_since = mono
        self.chunk = min(MAX_CHUNK, int(self.rate * SLOT_SECONDS), self.headroom(kept))
        return self.chunk

    def headroom(self, kept: float) -> int:
        """1/8 of the requests the key's tpm and budget have room for (of this process's average size): slots
        ahead never take more. 0 before the first charge, and within 8 requests of a limit (``near``)."""
        config = self.config
        if not (config.tpm or config.budget_usd is not None):
            return MAX_CHUNK
        room = float(MAX_CHUNK)
        if self.charged:
            if config.budget_usd is not None and self.cost_sum > 0:
                left = config.budget_usd - self.spent - self.spend_unsent - kept
                room = min(room, left * self.charged / (8 * self.cost_sum))
            if config.tpm and self.token_sum > 0:
                left = config.tpm - self.tokens - self.tokens_unsent
                room = min(room, left * self.charged / (8 * self.token_sum))
        else:
            room = 0.0
        self.near = room < 1
        return max(int(room), 0)


class Admission:
    """Admits requests of limited keys against Redis through reservations (see the module's docstring)."""

    def __init__(self, guard: RedisGuard, kept: SpendLedger, hold: Callable[[KeyState], None]) -> None:
        self.guard = guard
        self.kept = kept  # spend kept through an outage counts against budgets
        self.hold = hold  # told when a key holds slots (to give them back when unused)
        self._script: Any = None

    def start(self) -> None:
        self._script = self.guard.client.register_script(RESERVE)

    async def admit(self, state: KeyState) -> Verdict:
        """The verdict for one request of ``state``'s key; :class:`RedisUnavailable` (fail open) or
        :class:`RedisBusy` (503) when Redis cannot say."""
        now = time.time()
        state.roll(now)
        state.seen += 1
        if state.slots > 0 and time.monotonic() < state.slots_until:
            return self._take(state, now)
        guard = self.guard
        if not guard.up:  # one call probes Redis, the others fail open at once: nobody waits for the probe
            verdict = await self._reserve(state, 1, 0)
            if verdict.code != ADMITTED:
                return verdict
            return self._take(state, time.time()) if state.slots > 0 else _ADMIT
        deadline = time.monotonic() + guard.wait_seconds + guard.timeout_seconds
        while True:
            if state.reserving is None:
                state.reserving = asyncio.ensure_future(self._round(state))
                state.reserving.add_done_callback(_consume)
            state.waiting += 1
            try:
                verdict = await asyncio.shield(state.reserving)
            finally:
                state.waiting -= 1
            if verdict.code != ADMITTED:
                return verdict
            now = time.time()
            state.roll(now)
            if state.slots > 0:
                return self._take(state, now)
            if time.monotonic() > deadline:  # others took every slot, round after round: the gateway is overloaded
                raise RedisBusy
            if not guard.up:
                raise RedisUnavailable

    def _take(self, state: KeyState, now: float) -> Verdict:
        kept = self.kept.pending(state.spend_key) if state.config.budget_usd is not None else 0.0
        verdict = state.local_verdict(now, kept)
        if verdict.code != ADMITTED:
            return verdict
        state.slots -= 1
        if state.slots * 4 < state.chunk and state.reserving is None and self.guard.up:  # ahead of need
            state.reserving = asyncio.ensure_future(self._round(state))
            state.reserving.add_done_callback(_consume)
        return _ADMIT

    async def _round(self, state: KeyState) -> Verdict:
        """One reservation for every request waiting now, plus the slots ahead."""
        try:
            await asyncio.sleep(0)  # the requests arriving with this one wait for it too
            kept = self.kept.pending(state.spend_key) if state.config.budget_usd is not None else 0.0
            return await self._reserve(state, state.waiting, state.ahead(time.monotonic(), kept))
        finally:
            state.reserving = None

    async def _reserve(self, state: KeyState, need: int, ahead: int) -> Verdict:
        """Ask Redis for ``need`` slots (requests waiting: taken by them) and ``ahead`` more (kept as slots)."""
        config = state.config
        now = time.time()
        state.roll(now)
        keys = [state.rpm_key, state.tpm_key, state.spend_key]
        tpm_left = -1.0 if not config.tpm else max(config.tpm - state.tokens_unsent, 0.0)
        budget_left = -1.0
        if config.budget_usd is not None:
            budget_left = max(config.budget_usd - state.spend_unsent - self.kept.pending(state.spend_key), 0.0)
        args = [config.rpm or 0, tpm_left, budget_left, 61_000, need, ahead]
        minute = state.minute

        async def reserve(client: Any) -> Any:
            return await self._script(keys=keys, args=args, client=client)

        code, granted, spent, tokens = await self.guard.call(reserve)
        if state.minute != minute:  # the minute turned meanwhile: the reply is the old minute's; ask again
            return _ADMIT
        state.spent = max(state.spent, float(spent))
        state.tokens = max(state.tokens, float(tokens))
        if code != ADMITTED:
            return Verdict(code, _to_window_end(now) if code in (RPM_EXCEEDED, TPM_EXCEEDED) else 0)
        state.slots += granted
        state.slots_until = time.monotonic() + SLOT_SECONDS
        self.hold(state)
        return _ADMIT


def _consume(future: asyncio.Future[Verdict]) -> None:
    """A reservation ahead of need that nobody awaits: its failure is the guard's business (counted there)."""
    if not future.cancelled():
        future.exception()
