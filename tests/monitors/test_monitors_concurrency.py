"""The worker's pool of in-flight entries, in this process, against a real ``redis-server``: up to
``monitors.concurrency`` entries are judged at once and a new one is read as soon as a slot frees, so one slow sample
never holds up the samples queued behind it; a stop finishes the entries in hand, and a cancelled worker leaves them
pending for a claim (nothing lost, nothing counted twice).

The judge model is a scripted OpenAI-compatible HTTP server that answers ``Rating: [[8]]`` at once, except for the
slow sample, whose judge call it holds until the test lets it go (so nothing here depends on how fast the host is).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from llmops.config import Config
from llmops.contract import SAMPLES_STREAM as STREAM
from llmops.sample import Sample
from monitors.judge_llm import GatewayJudgeLLM
from monitors.metrics import MonitorMetrics
from monitors.store import SampleStore
from monitors.worker import Worker
from tests.monitors.test_monitors_worker import make_sample
from tests.support import metric, serve_post

GROUP = "llmops-monitors"
DEPLOYMENT = {"name": "sim", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
SLOW = "TAKE-YOUR-TIME"  # in the slow sample's answer, hence in its judge prompt
HOLD_SECONDS = 60.0  # the longest the slow judge call is held when a test fails before releasing it


class JudgeUpstream:
    """Chat completions that answer at once, except a prompt containing :data:`SLOW`: held until :meth:`release`.
    Counts the calls in progress (``active``, at most ``most``) and the held ones (``held``)."""

    def __init__(self) -> None:
        self.url = ""
        self.active = 0
        self.most = 0
        self.held = 0
        self.calls = 0
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        prompt = "\n".join(str(m.get("content", "")) for m in body["messages"])
        self.calls += 1
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            if SLOW in prompt:
                self.held += 1
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._released.wait(), HOLD_SECONDS)
                finally:
                    self.held -= 1
            else:
                await asyncio.sleep(0.02)  # a fast call still takes a moment: calls overlap
            return web.json_response(
                {
                    "id": "judge",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "judge",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Fine. Rating: [[8]]"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
                }
            )
        finally:
            self.active -= 1


@pytest.fixture()
async def upstream() -> AsyncIterator[JudgeUpstream]:
    judge = JudgeUpstream()
    async with serve_post("/v1/chat/completions", judge.handle) as url:
        judge.url = f"{url}/v1"
        yield judge
        judge.release()


@pytest.fixture()
async def llm(upstream: JudgeUpstream) -> AsyncIterator[GatewayJudgeLLM]:
    client = GatewayJudgeLLM(upstream.url, "judge", timeout=HOLD_SECONDS + 30)
    yield client
    await client.close()


def make_worker(store: SampleStore, llm: GatewayJudgeLLM, concurrency: int = 2) -> Worker:
    config = Config.model_validate(
        {
            "models": [
                {"name": "app", "deployments": [DEPLOYMENT]},
                {"name": "judge", "deployments": [DEPLOYMENT]},  # the worker calls the upstream directly
            ],
            "monitors": {
                "judges": ["llm_single"],
                "judge_model": "judge",
                "concurrency": concurrency,
                "claim_idle_seconds": 1,
            },
        }
    )
    return Worker(config, store, metrics=MonitorMetrics(), llm=llm)


def scores(worker: Worker) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(worker.metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def add(redis: aioredis.Redis, samples: list[Sample]) -> list[str]:
    ids = []
    for sample in samples:
        entry_id = await redis.xadd(STREAM, {"id": sample.id, "sample": sample.to_json()})
        ids.append(entry_id.decode())
    return ids


async def until(predicate: Callable[[], Awaitable[bool] | bool], what: str, within: float = 20.0) -> None:
    """Poll ``predicate`` (sync or async) until it holds; fail, saying ``what`` was expected, after ``within`` s."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)


async def processed(store: SampleStore, entry_ids: list[str]) -> int:
    """How many of ``entry_ids`` are committed (their processed mark is set)."""
    return int(await store.redis.exists(*(store.processed_key(i) for i in entry_ids)))


async def committed(store: SampleStore, entry_ids: list[str]) -> bool:
    return await processed(store, entry_ids) == len(entry_ids)


async def pending(store: SampleStore) -> int:
    return int((await store.redis.xpending(STREAM, GROUP))["pending"])


async def test_a_slow_sample_does_not_hold_up_the_samples_queued_behind_it(
    store: SampleStore, upstream: JudgeUpstream, llm: GatewayJudgeLLM
) -> None:
    """Concurrency 2, the slow sample first in the stream: while its judge call is held, the six fast samples behind
    it all go through the other slot (a lock-step batch would wait for the slow one before reading more)."""
    slow, *fast = await add(
        store.redis, [make_sample(0, answer=f"{SLOW} answer")] + [make_sample(i) for i in range(1, 7)]
    )
    worker = make_worker(store, llm, concurrency=2)
    running = asyncio.create_task(worker.run())
    try:
        await until(lambda: upstream.held == 1, "the slow judge call is in progress")
        await until(lambda: committed(store, fast), "every fast sample committed while the slow one is in hand")
        assert upstream.held == 1, "the slow judge call is still held"
        assert await processed(store, [slow]) == 0
        assert await pending(store) == 1, "only the slow entry is in hand"
        assert upstream.most == 2, "never more judge calls at once than monitors.concurrency"
        upstream.release()
        await until(lambda: committed(store, [slow]), "the slow sample committed")
    finally:
        upstream.release()
        worker.stop()
        await asyncio.wait_for(running, 30)
    after = scores(worker)
    assert metric(after, "llm_monitor_samples_processed_total", model="app", outcome="ok") == 7
    assert metric(after, "llm_monitor_samples_duplicate_total") == 0
    assert metric(after, "llm_judge_score_count", judge="llm_single") == 7
    assert upstream.calls == 7 and upstream.most == 2
    assert await pending(store) == 0


async def test_stop_finishes_the_entries_in_flight(
    store: SampleStore, upstream: JudgeUpstream, llm: GatewayJudgeLLM
) -> None:
    """A stop while a slow entry is in hand: no new entry is read, the one in hand is judged and committed before
    :meth:`Worker.run` returns."""
    slow, *rest = await add(
        store.redis, [make_sample(0, answer=f"{SLOW} answer")] + [make_sample(i) for i in range(1, 4)]
    )
    worker = make_worker(store, llm, concurrency=2)
    running = asyncio.create_task(worker.run())
    try:
        await until(lambda: upstream.held == 1, "the slow judge call is in progress")
        worker.stop()
        await asyncio.sleep(1.0)  # longer than a read's BLOCK: a worker not waiting for its entries would be done
        assert not running.done(), "the worker finishes the entry in hand before it returns"
        upstream.release()
        await asyncio.wait_for(running, 30)
    finally:
        upstream.release()
        worker.stop()
        if not running.done():
            await asyncio.wait_for(running, 30)
    assert await processed(store, [slow]) == 1
    assert await pending(store) == 0, "every entry read was committed"
    done = await processed(store, [slow, *rest])
    assert metric(scores(worker), "llm_monitor_samples_processed_total", outcome="ok") == done


async def test_a_cancelled_worker_leaves_its_entries_pending_for_a_claim(
    store: SampleStore, upstream: JudgeUpstream, llm: GatewayJudgeLLM
) -> None:
    """Cancelled with an entry in hand (no graceful stop): the entry is not committed, stays pending, and another
    worker claims it and commits it once."""
    [slow] = await add(store.redis, [make_sample(0, answer=f"{SLOW} answer")])
    first = make_worker(store, llm)
    running = asyncio.create_task(first.run())
    await until(lambda: upstream.held == 1, "the slow judge call is in progress")
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(running, 30)
    assert await processed(store, [slow]) == 0
    assert await pending(store) == 1, "left pending, not lost"
    upstream.release()
    second = make_worker(SampleStore(store.redis, GROUP, "second"), llm)
    claiming = asyncio.create_task(second.run())
    try:
        await until(lambda: committed(store, [slow]), "the slow sample committed")
    finally:
        second.stop()
        await asyncio.wait_for(claiming, 30)
    after = scores(second)
    assert metric(after, "llm_monitor_entries_claimed_total") == 1
    assert metric(after, "llm_monitor_samples_processed_total", outcome="ok") == 1
    assert metric(scores(first), "llm_monitor_samples_processed_total") == 0
    assert await pending(store) == 0


async def test_a_claim_skips_the_entries_this_worker_still_has_in_hand(
    store: SampleStore, llm: GatewayJudgeLLM
) -> None:
    """Claims run while entries are in flight: an entry of this worker that went idle (held past the heartbeat's
    limit) must not be started a second time beside the first; another idle entry is claimed."""
    in_hand, left = await add(store.redis, [make_sample(1), make_sample(2)])
    worker = make_worker(store, llm)
    assert len(await store.read(2, block_ms=10)) == 2
    await asyncio.sleep(1.2)  # both idle past claim_idle_seconds
    assert [e.entry_id for e in await worker._claim(5, {in_hand})] == [left]
    assert metric(scores(worker), "llm_monitor_entries_claimed_total") == 1
