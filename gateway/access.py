"""API keys, rate limits and spend budgets.

Keys are configured as SHA-256 hashes with a bounded name (the ``key`` metric label); the bearer token's hash is
compared with every configured hash in constant time. With no keys configured the gateway is open.

Limits live in Redis so that several gateway processes enforce them together: a Lua script checks the key's spend
budget and tokens-per-minute and counts the request against its requests-per-minute in one atomic step (fixed
one-minute windows). Tokens and spend are charged after the response from the exact final usage, streams included.

Redis is reached through a :class:`~gateway.redis_guard.RedisGuard`: a burst of requests waits for a connection
(bounded; beyond the bound a request gets 503, never an unchecked pass), and only a Redis that is really unreachable
lets requests through unchecked (fail open, counted, said once per outage). Spend of that time is kept in memory
(:class:`~gateway.spend_ledger.SpendLedger`) and charged when Redis is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import Any

from gateway.errors import GatewayError
from gateway.redis_guard import RedisBusy, RedisGuard, RedisUnavailable
from gateway.spend_ledger import SpendLedger
from llmops.config import KeyConfig
from llmops.config_server import RedisConfig

log = logging.getLogger("llmops.gateway.access")

ANONYMOUS = "anonymous"

# KEYS: rpm counter, tpm counter, spend. ARGV: rpm limit, tpm limit, budget (-1: none), window ms.
# Returns {verdict, retry-after ms}: 0 admitted, 1 rpm exceeded, 2 budget used up, 3 tpm exceeded.
_ADMIT = """
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
if budget >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[3]) or '0')
  if spent >= budget then return {2, 0} end
end
if tpm > 0 then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used >= tpm then return {3, redis.call('PTTL', KEYS[2])} end
end
if rpm > 0 then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
  if n > rpm then return {1, redis.call('PTTL', KEYS[1])} end
end
return {0, 0}
"""

_PERIOD_TTL = {"day": 2 * 86400, "month": 40 * 86400, "total": None}


def _unauthorized(message: str) -> GatewayError:
    return GatewayError(401, message, type="invalid_request_error", code="invalid_api_key")


def period_id(period: str, now: float | None = None) -> str:
    """The current budget period's id (UTC): ``20261126`` for day, ``202611`` for month, ``total``."""
    if period == "total":
        return "total"
    stamp = time.gmtime(now if now is not None else time.time())
    return time.strftime("%Y%m%d" if period == "day" else "%Y%m", stamp)


class AccessControl:
    """Authentication of bearer keys and admission against their limits."""

    def __init__(self, keys: list[KeyConfig], redis: RedisConfig | None, metrics: Any) -> None:
        self.keys = [(k.name, bytes.fromhex(k.sha256), k) for k in keys]
        self.by_name = {k.name: k for k in keys}
        self.open = not keys
        self.metrics = metrics
        self.guard: RedisGuard | None = None
        if redis is not None and self.limited:
            self.guard = RedisGuard(
                redis.url,
                max_connections=redis.limits_max_connections,
                wait_seconds=redis.limits_wait_seconds,
                timeout_seconds=redis.limits_timeout_seconds,
                retry_seconds=redis.limits_retry_seconds,
                on_up=self._settle_soon,
            )
        self.uncharged = SpendLedger()
        self._admit: Any = None
        self._pending: set[asyncio.Task[None]] = set()
        for key in keys:
            metrics.key_budget.labels(key.name).set(key.budget_usd or 0)
        metrics.track(metrics.uncharged_spend, lambda: self.uncharged.total)

    @property
    def limited(self) -> bool:
        return any(k.rpm or k.tpm or k.budget_usd is not None for _, _, k in self.keys)

    async def start(self) -> None:
        """Connect to Redis and learn whether it answers before the first request (it may be away: limits then fail
        open until it is back)."""
        if self.guard is None:
            return

        async def load(client: Any) -> None:
            await client.script_load(_ADMIT)

        await self.guard.start(load)
        self._admit = self.guard.client.register_script(_ADMIT)

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self.guard is not None:
            if self.guard.up and len(self.uncharged):
                await self._settle()
            if len(self.uncharged):
                log.warning(
                    "%.6f USD of spend could not be charged to Redis before shutdown (%d key periods): it is lost",
                    self.uncharged.total,
                    len(self.uncharged),
                )
            await self.guard.close()

    # ---- authentication ---------------------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> str:
        """The configured name of the bearer key (``anonymous`` when the gateway is open); 401 otherwise."""
        if self.open:
            return ANONYMOUS
        if not authorization or not authorization[:7].lower() == "bearer ":
            raise _unauthorized(
                "You didn't provide an API key. Send it in the Authorization header: 'Authorization: Bearer KEY'."
            )
        digest = hashlib.sha256(authorization[7:].strip().encode()).digest()
        found = None
        for name, expected, _ in self.keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(digest, expected):
                found = name
        if found is None:
            raise _unauthorized("Incorrect API key provided.")
        return found

    def may_pin(self, name: str) -> bool:
        """Whether the key named ``name`` may pin an A/B variant on shadow traffic (``variant_pin``); every caller may
        where the gateway is open."""
        if self.open:
            return True
        config = self.by_name.get(name)
        return config is not None and config.variant_pin

    # ---- limits -----------------------------------------------------------------------------------------------
    def _keys(self, name: str, config: KeyConfig, now: float) -> list[str]:
        minute = int(now // 60)
        return [
            f"llmops:rl:{name}:rpm:{minute}",
            f"llmops:rl:{name}:tpm:{minute}",
            f"llmops:spend:{name}:{period_id(config.budget_period, now)}",
        ]

    async def admit(self, name: str, metrics: Any) -> None:
        """Count the request against the key's limits; 429 (with Retry-After) when one is exceeded, 503 when the
        check found no free Redis connection in time. While Redis is unreachable, requests pass unchecked."""
        config = self.by_name.get(name)
        guard = self.guard
        if config is None or guard is None or not (config.rpm or config.tpm or config.budget_usd is not None):
            return
        now = time.time()
        keys = self._keys(name, config, now)
        # spend not yet charged to Redis (kept during an outage) counts against the budget too
        budget = -1.0 if config.budget_usd is None else max(config.budget_usd - self.uncharged.pending(keys[2]), 0.0)
        args = [config.rpm or 0, config.tpm or 0, budget, 61_000]

        async def check(client: Any) -> Any:
            return await self._admit(keys=keys, args=args, client=client)

        try:
            verdict, retry_ms = await guard.call(check)
        except RedisUnavailable:
            metrics.limits_unavailable.inc()
            return
        except RedisBusy:
            metrics.limits_busy.inc()
            raise GatewayError(
                503,
                "The gateway is too busy to check this key's limits right now. Try again in a moment.",
                type="server_error",
                code="limits_busy",
                headers={"Retry-After": "1"},
            ) from None
        if verdict == 0:
            return
        retry_after = str(max(1, int(retry_ms // 1000) + 1)) if retry_ms and retry_ms > 0 else str(60 - int(now % 60))
        if verdict == 2:
            metrics.budget_exceeded.labels(name).inc()
            raise GatewayError(
                429,
                f"The spend budget of key '{name}' ({config.budget_usd:g} USD per {config.budget_period}) is used up.",
                type="insufficient_quota",
                code="insufficient_quota",
            )
        metrics.rate_limited.labels(name).inc()
        what = "requests" if verdict == 1 else "tokens"
        limit = config.rpm if verdict == 1 else config.tpm
        raise GatewayError(
            429,
            f"Rate limit reached for key '{name}': {limit} {what} per minute. Try again in {retry_after} s.",
            type=what,
            code="rate_limit_exceeded",
            headers={"Retry-After": retry_after},
        )

    # ---- charges ----------------------------------------------------------------------------------------------
    def charge(self, name: str, tokens: int, cost: float) -> None:
        """Charge a finished request's tokens and cost to the key (in the background; never waits). While Redis is
        unreachable the spend is kept in memory and charged when it is back."""
        config = self.by_name.get(name)
        if config is None or self.guard is None or not (config.tpm or config.budget_usd is not None):
            return
        if not self.guard.up:
            self.uncharged.add(self._keys(name, config, time.time())[2], cost, _PERIOD_TTL[config.budget_period])
            return
        self._background(self._charge(name, config, tokens, cost))

    def _background(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _charge(self, name: str, config: KeyConfig, tokens: int, cost: float) -> None:
        tpm_key, spend_key = self._keys(name, config, time.time())[1:]
        ttl = _PERIOD_TTL[config.budget_period]

        async def write(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            if config.tpm and tokens:
                pipe.incrby(tpm_key, tokens)
                pipe.pexpire(tpm_key, 61_000)
            pipe.incrbyfloat(spend_key, cost)
            if ttl:
                pipe.expire(spend_key, ttl)
            return await pipe.execute()

        assert self.guard is not None
        try:  # a charge may wait longer than an admission for a connection: nobody waits for it
            results = await self.guard.call(write, wait_seconds=10 * self.guard.wait_seconds)
        except (RedisUnavailable, RedisBusy):  # kept; a lost reply (timeout) may charge it twice: budgets err high
            self.uncharged.add(spend_key, cost, ttl)
            self._settle_soon()
            return
        spent = results[2] if config.tpm and tokens else results[0]
        self.metrics.key_spend.labels(name).set(float(spent))

    def _settle_soon(self) -> None:
        """Charge the spend kept in memory now that Redis answers again (in the background)."""
        if len(self.uncharged):
            self._background(self._settle())

    async def _settle(self) -> None:
        entries = self.uncharged.take()
        if not entries:
            return

        async def write(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for spend_key, (cost, ttl) in entries.items():
                pipe.incrbyfloat(spend_key, cost)
                if ttl:
                    pipe.expire(spend_key, ttl)
            return await pipe.execute()

        assert self.guard is not None
        try:
            await self.guard.call(write, wait_seconds=10 * self.guard.wait_seconds)
        except (RedisUnavailable, RedisBusy):
            self.uncharged.give_back(entries)
            return
        log.warning(
            "charged %.6f USD of spend kept while Redis was unreachable (%d key periods)",
            sum(cost for cost, _ in entries.values()),
            len(entries),
        )
