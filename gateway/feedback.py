"""User feedback on answers: ``POST /v1/feedback {request_id, rating: positive|negative, comment?}``.

The gateway remembers which model and variant answered each request: in a bounded in-memory index, and (when Redis
is configured) in Redis for a day, written in batches off the request path, so that feedback sent to another
gateway process still finds its request. Feedback is counted in ``llm_gateway_feedback_total{model, variant,
rating}`` and stored in the Redis stream ``llmops:feedback`` plus a per-model tally the monitors read for their
variant ratings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

import orjson

from gateway.errors import GatewayError, bad_request
from llmops.contract import FEEDBACK_RATINGS, FEEDBACK_STREAM, FEEDBACK_TALLY_PREFIX, feedback_tally_field

log = logging.getLogger("llmops.gateway.feedback")

INDEX_PREFIX = "llmops:req:"
_INDEX_TTL_SECONDS = 86_400
_MEMORY_ENTRIES = 20_000  # ~4.5 MB; with Redis the index lasts a day there
_FLUSH_SECONDS = 0.2


class RequestIndex:
    """request id → (model, variant), for feedback."""

    def __init__(self, redis_url: str | None) -> None:
        self._memory: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._unwritten: list[tuple[str, str, str]] = []
        self.redis_url = redis_url
        self.redis: Any = None
        self._task: asyncio.Task[None] | None = None

    def remember(self, request_id: str, model: str, variant: str) -> None:
        memory = self._memory
        memory[request_id] = (model, variant)
        if len(memory) > _MEMORY_ENTRIES:
            memory.popitem(last=False)
        if self.redis is not None and len(self._unwritten) < _MEMORY_ENTRIES:
            self._unwritten.append((request_id, model, variant))

    async def lookup(self, request_id: str) -> tuple[str, str] | None:
        found = self._memory.get(request_id)
        if found is not None or self.redis is None:
            return found
        try:
            raw = await self.redis.get(INDEX_PREFIX + request_id)
        except Exception:
            return None
        if raw is None:
            return None
        model, _, variant = raw.decode().partition("\t")
        return model, variant

    async def start(self) -> None:
        if self.redis_url is None:
            return
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(self.redis_url, socket_timeout=1.0, socket_connect_timeout=0.5)
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
        pipe = self.redis.pipeline(transaction=False)
        for request_id, model, variant in batch:
            pipe.set(INDEX_PREFIX + request_id, f"{model}\t{variant}", ex=_INDEX_TTL_SECONDS)
        await pipe.execute()


def parse_feedback(body: bytes) -> tuple[str, str, str | None]:
    """``(request_id, rating, comment)`` from a feedback body, or a 400 that says what is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request("The feedback body must be JSON: {request_id, rating, comment?}.") from None
    if not isinstance(data, dict):
        raise bad_request("The feedback body must be a JSON object.")
    request_id = data.get("request_id")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= 128:
        raise bad_request("'request_id' is required: the x-request-id header of the answer.", param="request_id")
    rating = data.get("rating")
    if rating not in FEEDBACK_RATINGS:
        raise bad_request("'rating' must be 'positive' or 'negative'.", param="rating")
    comment = data.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise bad_request("'comment' must be a string.", param="comment")
    return request_id, rating, comment[:2000] if comment else None


async def record_feedback(
    index: RequestIndex, metrics: Any, request_id: str, rating: str, comment: str | None, key: str
) -> dict[str, Any]:
    """Count and store one piece of feedback; 404 when the request is unknown (or older than a day)."""
    found = await index.lookup(request_id)
    if found is None:
        raise GatewayError(
            404,
            f"No request {request_id!r} is known to this gateway (feedback is accepted for a day after the answer).",
            param="request_id",
            code="request_not_found",
        )
    model, variant = found
    metrics.feedback.labels(model, variant, rating).inc()
    stored = False
    if index.redis is not None:
        try:
            pipe = index.redis.pipeline(transaction=False)
            entry = {
                "request_id": request_id,
                "model": model,
                "variant": variant,
                "rating": rating,
                "key": key,
                "ts": f"{time.time():.3f}",
            }
            if comment:
                entry["comment"] = comment
            pipe.xadd(FEEDBACK_STREAM, entry, maxlen=100_000, approximate=True)
            pipe.hincrby(FEEDBACK_TALLY_PREFIX + model, feedback_tally_field(variant, rating), 1)
            await pipe.execute()
            stored = True
        except Exception as error:
            log.warning("feedback for %s counted but not stored: Redis unavailable (%s)", request_id, error)
    return {
        "status": "recorded",
        "request_id": request_id,
        "model": model,
        "variant": variant or None,
        "stored": stored,
    }
