"""A judge model outage does not lose judgements: the worker, in this process, against a real ``redis-server`` and a
judge model behind real HTTP (the official openai SDK, as in production) that answers 503 while it is "down".

While the judge model is unavailable (unreachable, timed out, 429, 5xx), a sample's LLM judges are judged again on
a later attempt (the entry stays pending and is claimed again); the judges that did finish are kept, not run twice,
and every run is counted once. The last allowed attempt commits what it has, with the failure recorded. A failure
that would recur (a 400 about the request) is recorded at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from llmops.config import Config
from llmops.sample import Sample
from monitors.judge_llm import GatewayJudgeLLM
from monitors.judges.base import JudgeLLM, JudgeResult
from monitors.judges.registry import build_judges
from monitors.metrics import MonitorMetrics
from monitors.store import SampleStore, fetch_results
from monitors.worker import Worker
from tests.monitors.test_monitors_concurrency import DEPLOYMENT, add, committed, pending, scores, until
from tests.monitors.test_monitors_worker import make_sample
from tests.support import serve_post

RATING = "Fine. Rating: [[8]]"


class FlakyJudgeModel:
    """OpenAI chat completions answering ``Rating: [[8]]``, or ``status`` with an OpenAI error body while it is
    not 200 (503: the gateway has no healthy deployment of the judge model; 400: a bad request)."""

    def __init__(self) -> None:
        self.url = ""
        self.status = 200
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.json()
        self.calls += 1
        if self.status != 200:
            error = {"message": "judge model unavailable", "type": "server_error", "param": None, "code": None}
            return web.json_response({"error": error}, status=self.status)
        return web.json_response(
            {
                "id": "judge",
                "object": "chat.completion",
                "created": 0,
                "model": "judge",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": RATING}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
            }
        )


class CountingJudge:
    """A judge that counts its runs, around a real one."""

    def __init__(self, judge: Any) -> None:
        self.judge = judge
        self.name = judge.name
        self.runs = 0

    def applies(self, sample: Sample) -> bool:
        return self.judge.applies(sample)

    async def evaluate(self, sample: Sample, llm: JudgeLLM | None) -> list[JudgeResult]:
        self.runs += 1
        return await self.judge.evaluate(sample, llm)


@pytest.fixture()
async def judge_model() -> AsyncIterator[FlakyJudgeModel]:
    model = FlakyJudgeModel()
    async with serve_post("/v1/chat/completions", model.handle) as url:
        model.url = f"{url}/v1"
        yield model


@pytest.fixture()
async def llm(judge_model: FlakyJudgeModel) -> AsyncIterator[GatewayJudgeLLM]:
    client = GatewayJudgeLLM(judge_model.url, "judge", timeout=10)
    client._client = client._client.with_options(max_retries=0)  # the SDK's own retries would only slow the test
    yield client
    await client.close()


def make_worker(
    store: SampleStore,
    llm: GatewayJudgeLLM,
    rules: CountingJudge,
    max_deliveries: int,
    judges_config: tuple[str, ...] = ("rules", "llm_single"),
) -> Worker:
    config = Config.model_validate(
        {
            "models": [{"name": "app", "deployments": [DEPLOYMENT]}, {"name": "judge", "deployments": [DEPLOYMENT]}],
            "monitors": {
                "judges": list(judges_config),
                "judge_model": "judge",
                "claim_idle_seconds": 0.3,
                "max_deliveries": max_deliveries,
            },
        }
    )
    judges = build_judges(["llm_single"])
    judges["rules"] = rules  # type: ignore[assignment]
    return Worker(config, store, metrics=MonitorMetrics(), judges=judges, llm=llm)


def value(worker: Worker, name: str, **labels: str) -> float:
    return scores(worker).get((name, tuple(sorted(labels.items()))), 0.0)


async def run_until(worker: Worker, condition: Any, what: str) -> None:
    running = asyncio.create_task(worker.run())
    try:
        await until(condition, what)
    finally:
        worker.stop()
        await running


async def test_samples_judged_during_an_outage_are_judged_again_when_it_ends(
    store: SampleStore, judge_model: FlakyJudgeModel, llm: GatewayJudgeLLM
) -> None:
    rules = CountingJudge(build_judges(["rules"])["rules"])
    worker = make_worker(store, llm, rules, max_deliveries=5)
    judge_model.status = 503
    (entry,) = await add(store.redis, [make_sample(1)])

    async def deferred_then_recovered() -> bool:
        if value(worker, "llm_monitor_samples_deferred_total", model="app") >= 1 and judge_model.status != 200:
            assert await pending(store) == 1, "the entry stays pending while the judge model is down"
            assert await store.judged_before(entry), "the rules judge's result is kept for the next attempt"
            judge_model.status = 200  # the outage ends
        return await committed(store, [entry])

    await run_until(worker, deferred_then_recovered, "the sample committed once the judge model is back")
    results = await fetch_results(store.redis, "req-00001")
    assert results is not None
    assert results["llm_single:overall"]["score"] == pytest.approx(0.7778, abs=1e-3)  # 8 on 1..10
    assert "llm_single:error" not in results
    assert "rules:empty_answer" in results
    assert rules.runs == 1, "the judge that had finished is not run again"
    deferrals = value(worker, "llm_monitor_samples_deferred_total", model="app")
    assert value(worker, "llm_judge_runs_total", judge="llm_single", outcome="error") == deferrals
    assert value(worker, "llm_judge_errors_total", judge="llm_single", reason="llm_error") == deferrals
    assert value(worker, "llm_judge_runs_total", judge="llm_single", outcome="ok") == 1
    assert value(worker, "llm_judge_runs_total", judge="rules", outcome="ok") == 1, "each run counted once"
    assert value(worker, "llm_judge_score_count", model="app", judge="rules", criterion="empty_answer") == 1
    assert value(worker, "llm_monitor_samples_processed_total", model="app", outcome="ok") == 1
    assert await pending(store) == 0
    assert not await store.judged_before(entry), "the kept results go with the commit"


async def test_a_long_outage_commits_the_failure_on_the_last_attempt(
    store: SampleStore, judge_model: FlakyJudgeModel, llm: GatewayJudgeLLM
) -> None:
    rules = CountingJudge(build_judges(["rules"])["rules"])
    worker = make_worker(store, llm, rules, max_deliveries=3)
    judge_model.status = 503
    (entry,) = await add(store.redis, [make_sample(2)])
    await run_until(worker, lambda: committed(store, [entry]), "the sample committed after 3 attempts")
    results = await fetch_results(store.redis, "req-00002")
    assert results is not None and results["llm_single:error"]["reason"] == "llm_error"
    assert "503" in results["llm_single:error"]["message"]
    assert "rules:empty_answer" in results and rules.runs == 1
    assert judge_model.calls == 3, "one judge call per attempt"
    assert value(worker, "llm_monitor_samples_deferred_total", model="app") == 2
    assert value(worker, "llm_judge_runs_total", judge="llm_single", outcome="error") == 3
    assert value(worker, "llm_judge_runs_total", judge="rules", outcome="ok") == 1
    assert value(worker, "llm_monitor_samples_processed_total", model="app", outcome="ok") == 1
    assert await pending(store) == 0 and await store.redis.xlen("llmops:samples:dead") == 0


async def test_a_failure_that_would_recur_is_recorded_at_once(
    store: SampleStore, judge_model: FlakyJudgeModel, llm: GatewayJudgeLLM
) -> None:
    rules = CountingJudge(build_judges(["rules"])["rules"])
    worker = make_worker(store, llm, rules, max_deliveries=5)
    judge_model.status = 400  # e.g. the judge prompt is too long for the judge model's context
    (entry,) = await add(store.redis, [make_sample(3)])
    await run_until(worker, lambda: committed(store, [entry]), "the sample committed at the first attempt")
    assert judge_model.calls == 1
    assert value(worker, "llm_monitor_samples_deferred_total", model="app") == 0
    assert value(worker, "llm_judge_errors_total", judge="llm_single", reason="llm_error") == 1


async def test_pairwise_comparisons_are_not_deferred(
    store: SampleStore, judge_model: FlakyJudgeModel, llm: GatewayJudgeLLM
) -> None:
    """A retry would compare the pair again after a later answer of the other variant had compared against this one:
    a pair counted twice in the ratings. So a comparison the judge model could not make is recorded at once."""
    rules = CountingJudge(build_judges(["rules"])["rules"])
    worker = make_worker(store, llm, rules, max_deliveries=5, judges_config=("rules", "pairwise"))
    judge_model.status = 503
    first, second = await add(
        store.redis, [make_sample(4, variant="alpha"), make_sample(4, variant="beta")]
    )  # the same prompt, answered by two variants
    await run_until(worker, lambda: committed(store, [first, second]), "both samples committed at once")
    assert judge_model.calls == 1, "one comparison tried, not retried"
    assert value(worker, "llm_monitor_samples_deferred_total", model="app") == 0
    assert value(worker, "llm_judge_runs_total", judge="pairwise", outcome="error") == 1
    assert rules.runs == 2
