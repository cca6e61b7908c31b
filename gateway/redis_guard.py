"""The Redis of the limit checks, guarded: a pool sized for the concurrency, bounded waits, and a circuit breaker
that tells "Redis is unreachable" from "the gateway is busy".

- **Up**: every call gets a connection of its own, out of ``max_connections``; a call that finds them all in use
  waits up to ``wait_seconds`` for one (a burst queues, it never fails open), then raises :class:`RedisBusy`.
- **Down**: a call failed on Redis's side (connection refused or reset, socket timeout, loading): calls raise
  :class:`RedisUnavailable` at once, without asking Redis.
- **Unknown**: at start, and every ``retry_seconds`` while down: exactly one call (the probe) asks Redis; the others
  go on as if it were down until the probe's answer says otherwise.

A pool error of redis-py's own never happens here: no more calls run at once than the pool holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

log = logging.getLogger("llmops.gateway.access")

T = TypeVar("T")
_START_TRIES = 3
State = Literal["unknown", "up", "down"]


def redis_address(url: str) -> str:
    """``host:port/db`` of a Redis URL, without its password (for messages)."""
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}{parts.path or '/0'}"


class RedisUnavailable(Exception):
    """Redis is unreachable (or was, a moment ago): the caller fails open."""


class RedisBusy(Exception):
    """Redis is up but every connection stayed in use for ``wait_seconds``: the gateway is overloaded."""


class RedisGuard:
    """One Redis client for the limit checks and charges of one gateway process."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 64,
        wait_seconds: float = 1.0,
        timeout_seconds: float = 0.5,
        retry_seconds: float = 2.0,
        on_up: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.max_connections = max_connections
        self.wait_seconds = wait_seconds
        self.timeout_seconds = timeout_seconds
        self.retry_seconds = retry_seconds
        self.on_up = on_up
        self.client: Any = None
        self.state: State = "unknown"
        self._slots = asyncio.Semaphore(max_connections)
        self._probing = False
        self._retry_at = 0.0

    async def start(self, probe: Callable[[Any], Awaitable[Any]]) -> None:
        """Connect and run ``probe`` once, so that the state is known before the first request."""
        import redis.asyncio as aioredis

        pool = aioredis.ConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            socket_timeout=self.timeout_seconds,
            socket_connect_timeout=self.timeout_seconds,
        )
        self.client = aioredis.Redis.from_pool(pool)
        for _ in range(_START_TRIES):  # a Redis slow to answer while everything starts is not yet down
            with contextlib.suppress(RedisUnavailable):  # away at start: requests pass unchecked until it answers
                await self.call(probe)
            if self.up:
                return
            self._retry_at = 0.0
            await asyncio.sleep(0.1)
        self._retry_at = time.monotonic() + self.retry_seconds

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    @property
    def up(self) -> bool:
        return self.state == "up"

    async def call(self, command: Callable[[Any], Awaitable[T]], wait_seconds: float | None = None) -> T:
        """``command(client)``, or :class:`RedisUnavailable` / :class:`RedisBusy` without waiting past the bounds
        (``wait_seconds`` for a connection: the guard's own by default)."""
        probe = self.state != "up"
        if probe:
            if self._probing or time.monotonic() < self._retry_at:
                raise RedisUnavailable
            self._probing = True  # the one call that asks Redis while its state is unknown
        try:
            try:
                async with asyncio.timeout(self.wait_seconds if wait_seconds is None else wait_seconds):
                    await self._slots.acquire()
            except TimeoutError:
                if self.state != "up":
                    raise RedisUnavailable from None
                raise RedisBusy from None
            if self.state != "up" and not probe:  # it went down while this call waited for a connection
                self._slots.release()
                raise RedisUnavailable
            try:
                result = await command(self.client)
            finally:
                self._slots.release()
        except (RedisUnavailable, RedisBusy):
            raise
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._went_down(error)
            raise RedisUnavailable from error
        finally:
            if probe:
                self._probing = False
        self._came_up()
        return result

    def _went_down(self, error: Exception) -> None:
        self._retry_at = time.monotonic() + self.retry_seconds
        if self.state != "down":
            log.warning(
                "rate limits and budgets are not enforced: Redis at %s is unreachable (%s: %s); one request tries "
                "again every %g s",
                redis_address(self.url),
                type(error).__name__,
                error,
                self.retry_seconds,
            )
        self.state = "down"

    def _came_up(self) -> None:
        if self.state == "up":
            return
        was_down = self.state == "down"
        self.state = "up"
        if was_down:
            log.warning("Redis is reachable again: rate limits and budgets are enforced again")
        if self.on_up is not None:
            self.on_up()
