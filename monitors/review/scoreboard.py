"""Judge-human agreement read from the shared tallies the votes feed (:mod:`monitors.review.store`), exported per
judge and model (``llm_judge_human_*``), and kept for the review page's leaderboard. Every worker exports the same
figures: after each vote it records, and every ``REFRESH_SECONDS``."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from llmops.config_review import ReviewConfig
from monitors.metrics import MonitorMetrics
from monitors.review.agreement import PairAgreement, pair_agreement, position_bias, spearman
from monitors.review.store import AGREEMENT, AGREEMENT_MODELS, AGREEMENT_SINGLE, QUEUE

log = logging.getLogger("llmops.monitors.review")
REFRESH_SECONDS = 10.0


@dataclass(slots=True)
class JudgeCheck:
    """One judge against the reviewers on one model's items."""

    pair: PairAgreement | None = None
    pair_items: int = 0
    position_bias: float | None = None
    single_items: int = 0
    single_comparisons: int = 0
    spearman: float | None = None


@dataclass(slots=True)
class ModelCheck:
    judges: dict[str, JudgeCheck] = field(default_factory=dict)
    reviewers: PairAgreement | None = None  # reviewer vs reviewer on the same items


def read_model(tally: dict[bytes, bytes], singles: list[bytes]) -> ModelCheck:
    """A model's agreement figures from its ``llmops:agreement:<model>`` hash and graded pairs list."""
    check = ModelCheck()
    tables: dict[str, dict[tuple[str, str], float]] = {}
    humans: dict[tuple[str, str], float] = {}
    bias: dict[str, dict[str, float]] = {}
    for raw, raw_count in tally.items():
        parts, count = raw.decode().split("|"), float(raw_count)
        if parts[0] == "pair" and len(parts) == 4:
            tables.setdefault(parts[1], {})[(parts[2], parts[3])] = count
        elif parts[0] == "humans" and len(parts) == 3:
            humans[(parts[1], parts[2])] = count  # unordered: each pair of reviewers once
        elif parts[0] == "bias" and len(parts) == 3:
            bias.setdefault(parts[1], {})[parts[2]] = count
        elif parts[0] in ("pair_items", "single_items") and len(parts) == 2:
            setattr(check.judges.setdefault(parts[1], JudgeCheck()), parts[0], int(count))
    for name, table in tables.items():
        check.judges.setdefault(name, JudgeCheck()).pair = pair_agreement(table)
    for name, counts in bias.items():
        check.judges.setdefault(name, JudgeCheck()).position_bias = position_bias(
            counts.get("consistent", 0.0), counts.get("inconsistent", 0.0)
        )
    if humans:
        check.reviewers = pair_agreement(humans)
    graded: dict[str, list[tuple[float, float]]] = {}
    for raw in singles:
        name, rating, grade = raw.decode().split("|")
        graded.setdefault(name, []).append((float(rating), float(grade)))
    for name, pairs in graded.items():
        entry = check.judges.setdefault(name, JudgeCheck())
        entry.single_comparisons, entry.spearman = len(pairs), spearman(pairs)
    return check


class Scoreboard:
    """Exports the agreement of every model's judges with the reviewers, and the queues' sizes."""

    def __init__(self, redis: aioredis.Redis, metrics: MonitorMetrics, config: ReviewConfig) -> None:
        self.redis = redis
        self.metrics = metrics
        self.config = config
        self.latest: dict[str, ModelCheck] = {}
        metrics.agreement_floor.set(config.agreement_floor)
        metrics.agreement_min_items.set(config.agreement_min_items)

    async def refresh(self, model: str) -> ModelCheck:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(AGREEMENT + model)
        pipe.lrange(AGREEMENT_SINGLE + model, 0, -1)
        tally, singles = await pipe.execute()
        check = read_model(tally, singles)
        m = self.metrics
        for judge, entry in check.judges.items():
            if entry.pair is not None:
                for ties, value in (("included", entry.pair.with_ties), ("excluded", entry.pair.without_ties)):
                    if value is not None:
                        m.agreement.labels(model, judge, ties).set(value)
                if entry.pair.kappa is not None:
                    m.kappa.labels(model, judge).set(entry.pair.kappa)
                m.agreement_comparisons.labels(model, judge).set(entry.pair.comparisons)
            if entry.position_bias is not None:
                m.position_bias.labels(model, judge).set(entry.position_bias)
            if entry.spearman is not None:
                m.spearman.labels(model, judge).set(entry.spearman)
            if entry.single_comparisons:
                m.agreement_comparisons.labels(model, judge).set(entry.single_comparisons)
            m.agreement_items.labels(model, judge).set(entry.pair_items + entry.single_items)
        if check.reviewers is not None:
            for ties, value in (("included", check.reviewers.with_ties), ("excluded", check.reviewers.without_ties)):
                if value is not None:
                    m.reviewer_agreement.labels(model, ties).set(value)
        self.latest[model] = check
        return check

    async def refresh_all(self) -> None:
        models = {m.decode() if isinstance(m, bytes) else str(m) for m in await self.redis.smembers(AGREEMENT_MODELS)}
        for model in sorted(models):
            await self.refresh(model)
        pipe = self.redis.pipeline(transaction=False)
        for queue in self.config.queues:
            pipe.zcard(QUEUE + queue.name)
        for queue, size in zip(self.config.queues, await pipe.execute(), strict=True):
            self.metrics.queue_items.labels(queue.name).set(int(size))

    async def watch(self) -> None:
        """Refresh every model's figures now and then, until cancelled."""
        while True:
            try:
                await self.refresh_all()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.debug("judge-human agreement not refreshed: %s", error)
            await asyncio.sleep(REFRESH_SECONDS)
