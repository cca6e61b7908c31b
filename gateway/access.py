"""API keys, rate limits and spend budgets.

Keys are configured as SHA-256 hashes with a bounded name (the ``key`` metric label); the bearer token's hash is
compared with every configured hash in constant time. With no keys configured the gateway is open.

Limits live in Redis so that several gateway processes enforce them together (fixed one-minute windows). A process
reserves a key's requests per minute in chunks and admits from them locally
(:class:`~gateway.admission.Admission`: rpm exact, tpm and budgets checked against a view at most 0.1 s old); tokens
and spend are charged after the response from the exact final usage, streams included, in batches
(:class:`~gateway.charges.ChargeBatcher`).

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
from typing import Any

from gateway.admission import ADMITTED, BUDGET_USED_UP, RESERVE, RPM_EXCEEDED, Admission, KeyState
from gateway.charges import ChargeBatcher
from gateway.errors import GatewayError
from gateway.redis_guard import RedisBusy, RedisGuard, RedisUnavailable
from gateway.spend_ledger import SpendLedger
from llmops.config import KeyConfig
from llmops.config_server import RedisConfig

log = logging.getLogger("llmops.gateway.access")

ANONYMOUS = "anonymous"


def _unauthorized(message: str) -> GatewayError:
    return GatewayError(401, message, type="invalid_request_error", code="invalid_api_key")


class AccessControl:
    """Authentication of bearer keys and admission against their limits."""

    def __init__(self, keys: list[KeyConfig], redis: RedisConfig | None, metrics: Any) -> None:
        self.keys = [(k.name, bytes.fromhex(k.sha256), k) for k in keys]
        self.by_name = {k.name: k for k in keys}
        self.open = not keys
        self.metrics = metrics
        self.guard: RedisGuard | None = None
        self.uncharged = SpendLedger()
        # keys with a limit -> their state in this process
        self.states = {k.name: KeyState(k.name, k) for k in keys if k.rpm or k.tpm or k.budget_usd is not None}
        self.admission: Admission | None = None
        self.charges: ChargeBatcher | None = None
        if redis is not None and self.limited:
            self.guard = RedisGuard(
                redis.url,
                max_connections=redis.limits_max_connections,
                wait_seconds=redis.limits_wait_seconds,
                timeout_seconds=redis.limits_timeout_seconds,
                retry_seconds=redis.limits_retry_seconds,
                on_up=self._settle_soon,
            )
            self.charges = ChargeBatcher(self.guard, self.uncharged, self._spent, self._settle_soon)
            self.admission = Admission(self.guard, self.uncharged, self.charges.hold)
        self._pending: set[asyncio.Task[None]] = set()
        for key in keys:
            metrics.key_budget.labels(key.name).set(key.budget_usd or 0)
        metrics.track(metrics.uncharged_spend, lambda: self.uncharged.total)

    @property
    def limited(self) -> bool:
        return bool(self.states)

    async def start(self) -> None:
        """Connect to Redis and learn whether it answers before the first request (it may be away: limits then fail
        open until it is back)."""
        if self.guard is None:
            return

        async def load(client: Any) -> None:
            await client.script_load(RESERVE)

        await self.guard.start(load)
        assert self.admission is not None and self.charges is not None
        self.admission.start()
        self.charges.start()

    async def close(self) -> None:
        if self.charges is not None:
            await self.charges.close()
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
    async def admit(self, name: str, metrics: Any) -> None:
        """Count the request against the key's limits; 429 (with Retry-After) when one is exceeded, 503 when the
        check found no free Redis connection in time. While Redis is unreachable, requests pass unchecked."""
        state = self.states.get(name)
        if state is None or self.admission is None:
            return
        try:
            verdict = await self.admission.admit(state)
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
        if verdict.code == ADMITTED:
            return
        config = state.config
        if verdict.code == BUDGET_USED_UP:
            metrics.budget_exceeded.labels(name).inc()
            raise GatewayError(
                429,
                f"The spend budget of key '{name}' ({config.budget_usd:g} USD per {config.budget_period}) is used up.",
                type="insufficient_quota",
                code="insufficient_quota",
            )
        metrics.rate_limited.labels(name).inc()
        what = "requests" if verdict.code == RPM_EXCEEDED else "tokens"
        limit = config.rpm if verdict.code == RPM_EXCEEDED else config.tpm
        retry_after = str(verdict.retry_after)
        raise GatewayError(
            429,
            f"Rate limit reached for key '{name}': {limit} {what} per minute. Try again in {retry_after} s.",
            type=what,
            code="rate_limit_exceeded",
            headers={"Retry-After": retry_after},
        )

    # ---- charges ----------------------------------------------------------------------------------------------
    def charge(self, name: str, tokens: int, cost: float) -> None:
        """Charge a finished request's tokens and cost to the key (in batches, in the background; never waits).
        While Redis is unreachable the spend is kept in memory and charged when it is back."""
        state = self.states.get(name)
        if state is None or self.charges is None or not (state.config.tpm or state.config.budget_usd is not None):
            return
        self.charges.add(state, tokens, cost)

    def _spent(self, name: str, spent: float) -> None:
        self.metrics.key_spend.labels(name).set(spent)

    def _settle_soon(self) -> None:
        """Charge the spend kept in memory now that Redis answers again (in the background)."""
        if len(self.uncharged):
            task = asyncio.get_running_loop().create_task(self._settle())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

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
