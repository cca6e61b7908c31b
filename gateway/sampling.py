"""Traffic sampling: the non-blocking writer that puts samples in Redis.

Which requests are sampled is :func:`llmops.contract.sampled`, a keyed hash of the request id: the client may set
the id, but without the key (``sampling_secret``) it cannot tell which ids are sampled. Samples are written after
the response is complete and off the request path: ``offer`` puts the sample in a bounded in-memory queue (never
waits); a background task drains it into the Redis stream with ``XADD ... MAXLEN ~``, one pipeline at most every
``_LINGER_SECONDS`` (samples that arrive meanwhile go together: one round trip per sample cost more CPU than the
sample itself). A full queue or an unreachable Redis drops samples and counts them
(``llm_gateway_samples_total{outcome="dropped"}``); user requests never wait for Redis and never fail because of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson

from llmops.contract import SAMPLE_FIELD, SAMPLE_ID_FIELD, SAMPLES_STREAM
from llmops.sample import Sample

log = logging.getLogger("llmops.gateway.sampling")

_BATCH = 256
_RETRY_SECONDS = 1.0
_LINGER_SECONDS = 0.05


class SampleWriter:
    """Bounded queue + background drain into the samples stream."""

    def __init__(
        self,
        redis_url: str,
        *,
        queue_size: int,
        stream_maxlen: int,
        queue_max_bytes: int = 64 * 1024 * 1024,
        on_dropped: Callable[[str, int], None],
        stream: str = SAMPLES_STREAM,
    ) -> None:
        self.redis_url = redis_url
        self.stream = stream
        self.stream_maxlen = stream_maxlen
        self._queue: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue(maxsize=queue_size)
        self.queue_max_bytes = queue_max_bytes
        self._queued_bytes = 0
        self._unserialisable_logged = False
        self._on_dropped = on_dropped
        self._task: asyncio.Task[None] | None = None
        self._redis: Any = None
        self._outage = False
        self._writing: list[str] = []  # models of the batch being written now

    def offer(self, model: str, request_id: str, sample: Sample | dict[str, Any]) -> bool:
        """Queue a sample (or an already built sample document) without waiting; False (and counted as dropped) when
        the queue is full or the sample cannot be serialised (e.g. ``metadata`` nested deeper than orjson writes)."""
        try:
            data = sample.to_json() if isinstance(sample, Sample) else orjson.dumps(sample)
        except orjson.JSONEncodeError as error:
            self._on_dropped(model, 1)
            if not self._unserialisable_logged:  # once: a client could send such requests on purpose
                self._unserialisable_logged = True
                log.warning("sample of request %s dropped: it cannot be serialised (%s)", request_id, error)
            return False
        if self._queued_bytes + len(data) > self.queue_max_bytes:
            self._on_dropped(model, 1)
            return False
        try:
            self._queue.put_nowait((model, request_id, data))
        except asyncio.QueueFull:
            self._on_dropped(model, 1)
            return False
        self._queued_bytes += len(data)
        return True

    @property
    def queued_bytes(self) -> int:
        """Bytes of serialised samples waiting for Redis."""
        return self._queued_bytes

    def _took(self, data: bytes) -> None:
        self._queued_bytes -= len(data)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(
            self.redis_url, socket_timeout=2.0, socket_connect_timeout=1.0, health_check_interval=30
        )
        self._task = asyncio.create_task(self._drain(), name="llmops-sample-writer")

    async def close(self, flush_seconds: float = 2.0) -> None:
        """Give queued samples up to ``flush_seconds`` to reach Redis, then stop; what is left (and a batch cut while
        being written) is counted as dropped and said in the log."""
        if self._task is not None:
            if not self._outage:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queue.join(), flush_seconds)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            left = self._writing
            while not self._queue.empty():
                model, _, data = self._queue.get_nowait()
                self._took(data)
                left.append(model)
            for model in left:
                self._on_dropped(model, 1)
            if left:
                log.warning(
                    "shutdown: %d traffic samples could not be written to Redis within %g s and are dropped%s",
                    len(left),
                    flush_seconds,
                    " (Redis is unreachable)" if self._outage else "",
                )
            self._writing = []
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _drain(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            for _, _, data in batch:
                self._took(data)
            self._writing = [model for model, _, _ in batch]  # counted as dropped if shutdown cuts the write
            try:
                pipe = self._redis.pipeline(transaction=False)
                for _, request_id, data in batch:
                    pipe.xadd(
                        self.stream,
                        {SAMPLE_ID_FIELD: request_id, SAMPLE_FIELD: data},
                        maxlen=self.stream_maxlen,
                        approximate=True,
                    )
                await pipe.execute()
                self._writing = []
                self._done(len(batch))
                if self._outage:
                    self._outage = False
                    log.warning("Redis is reachable again: traffic samples are written again")
                if self._queue.empty():
                    await asyncio.sleep(_LINGER_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis down, timeouts, OOM...: drop, count, say it once per outage
                self._writing = []
                for model, _, _ in batch:
                    self._on_dropped(model, 1)
                self._done(len(batch))
                if not self._outage:
                    self._outage = True
                    log.warning(
                        "cannot write traffic samples to Redis (%s: %s); dropping samples until it is back",
                        type(error).__name__,
                        error,
                    )
                await self._drop_while_down()

    async def _drop_while_down(self) -> None:
        """During an outage, drop what piles up for a while instead of hammering Redis, then try again."""
        await asyncio.sleep(_RETRY_SECONDS)
        while not self._queue.empty():
            model, _, data = self._queue.get_nowait()
            self._took(data)
            self._on_dropped(model, 1)
            self._done(1)

    def _done(self, count: int) -> None:
        for _ in range(count):
            self._queue.task_done()
