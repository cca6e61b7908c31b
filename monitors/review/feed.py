"""Which sampled answers reach the review queues (``monitors.review.queues``), called by the worker after a sample's
results are committed, so an item carries the judge's verdict when one was made.

- ``single`` queues: one answer; ``when: random`` takes a ``rate`` share; ``low_score`` the answers whose ``score``
  (``judge:criterion``, 0..1) is at most ``max_score``; ``negative_feedback`` the answers that get a thumbs down
  within ``feedback_hold_hours`` (the sample waits in Redis meanwhile; :meth:`ReviewFeed.watch_feedback` reads the
  gateway's feedback stream).
- ``pair`` queues: two variants' answers to the very same conversation (the pairwise judge's pairing), and shadow
  comparisons (:mod:`monitors.shadow`).

Every choice is a hash of the request id (:func:`llmops.contract.sampled`) and item ids are stable, so a sample
processed twice, or by two workers, queues nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from llmops.config import MonitorsConfig
from llmops.config_review import ReviewQueue
from llmops.contract import FEEDBACK_STREAM, sampled
from llmops.sample import Sample
from monitors.judging import prompt_hash
from monitors.review.items import Answer, ReviewItem, answer, pair_item, single_item
from monitors.review.store import FEEDBACK_CURSOR, ReviewStore
from monitors.store import SampleStore

log = logging.getLogger("llmops.monitors.review")


class ReviewFeed:
    """Puts sampled answers into the configured review queues."""

    def __init__(
        self, settings: MonitorsConfig, review: ReviewStore, samples: SampleStore, metrics: Any, key: bytes
    ) -> None:
        self.config = settings.review
        self.key = key  # the sampling hash's key (llmops.contract.sampling_key): clients cannot pick their items
        self.review = review
        self.samples = samples
        self.metrics = metrics

    def _matching(self, sample: Sample, mode: str) -> list[ReviewQueue]:
        return [
            q
            for q in self.config.queues
            if q.mode == mode
            and (not q.models or sample.model in q.models)
            and (not q.variants or (sample.variant or "") in q.variants)
        ]

    async def observe(self, sample: Sample, fields: dict[str, Any]) -> int:
        """Queue ``sample`` where it belongs; returns how many items were queued. Never raises (logged)."""
        if sample.status != 200 or sample.endpoint == "embeddings" or not sample.answer:
            return 0
        try:
            return await self._singles(sample, fields) + await self._pairs(sample, fields)
        except Exception as error:
            log.warning("sample %s not queued for review: %s", sample.id, error)
            return 0

    async def _singles(self, sample: Sample, fields: dict[str, Any]) -> int:
        queued = 0
        for queue in self._matching(sample, "single"):
            if not sampled(f"{sample.id}:review:{queue.name}", queue.rate, self.key):
                continue
            if queue.when == "negative_feedback":
                ttl = int(self.config.feedback_hold_hours * 3600)
                await self.review.hold(sample.id, {"sample": sample.to_dict(), "fields": _judged(fields)}, ttl)
                continue
            if queue.when == "low_score":
                score = fields.get(queue.score)
                if not isinstance(score, dict) or not isinstance(score.get("score"), int | float):
                    continue
                if score["score"] > queue.max_score:
                    continue
            queued += await self.add(single_item(sample, queue.name, queue.when, fields))
        return queued

    async def _pairs(self, sample: Sample, fields: dict[str, Any]) -> int:
        queues = self._matching(sample, "pair")
        if not queues or not sample.variant:
            return 0
        others = await self.samples.pair_candidates(sample.model, prompt_hash(sample), sample.variant, sample.to_json())
        queued = 0
        for variant, raw in sorted(others.items()):
            other = Sample.from_json(raw)
            a, b = (sample, other) if sample.variant < variant else (other, sample)
            stored = fields.get(f"pairwise:{a.variant}:{b.variant}")
            verdict = stored if isinstance(stored, dict) and stored.get("against") == other.id else None
            for queue in queues:
                if sampled(f"{a.id}:{b.id}:review:{queue.name}", queue.rate, self.key):
                    queued += await self.add(pair_item(answer(a), answer(b), sample, queue.name, "variants", verdict))
        return queued

    async def observe_shadow(self, sample: Sample, a: Answer, b: Answer, verdict: dict[str, Any] | None) -> int:
        """Queue a shadow comparison (answers ``a`` and ``b`` to ``sample``'s conversation) in the pair queues that
        take ``sample``."""
        queued = 0
        for queue in self._matching(sample, "pair"):
            if sampled(f"{a.request_id}:{b.request_id}:review:{queue.name}", queue.rate, self.key):
                queued += await self.add(pair_item(a, b, sample, queue.name, "shadow", verdict))
        return queued

    async def add(self, item: ReviewItem) -> int:
        if not await self.review.enqueue(item, self.config.max_items_per_queue):
            return 0
        self.metrics.queued.labels(item.queue, item.source).inc()
        return 1

    # ---- negative feedback ------------------------------------------------------------------------------------
    async def feedback_once(self, count: int = 500) -> int:
        """Read the gateway's feedback stream from the shared cursor; queue the held samples that got a thumbs down.
        Workers may read the same entries: items are idempotent. Returns how many were queued."""
        redis: Any = self.review.redis  # RESP2 replies: bytes
        cursor = (await redis.get(FEEDBACK_CURSOR) or b"$").decode()
        if cursor == "$":  # first run: start from now (older feedback has no held sample anyway)
            last = await redis.xrevrange(FEEDBACK_STREAM, count=1)
            await redis.set(FEEDBACK_CURSOR, last[0][0] if last else b"0-0")
            return 0
        entries = await redis.xrange(FEEDBACK_STREAM, min=f"({cursor}", count=count)
        queued = 0
        for entry_id, data in entries or []:
            if data and data.get(b"rating") == b"negative":
                queued += await self._on_negative(data.get(b"request_id", b"").decode())
            cursor = entry_id.decode()
        if entries:
            await redis.set(FEEDBACK_CURSOR, cursor)
        return queued

    async def _on_negative(self, request_id: str) -> int:
        held = await self.review.held(request_id) if request_id else None
        if held is None:
            return 0
        sample = Sample.from_dict(held["sample"])
        queued = 0
        for queue in self._matching(sample, "single"):
            if queue.when == "negative_feedback" and sampled(f"{sample.id}:review:{queue.name}", queue.rate, self.key):
                queued += await self.add(single_item(sample, queue.name, "negative_feedback", held["fields"]))
        return queued

    async def watch_feedback(self, every: float = 2.0) -> None:
        """Follow the feedback stream until cancelled (only when a negative_feedback queue is configured)."""
        if not any(q.when == "negative_feedback" for q in self.config.queues):
            return
        while True:
            try:
                await self.feedback_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.debug("feedback not read: %s", error)
            await asyncio.sleep(every)


def _judged(fields: dict[str, Any]) -> dict[str, Any]:
    """What a held sample keeps of its results: the single-answer judge's (its rating goes with the item)."""
    return {k: v for k, v in fields.items() if k == "llm_single:overall"}
