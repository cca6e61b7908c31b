"""The monitors' Redis side and one worker, in this process, against a real ``redis-server``: the backlog without a
group and after an overflow, de-duplication per stream entry, pending entries trimmed from the stream, and finding
the rated models without a keyspace SCAN."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from llmops.config import Config
from llmops.contract import SAMPLES_STREAM as STREAM
from monitors.metrics import MonitorMetrics
from monitors.ratings import PAIRWISE_MODELS
from monitors.store import ATTEMPTS, DEAD_LETTERS, SampleStore
from monitors.worker import Worker
from tests.monitors.test_monitors_worker import make_sample
from tests.support import metric

GROUP = "llmops-monitors"
DEPLOYMENT = {"name": "sim", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


@pytest.fixture()
async def store(redis_url: str) -> AsyncIterator[SampleStore]:
    store = SampleStore.connect(redis_url, GROUP, "test-consumer")
    yield store
    await store.close()


def make_worker(store: SampleStore, **monitors: object) -> Worker:
    config = Config.model_validate(
        {
            "models": [{"name": "app", "deployments": [DEPLOYMENT]}],
            "monitors": {"judges": ["rules"], **monitors},
        }
    )
    return Worker(config, store, metrics=MonitorMetrics())


def samples(worker: Worker) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(worker.metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def add(redis: aioredis.Redis, *request_ids: str, maxlen: int | None = None) -> list[str]:
    ids = []
    for i, request_id in enumerate(request_ids):
        sample = make_sample(i)
        sample.id = request_id
        fields = {"id": request_id, "sample": sample.to_json()}
        entry_id = await redis.xadd(STREAM, fields, maxlen=maxlen, approximate=False)
        ids.append(entry_id.decode())
    return ids


# ---- backlog ------------------------------------------------------------------------------------------------------
async def test_backlog_without_stream_or_group(store: SampleStore) -> None:
    assert await store.backlog() == 0  # no stream at all
    await add(store.redis, "a", "b", "c")  # the gateway's XADD recreates the stream, never the group
    assert await store.backlog() == 3, "without the group, every entry of the stream waits"
    await store.ensure_group()
    assert await store.backlog() == 3
    await store.read(2, block_ms=10)
    assert await store.backlog() == 3, "2 pending + 1 not delivered"


async def test_backlog_after_an_overflow_of_maxlen(store: SampleStore) -> None:
    """Redis < 8 keeps entries trimmed before the group read them in the group's lag (redis/redis#13957): the
    backlog must not stay inflated once the workers have caught up."""
    await store.ensure_group()
    await add(store.redis, *(f"r{i}" for i in range(10)))
    first = await store.read(3, block_ms=10)
    await store.redis.xack(STREAM, GROUP, *(e.entry_id for e in first))
    await add(store.redis, *(f"s{i}" for i in range(10)), maxlen=5)  # the workers fell behind: MAXLEN trims
    assert await store.backlog() == 5, "at most the stream's length"
    rest = await store.read(100, block_ms=10)
    assert len(rest) == 5
    await store.redis.xack(STREAM, GROUP, *(e.entry_id for e in rest))
    assert await store.backlog() == 0


# ---- de-duplication on the stream entry -------------------------------------------------------------------------
async def test_same_request_id_twice_is_two_samples_and_a_redelivery_counts_once(store: SampleStore) -> None:
    """A client retry with the same x-request-id (502, then 200) is two stream entries: both are judged. A second
    delivery of one entry (a claim after a slow worker's commit) is acknowledged and exported once."""
    await store.ensure_group()
    await add(store.redis, "client-req-0001", "client-req-0001")
    worker = make_worker(store)
    entries = await store.read(10, block_ms=10)
    assert [e.request_id for e in entries] == ["client-req-0001"] * 2
    for entry in entries:
        await worker.process(entry)
    after = samples(worker)
    assert metric(after, "llm_monitor_samples_processed_total", model="app", outcome="ok") == 2
    assert metric(after, "llm_judge_score_count", judge="rules", criterion="empty_answer") == 2
    await worker.process(entries[0])  # delivered again
    after = samples(worker)
    assert metric(after, "llm_monitor_samples_processed_total") == 2
    assert metric(after, "llm_monitor_samples_duplicate_total") == 1
    assert metric(after, "llm_judge_score_count", judge="rules", criterion="empty_answer") == 2
    assert (await store.redis.xpending(STREAM, GROUP))["pending"] == 0


# ---- pending entries trimmed from the stream (XAUTOCLAIM's deleted ids, Redis >= 7) ------------------------------
async def test_trimmed_pending_entries_are_dead_lettered(store: SampleStore) -> None:
    await store.ensure_group()
    trimmed = await add(store.redis, *(f"lost-{i}" for i in range(5)))
    worker = make_worker(store)
    delivered = await store.read(10, block_ms=10)
    for entry in delivered:  # a worker counted its attempts, then died with them in hand
        await store.attempt(entry.entry_id)
    await add(store.redis, "k1", "k2", "k3", maxlen=3)  # the backlog overflows MAXLEN: the pending five are gone
    claimed, _ = await store.claim(0, 10)
    assert sorted(e.entry_id for e in claimed) == sorted(trimmed)
    assert all(e.raw is None for e in claimed)
    await asyncio.gather(*(worker.process(entry) for entry in claimed))
    dead = await store.redis.xrange(DEAD_LETTERS)
    assert sorted(d[1][b"entry"].decode() for d in dead) == sorted(trimmed)
    assert all(b"trimmed" in d[1][b"reason"] for d in dead)
    assert metric(samples(worker), "llm_monitor_samples_processed_total", model="unknown", outcome="error") == 5
    assert await store.redis.hlen(ATTEMPTS) == 0, "their attempt counters are cleared"
    assert (await store.redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_claims_go_on_through_the_pending_list(store: SampleStore) -> None:
    """A long pending list is claimed batch after batch from where the last scan stopped, not from its start again
    (which would claim the same first entries over and over while the others wait)."""
    await store.ensure_group()
    ids = await add(store.redis, *(f"req-{i}" for i in range(12)))
    await store.read(20, block_ms=10)  # all pending now
    seen: list[str] = []
    cursor = "0-0"
    for _ in range(3):
        batch, cursor = await store.claim(0, 5, cursor)
        seen += [entry.entry_id for entry in batch]
    assert seen == ids and cursor == "0-0", "each entry claimed once, then the scan is complete"


# ---- rated models, without SCAN -----------------------------------------------------------------------------------
async def test_rated_models_come_from_the_config_and_the_pairwise_set(store: SampleStore) -> None:
    worker = make_worker(store)
    await store.redis.hincrby("llmops:feedback_tally:app", "alpha|positive", 2)
    await worker.ratings.update("other", [("a", "b", "a")])  # a pairwise verdict on a model the config lacks
    assert await store.redis.sismember(PAIRWISE_MODELS, "other")
    assert await worker.ratings.rated_models() == ["app", "other"]
    stats = await store.redis.info("commandstats")
    assert "cmdstat_scan" not in stats
    assert metric(samples(worker), "llm_judge_variant_rating", model="other", variant="a") > 1000


# ---- variant ratings: one per source, and the pairwise judge's consistency -------------------------------------------
async def test_thumbs_cannot_outvote_the_pairwise_judge(store: SampleStore) -> None:
    """The judge preferred a over b in 10 pairs of 10; users gave b 100 thumbs up and a 100 down. Rated together (as
    before), every thumb weighed like a judged pair and b came out on top; rated per source, each says its own."""
    from monitors.bradley_terry import bradley_terry

    worker = make_worker(store)
    await store.redis.hset("llmops:feedback_tally:app", mapping={"b|positive": 100, "a|negative": 100})
    await worker.ratings.update("app", [("a", "b", "a", True)] * 10)
    together = bradley_terry([("a", "b", 1.0)] * 10, feedback={"a": (0, 100), "b": (100, 0)})
    assert together["b"] > together["a"]  # what a single rating said
    exported = samples(worker)

    def rating(variant: str, source: str) -> float:
        return metric(exported, "llm_judge_variant_rating", model="app", variant=variant, source=source)

    assert rating("a", "pairwise") > 1000 > rating("b", "pairwise")
    assert rating("b", "feedback") > 1000 > rating("a", "feedback")
    # each source rated alone: the judge's 10-0 with one virtual tie each against the anchor (bradley_terry's prior)
    assert rating("a", "pairwise") == pytest.approx(bradley_terry([("a", "b", 1.0)] * 10)["a"])


async def test_order_inconsistent_ties_are_tallied_apart_and_give_the_consistency_ratio(store: SampleStore) -> None:
    """Four verdicts of a against b: a win, a real tie (both orders), an order-inconsistent tie, a loss. The tally
    keeps the two ties apart; both count as a tie in the rating (1 win, 1 loss, 2 ties: even); 3 of 4 agreed."""
    worker = make_worker(store)
    await worker.ratings.update(
        "app", [("a", "b", "a", True), ("a", "b", "tie", True), ("a", "b", "tie", False), ("a", "b", "b", True)]
    )
    tally = await store.redis.hgetall("llmops:pairwise:app")
    assert tally == {b"a|b|a": b"1", b"a|b|tie": b"1", b"a|b|inconsistent": b"1", b"a|b|b": b"1"}
    exported = samples(worker)
    assert metric(exported, "llm_judge_pairwise_consistency_ratio", model="app") == 0.75
    assert metric(exported, "llm_judge_variant_rating", model="app", variant="a", source="pairwise") == pytest.approx(
        1000.0
    )
    assert metric(exported, "llm_judge_variant_rating", model="app", source="feedback") == 0  # no thumbs: no series


def test_whether_the_orders_agreed_is_read_from_the_pairwise_result() -> None:
    from monitors.ratings import orders_agreed, verdicts

    fields = {
        "pairwise:a:b": {"winner": "tie", "details": {"verdict_ab": "A", "verdict_ba": "A", "consistent": False}},
        "pairwise:a:c": {"winner": "tie", "details": {"verdict_ab": "C", "verdict_ba": "C"}},  # no flag: the verdicts
        "pairwise:b:c": {"winner": "b", "details": {}},  # a judge that says nothing: taken at its word
    }
    pairs = [("a", "b", "tie"), ("a", "c", "tie"), ("b", "c", "b")]
    assert verdicts(pairs, fields) == [("a", "b", "tie", False), ("a", "c", "tie", True), ("b", "c", "b", True)]
    assert orders_agreed({"verdict_ab": "A", "verdict_ba": "B"}) and not orders_agreed(
        {"verdict_ab": "B", "verdict_ba": "C"}
    )
