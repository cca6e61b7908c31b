"""Tokens per second a GPU-priced deployment served over a sliding window: the divisor of its GPU-time cost.

Each gateway process counts the tokens it served itself (:class:`ServedTokens`). With Redis configured,
:class:`ThroughputSync` adds every process's counts into shared per-deployment buckets once a second and reads the
fleet-wide total back, so that N gateway processes in front of one vLLM price its tokens by what the deployment
served, not by each process's 1/N share. The request path never waits for Redis: it reads the last synced total plus
what this process served since. When Redis is away (or not configured) the estimate falls back to this process's own
window; a sync that fails loses nothing, its buckets are sent again with the next one.

Redis keys: ``llmops:served:{model}|{deployment}:{bucket}`` with ``bucket = floor(unix time / bucket_seconds)``, a
hash of each process's own total for that bucket (absolute values, so a sync that timed out after Redis applied it
and is sent again still counts once), expiring a window after the bucket ends; and
``llmops:served:{model}|{deployment}:since``, when the first process (since Redis last lost its data) began counting,
so that a young fleet divides by its age, not by a whole window. Buckets and ``since`` are Unix time: the gateway
hosts' clocks are assumed in sync (NTP); a host seconds ahead shifts a young fleet's estimate until the fleet is a
window old.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("llmops.gateway.throughput")

WINDOW_SECONDS = 60.0
BUCKET_SECONDS = 5.0
SYNC_SECONDS = 1.0


class ServedTokens:
    """Sliding-window count of the tokens (input + output) one deployment served.

    ``key`` names the deployment in Redis (``model|deployment``). ``clock`` is monotonic time for the local window;
    ``wall_clock`` is Unix time, shared between hosts, for the Redis buckets.
    """

    def __init__(
        self,
        key: str,
        window_seconds: float = WINDOW_SECONDS,
        bucket_seconds: float = BUCKET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if bucket_seconds <= 0 or window_seconds < bucket_seconds:
            raise ValueError("need 0 < bucket_seconds <= window_seconds")
        self.key = key
        self.window_seconds = window_seconds
        self.bucket_seconds = bucket_seconds
        self._clock = clock
        self._wall = wall_clock
        self._started = clock()
        self.started_wall = wall_clock()
        self._events: deque[tuple[float, int]] = deque()
        self._local_tokens = 0
        # This process's own total per bucket, and the buckets whose total Redis does not have yet.
        self._mine: dict[int, int] = {}
        self._dirty: set[int] = set()
        # The fleet-wide view at the last successful sync, and this process's tokens not in it.
        self._shared_tokens = 0
        self._shared_span = 0.0
        self._synced_at: float | None = None
        self._unsynced_tokens = 0
        self._in_flight_tokens = 0
        self.stale_after = 3 * SYNC_SECONDS
        self.synced = False  # a ThroughputSync sends this counter's buckets to Redis (else none are kept)

    # -- request path -----------------------------------------------------------------------------------------
    def add(self, tokens: int) -> None:
        """Count ``tokens`` served now."""
        if tokens <= 0:
            return
        now = self._clock()
        self._events.append((now, tokens))
        self._local_tokens += tokens
        self._expire(now)  # amortised O(1); keeps the local window bounded while the shared estimate is in use
        if not self.synced:  # no Redis: nobody would send (or prune) the buckets
            return
        bucket = int(self._wall() // self.bucket_seconds)
        self._mine[bucket] = self._mine.get(bucket, 0) + tokens
        self._dirty.add(bucket)
        self._unsynced_tokens += tokens

    def tokens_per_second(self) -> float:
        """Tokens per second over the window: fleet-wide while a recent sync is at hand, else this process's own."""
        if not self.shared:
            return self.local_tokens_per_second()
        assert self._synced_at is not None
        span = min(self.window_seconds, self._shared_span + (self._clock() - self._synced_at))
        return (self._shared_tokens + self._unsynced_tokens) / max(span, 1.0)

    def local_tokens_per_second(self) -> float:
        """This process's own tokens per second over the window (or since start, when younger than the window)."""
        now = self._clock()
        self._expire(now)
        span = min(self.window_seconds, max(now - self._started, 1.0))
        return self._local_tokens / span

    def _expire(self, now: float) -> None:
        horizon = now - self.window_seconds
        events = self._events
        while events and events[0][0] < horizon:
            self._local_tokens -= events.popleft()[1]

    @property
    def shared(self) -> bool:
        """Whether the estimate is the fleet-wide one (a sync succeeded recently)."""
        return self._synced_at is not None and self._clock() - self._synced_at <= self.stale_after

    # -- sync -------------------------------------------------------------------------------------------------
    def wall(self) -> float:
        """Unix time, as the Redis buckets count it."""
        return self._wall()

    def bucket_key(self, bucket: int) -> str:
        return f"llmops:served:{self.key}:{bucket}"

    @property
    def since_key(self) -> str:
        return f"llmops:served:{self.key}:since"

    def window_buckets(self, now_wall: float) -> list[int]:
        """The buckets the window reads: the current one and the full ones before it."""
        current = int(now_wall // self.bucket_seconds)
        count = max(1, math.floor(self.window_seconds / self.bucket_seconds))
        return list(range(current - count + 1, current + 1))

    def take_dirty(self, now_wall: float) -> dict[int, int]:
        """This process's totals of the buckets Redis lacks (absolute, so sending one twice counts it once);
        buckets older than the window are forgotten: nobody reads them any more."""
        oldest = self.window_buckets(now_wall)[0]
        self._mine = {bucket: tokens for bucket, tokens in self._mine.items() if bucket >= oldest}
        dirty = {bucket: self._mine[bucket] for bucket in self._dirty if bucket in self._mine}
        self._dirty = set()
        self._in_flight_tokens = self._unsynced_tokens
        return dirty

    def sync_failed(self, dirty: dict[int, int]) -> None:
        """A sync failed: send those buckets again next time."""
        self._dirty.update(dirty)

    def set_shared(self, tokens: int, since_wall: float, now_wall: float) -> None:
        """Record the fleet-wide total over the window, read at ``now_wall``; ``since_wall`` is when counting began."""
        oldest = self.window_buckets(now_wall)[0] * self.bucket_seconds
        self._unsynced_tokens -= self._in_flight_tokens  # those are in ``tokens`` now; later ones are not
        self._in_flight_tokens = 0
        self._shared_tokens = tokens
        self._shared_span = max(now_wall - max(oldest, since_wall), 0.0)
        self._synced_at = self._clock()


class ThroughputSync:
    """Adds every :class:`ServedTokens`' counts into Redis and reads the fleet-wide totals back, every
    ``interval`` seconds, in one pipelined round trip; in the background, never on a request."""

    def __init__(self, redis_url: str, served: Sequence[ServedTokens], interval: float = SYNC_SECONDS) -> None:
        self.redis_url = redis_url
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.served = list(served)
        self.interval = interval
        self._redis: Any = None
        self._task: asyncio.Task[None] | None = None
        self._outage = False

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        for served in self.served:
            served.stale_after = 3 * self.interval
            served.synced = True
        # One sync before serving, so that the first requests are priced by the fleet's throughput, not by this
        # process's (a new process would otherwise charge its first tokens for the whole fleet's idle time).
        await self.sync_once()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            await self.sync_once()  # what was served since the last sync still counts for the other processes
        if self._redis is not None:
            await self._redis.aclose()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.sync_once()

    async def sync_once(self) -> bool:
        """One sync of every deployment; ``False`` (and local estimates) when Redis did not answer."""
        if self._redis is None or not self.served:
            return False
        pending = []
        for served in self.served:
            now_wall = served.wall()
            pending.append((served, now_wall, served.take_dirty(now_wall)))
        pipe = self._redis.pipeline(transaction=False)
        for served, now_wall, dirty in pending:
            ttl = int(served.window_seconds + 2 * served.bucket_seconds)
            for bucket, tokens in dirty.items():
                pipe.hset(served.bucket_key(bucket), self.process_id, tokens)
                pipe.expire(served.bucket_key(bucket), ttl)
            pipe.set(served.since_key, repr(served.started_wall), nx=True)
            pipe.get(served.since_key)
            for bucket in served.window_buckets(now_wall):
                pipe.hvals(served.bucket_key(bucket))
        try:
            results = await pipe.execute()
        except Exception as error:
            for served, _, dirty in pending:
                served.sync_failed(dirty)
            if not self._outage:
                self._outage = True
                log.warning(
                    "GPU-time cost uses this process's own throughput: Redis is unreachable (%s)",
                    type(error).__name__,
                )
            return False
        if self._outage:
            self._outage = False
            log.warning("Redis is reachable again: GPU-time cost uses the throughput of every gateway process")
        position = 0
        for served, now_wall, dirty in pending:
            position += 2 * len(dirty) + 1  # HSET + EXPIRE per bucket, then SET NX
            since = _to_float(results[position], default=now_wall)
            buckets = len(served.window_buckets(now_wall))
            per_bucket = results[position + 1 : position + 1 + buckets]
            position += 1 + buckets
            served.set_shared(sum(int(v) for values in per_bucket for v in values), since, now_wall)
        return True


def _to_float(raw: Any, default: float) -> float:
    try:
        return float(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError, AttributeError):
        return default
