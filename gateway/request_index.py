"""Which model, variant and key answered each request, for feedback (``POST /v1/feedback``).

Kept in a bounded in-memory index, and (when Redis is configured) in Redis for ``redis.request_index_ttl_seconds``
(a day by default), written in batches off the request path (one script call per batch: a pipeline of one ``SET``
per request cost the gateway ~20 µs of CPU per request, the script ~1 µs), so that feedback sent to another gateway
process still finds its request. Redis memory: one key per answered request, about 100 bytes, for the TTL (1 million
requests a day keep about 100 MB).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import Any, NamedTuple

INDEX_PREFIX = "llmops:req:"
_MEMORY_ENTRIES = 20_000  # ~5 MB; with Redis the index lasts its TTL there
_FLUSH_SECONDS = 0.2
_PER_CALL = 1000  # entries per script call (Redis runs one call at a time: keep each short)

# ARGV: TTL, then lines "request id<TAB>model<TAB>variant<TAB>key" joined by newlines (ids, names and labels never hold
# a tab or a newline: request_id.py and the config's label names).
_WRITE = """
for line in string.gmatch(ARGV[2], '[^\\n]+') do
  local id, value = string.match(line, '^([^\\t]+)\\t(.*)$')
  redis.call('SET', KEYS[1] .. id, value, 'EX', ARGV[1])
end
"""


class Answered(NamedTuple):
    """What the index knows of an answered request."""

    model: str
    variant: str
    key: str | None  # the key that made the request (None: written by a gateway that did not record it)


_new_answered = tuple.__new__


class RequestIndex:
    """request id → (model, variant, key), for feedback."""

    def __init__(self, redis_url: str | None, ttl_seconds: int = 86_400) -> None:
        self._memory: OrderedDict[str, Answered] = OrderedDict()
        self._unwritten: list[tuple[str, Answered]] = []
        self.redis_url = redis_url
        self.ttl_seconds = ttl_seconds
        self.redis: Any = None
        self._write: Any = None
        self._task: asyncio.Task[None] | None = None

    def remember(self, request_id: str, model: str, variant: str, key: str) -> None:
        memory = self._memory
        answered = _new_answered(Answered, (model, variant, key))  # a NamedTuple's __new__ is a Python call
        memory[request_id] = answered
        if len(memory) > _MEMORY_ENTRIES:
            memory.popitem(last=False)
        if self.redis is not None and len(self._unwritten) < _MEMORY_ENTRIES:
            self._unwritten.append((request_id, answered))

    async def lookup(self, request_id: str) -> Answered | None:
        found = self._memory.get(request_id)
        if found is not None or self.redis is None:
            return found
        try:
            raw = await self.redis.get(INDEX_PREFIX + request_id)
        except Exception:
            return None
        if raw is None:
            return None
        model, variant, *key = raw.decode().split("\t")
        return Answered(model, variant, key[0] if key else None)

    async def start(self) -> None:
        if self.redis_url is None:
            return
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(self.redis_url, socket_timeout=1.0, socket_connect_timeout=0.5)
        self._write = self.redis.register_script(_WRITE)
        self._task = asyncio.create_task(self._flush_forever(), name="llmops-request-index")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._flush()
        if self.redis is not None:
            await self.redis.aclose()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_SECONDS)
            with contextlib.suppress(Exception):  # Redis away: this index is best effort (memory still has it)
                await self._flush()

    async def _flush(self) -> None:
        batch, self._unwritten = self._unwritten, []
        if not batch:
            return
        for start in range(0, len(batch), _PER_CALL):
            part = batch[start : start + _PER_CALL]
            lines = "\n".join(f"{rid}\t{model}\t{variant}\t{key}" for rid, (model, variant, key) in part)
            await self._write(keys=[INDEX_PREFIX], args=[self.ttl_seconds, lines])
