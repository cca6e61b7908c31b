"""Judge-human agreement read from what the votes feed in Redis (:mod:`monitors.review.store`), exported per judge and
model (``llm_judge_human_*``), and kept for the review page's leaderboard. Every worker exports the same figures:
after each vote it records, and every ``REFRESH_SECONDS``.

The exported figures (and so the alert) cover a **window**: each judge's latest ``agreement_window_items`` items of
the model that it judged and a reviewer scored (latest by when the item was made, i.e. when the judge ran), with
every vote on them; reviewer vs reviewer over the model's latest ``agreement_window_items`` pair items that two
reviewers voted on. So after a change of judge model or prompt, the figures are the new judge's alone once that many
of its items were reviewed. The all-time tallies are read too, for the review page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from llmops.config_review import ReviewConfig
from monitors.metrics import MonitorMetrics
from monitors.review.agreement import PairAgreement, as_outcome, pair_agreement, position_bias, spearman
from monitors.review.store import (
    AGREEMENT,
    AGREEMENT_MODELS,
    AGREEMENT_SINGLE,
    ITEM_VOTES,
    QUEUE,
    RECENT,
    RECENT_HUMANS,
)

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
    all_time: ModelCheck | None = None  # beside the window's figures: those since the tallies began


@dataclass(frozen=True, slots=True)
class WindowItem:
    """An item of a judge's window: what the judge said, and (read apart) the reviewers' votes."""

    id: str
    kind: str  # pair or single
    judge_outcome: str  # a, b or tie; a single answer's 1-10 rating
    consistent: bool  # a pair's: the judge's two orders agreed

    @classmethod
    def parse(cls, member: bytes | str) -> WindowItem:
        text = member.decode() if isinstance(member, bytes) else member
        item, kind, outcome, consistent = [*text.split("|"), "", "", ""][:4]
        return cls(item, kind, outcome, consistent == "1")


def read_window(judges: dict[str, list[WindowItem]], paired: list[str], votes: dict[str, dict[str, str]]) -> ModelCheck:
    """A model's agreement figures over its windows: each judge's items, the pair items two reviewers voted on
    (``paired``), and every item's votes (reviewer -> outcome: a, b, tie, bothbad, or a grade). The same figures as
    :func:`read_model` gives from the tallies, for these items only."""
    check = ModelCheck()
    for name, items in judges.items():
        entry = check.judges.setdefault(name, JudgeCheck())
        table: dict[tuple[str, str], float] = {}
        graded: list[tuple[float, float]] = []
        counts = {"consistent": 0.0, "inconsistent": 0.0}
        for item in items:
            cast = votes.get(item.id, {})
            if item.kind == "pair":
                entry.pair_items += 1
                counts["consistent" if item.consistent else "inconsistent"] += 1
                for vote in cast.values():
                    cell = (item.judge_outcome, as_outcome(vote))
                    table[cell] = table.get(cell, 0.0) + 1
            elif item.kind == "single":
                entry.single_items += 1
                graded += [(float(item.judge_outcome), float(grade)) for grade in cast.values()]
        if entry.pair_items:
            entry.pair = pair_agreement(table)
            entry.position_bias = position_bias(counts["consistent"], counts["inconsistent"])
        if graded:
            entry.single_comparisons, entry.spearman = len(graded), spearman(graded)
    humans: dict[tuple[str, str], float] = {}
    for item_id in paired:
        outcomes = [as_outcome(v) for v in votes.get(item_id, {}).values()]
        for i, x in enumerate(outcomes):
            for y in outcomes[i + 1 :]:
                cell = (min(x, y), max(x, y))  # unordered, as the tally counts them
                humans[cell] = humans.get(cell, 0.0) + 1
    if humans:
        check.reviewers = pair_agreement(humans)
    return check


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
        self._exported: dict[str, set[str]] = {}  # model -> judges with series exported
        self.window = config.agreement_window_items
        self.latest: dict[str, ModelCheck] = {}
        metrics.agreement_floor.set(config.agreement_floor)
        metrics.agreement_min_items.set(config.agreement_min_items)
        metrics.agreement_window_items.set(config.agreement_window_items)

    async def refresh(self, model: str) -> ModelCheck:
        """Read the model's windows and tallies, export the window's figures, keep both for the page."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(AGREEMENT + model)
        pipe.lrange(AGREEMENT_SINGLE + model, 0, -1)
        pipe.zrange(RECENT_HUMANS + model, -self.window, -1)
        tally, singles, paired_raw = await pipe.execute()
        all_time = read_model(tally, singles)
        pipe = self.redis.pipeline(transaction=False)
        for judge in all_time.judges:
            pipe.zrange(f"{RECENT}{judge}:{model}", -self.window, -1)
        windows = {
            judge: [WindowItem.parse(member) for member in members]
            for judge, members in zip(all_time.judges, await pipe.execute(), strict=True)
        }
        paired = [m.decode() if isinstance(m, bytes) else str(m) for m in paired_raw]
        ids = sorted({item.id for items in windows.values() for item in items} | set(paired))
        pipe = self.redis.pipeline(transaction=False)
        for item_id in ids:
            pipe.hgetall(ITEM_VOTES + item_id)
        votes = {
            item_id: {_text(k): _text(v) for k, v in cast.items()}
            for item_id, cast in zip(ids, await pipe.execute() if ids else [], strict=True)
        }
        check = read_window({j: items for j, items in windows.items() if items}, paired, votes)
        check.all_time = all_time
        self._export(model, check)
        self.latest[model] = check
        return check

    def _export(self, model: str, check: ModelCheck) -> None:
        """The window's figures as gauges; a figure the window no longer defines (no comparison without ties left
        in it, say) is removed, not left at its last value."""
        m = self.metrics
        judges = set(check.judges) | self._exported.get(model, set())
        for judge in judges:
            entry = check.judges.get(judge, JudgeCheck())
            pair = entry.pair
            _set(m.agreement, (model, judge, "included"), pair.with_ties if pair else None)
            _set(m.agreement, (model, judge, "excluded"), pair.without_ties if pair else None)
            _set(m.kappa, (model, judge), pair.kappa if pair else None)
            _set(m.position_bias, (model, judge), entry.position_bias)
            _set(m.spearman, (model, judge), entry.spearman)
            comparisons = entry.single_comparisons or (pair.comparisons if pair else 0)
            _set(m.agreement_comparisons, (model, judge), comparisons if judge in check.judges else None)
            items = entry.pair_items + entry.single_items
            _set(m.agreement_items, (model, judge), items if judge in check.judges else None)
        self._exported[model] = set(check.judges)
        humans = check.reviewers
        _set(m.reviewer_agreement, (model, "included"), humans.with_ties if humans else None)
        _set(m.reviewer_agreement, (model, "excluded"), humans.without_ties if humans else None)

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


def _set(gauge: Any, labels: tuple[str, ...], value: float | None) -> None:
    """Set the gauge's series, or remove it when ``value`` is None."""
    if value is not None:
        gauge.labels(*labels).set(value)
        return
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
