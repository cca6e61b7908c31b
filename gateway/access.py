"""API keys, rate limits and spend budgets.

Keys are configured as SHA-256 hashes with a bounded name (the ``key`` metric label); the bearer token's hash is
compared with every configured hash in constant time. With no keys configured the gateway is open.

Limits live in Redis so that several gateway processes enforce them together: a Lua script checks the key's spend
budget and tokens-per-minute and counts the request against its requests-per-minute in one atomic step (fixed
one-minute windows). Tokens and spend are charged after the response from the exact final usage, streams included.
If Redis is unreachable the gateway keeps serving (fail open), counts it, and says so once per outage; during an
outage only one request every two seconds tries Redis, so a hung Redis does not make every request wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from typing import Any

from gateway.errors import GatewayError
from llmops.config import KeyConfig

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

    def __init__(self, keys: list[KeyConfig], redis_url: str | None, metrics: Any) -> None:
        self.keys = [(k.name, bytes.fromhex(k.sha256), k) for k in keys]
        self.by_name = {k.name: k for k in keys}
        self.open = not keys
        self.redis_url = redis_url
        self.metrics = metrics
        self._redis: Any = None
        self._admit: Any = None
        self._outage = False
        self._probing = False  # one request is trying Redis again during an outage
        self._retry_at = 0.0
        self.retry_seconds = 2.0
        self._pending: set[asyncio.Task[None]] = set()
        for key in keys:
            metrics.key_budget.labels(key.name).set(key.budget_usd or 0)

    @property
    def limited(self) -> bool:
        return any(k.rpm or k.tpm or k.budget_usd is not None for _, _, k in self.keys)

    async def start(self) -> None:
        if self.redis_url is None or not self.limited:
            return
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._admit = self._redis.register_script(_ADMIT)
        with contextlib.suppress(Exception):  # Redis may be away at start: limits then fail open until it is back
            await self._redis.script_load(_ADMIT)

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()

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

    # ---- limits -----------------------------------------------------------------------------------------------
    def _keys(self, name: str, config: KeyConfig, now: float) -> list[str]:
        minute = int(now // 60)
        return [
            f"llmops:rl:{name}:rpm:{minute}",
            f"llmops:rl:{name}:tpm:{minute}",
            f"llmops:spend:{name}:{period_id(config.budget_period, now)}",
        ]

    async def admit(self, name: str, metrics: Any) -> None:
        """Count the request against the key's limits; 429 (with Retry-After) when one is exceeded.

        While Redis is failing, requests are let through at once without asking it (a circuit breaker): one request
        every ``retry_seconds`` tries Redis again, so a hung Redis costs one request its socket timeout, not all."""
        config = self.by_name.get(name)
        if config is None or self._admit is None or not (config.rpm or config.tpm or config.budget_usd is not None):
            return
        now = time.time()
        if self._outage and (self._probing or time.monotonic() < self._retry_at):
            metrics.limits_unavailable.inc()
            return
        args = [config.rpm or 0, config.tpm or 0, -1 if config.budget_usd is None else config.budget_usd, 61_000]
        self._probing = self._outage
        try:
            verdict, retry_ms = await self._admit(keys=self._keys(name, config, now), args=args)
        except Exception as error:  # Redis away: serve anyway, say it once, stop asking for a while
            metrics.limits_unavailable.inc()
            self._retry_at = time.monotonic() + self.retry_seconds
            if not self._outage:
                self._outage = True
                log.warning(
                    "rate limits and budgets are not enforced: Redis is unreachable (%s); trying again every %g s",
                    type(error).__name__,
                    self.retry_seconds,
                )
            return
        finally:
            self._probing = False
        if self._outage:
            self._outage = False
            log.warning("Redis is reachable again: rate limits and budgets are enforced again")
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

    def charge(self, name: str, tokens: int, cost: float) -> None:
        """Charge a finished request's tokens and cost to the key (in the background; never waits)."""
        config = self.by_name.get(name)
        if config is None or self._redis is None or not (config.tpm or config.budget_usd is not None):
            return
        if self._outage:  # admission found Redis failing: this charge cannot land either (admission says when back)
            return
        task = asyncio.get_running_loop().create_task(self._charge(name, config, tokens, cost))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _charge(self, name: str, config: KeyConfig, tokens: int, cost: float) -> None:
        tpm_key, spend_key = self._keys(name, config, time.time())[1:]
        try:
            pipe = self._redis.pipeline(transaction=False)
            if config.tpm and tokens:
                pipe.incrby(tpm_key, tokens)
                pipe.pexpire(tpm_key, 61_000)
            pipe.incrbyfloat(spend_key, cost)
            ttl = _PERIOD_TTL[config.budget_period]
            if ttl:
                pipe.expire(spend_key, ttl)
            results = await pipe.execute()
        except Exception:
            self.metrics.limits_unavailable.inc()
            return
        spent = results[2] if config.tpm and tokens else results[0]
        self.metrics.key_spend.labels(name).set(float(spent))
