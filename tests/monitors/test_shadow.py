"""Shadow comparisons end to end: a real gateway (in front of a simulator and a scripted judge), a real monitors
worker and a real Redis. The worker sends a share of a model's sampled requests to another model through the gateway
as shadow traffic (metered and costed as its own kind, never sampled), bounded by its rate and its budget, and the
pairs reach the pairwise judge, the ratings and the review queue."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import redis

from llmops.contract import SAMPLES_STREAM
from monitors.shadow import CONCURRENCY
from tests.conftest import SimulatorFactory
from tests.monitors.review_support import FakeJudge, add_samples, chat_sample, reviewers
from tests.support import free_port, gateway, gateway_config, metric, monitors, scrape, wait_for


def config(tmp_path: Path, redis_url: str, sim_url: str, judge_url: str, gw_port: int, **shadow: Any) -> Path:
    price = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
    models = [
        {"name": "app", "deployments": [{"name": "s", "base_url": sim_url, "model": "sim-model"}], "pricing": price},
        {
            "name": "big",
            "deployments": [{"name": "s", "base_url": sim_url, "model": "sim-model"}],
            "pricing": price,
            "sampling": {"rate": 1.0},  # shadow traffic must still never be sampled
        },
        {"name": "judge", "deployments": [{"name": "j", "base_url": judge_url, "model": "j"}]},
    ]
    return gateway_config(
        tmp_path / "config.yaml",
        models,
        redis={"url": redis_url},
        monitors={
            "gateway_url": f"http://127.0.0.1:{gw_port}/v1",
            "judge_model": "judge",
            "judges": ["rules", {"name": "pairwise", "models": ["app"]}],
            "drift": {"enabled": False},
            "claim_idle_seconds": 1,
            "shadow": [{"model": "app", "target": "big", "rate": 1.0, **shadow}],
            "review": {"enabled": True, "reviewers": reviewers(), "queues": [{"name": "ab", "mode": "pair"}]},
        },
    )


def samples(n: int) -> list[Any]:
    return [
        chat_sample(f"req-{i}", [{"role": "user", "content": f"Tell me fact number {i}."}], f"Fact {i}.", model="app")
        for i in range(n)
    ]


def wait_for_a_fresh_minute() -> None:
    """The rate is counted in fixed one-minute windows: start well inside one, so the test stays in it."""
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)


def test_shadow_rate_limit_costs_and_pairs(tmp_path: Path, redis_url: str, simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(echo=True)
    port = free_port()
    client = redis.Redis.from_url(redis_url)
    with FakeJudge() as judge:
        path = config(tmp_path, redis_url, sim.base_url, judge.url, port, max_per_minute=3, max_tokens_per_day=10**6)
        with gateway(path, port=port) as gw, monitors(path) as worker:
            wait_for_a_fresh_minute()
            add_samples(redis_url, samples(8))
            outcomes = lambda: {  # noqa: E731
                o: metric(scrape(worker), "llm_shadow_requests_total", outcome=o) for o in ("sent", "rate_limited")
            }
            wait_for(lambda: sum(outcomes().values()) == 8, timeout=30)
            assert outcomes() == {"sent": 3, "rate_limited": 5}
            wait_for(lambda: client.zcard("llmops:review:queue:ab") == 3, timeout=20)
            at_gateway = scrape(gw)
            worker_metrics = scrape(worker)
    # the gateway metered and costed the shadow traffic as its own kind, and sampled none of it
    assert metric(at_gateway, "llm_gateway_traffic_requests_total", model="big", kind="shadow") == 3
    assert metric(at_gateway, "llm_gateway_traffic_cost_usd_total", model="big", kind="shadow") > 0
    assert metric(at_gateway, "llm_gateway_traffic_requests_total", model="big", kind="user") == 0
    assert client.xlen(SAMPLES_STREAM) == 8  # only the samples the test wrote
    estimated = metric(worker_metrics, "llm_shadow_cost_usd_total", model="app", target="big")
    gateway_cost = metric(at_gateway, "llm_gateway_traffic_cost_usd_total", model="big", kind="shadow")
    assert abs(estimated - gateway_cost) < 1e-9  # the monitors' estimate uses the same per-token prices
    # each shadow pair was judged (both orders), kept with the sample's results, rated and queued for reviewers
    assert metric(worker_metrics, "llm_judge_pairwise_total", model="app", variant_a="app", variant_b="big") == 3
    tally = {k.decode(): int(v) for k, v in client.hgetall("llmops:pairwise:app").items()}
    assert sum(tally.values()) == 3 and all(k.startswith("app|big|") for k in tally)
    assert ("llm_judge_variant_rating", (("model", "app"), ("source", "pairwise"), ("variant", "big"))) in (
        worker_metrics
    )
    judged = [r for r in (client.hgetall(f"llmops:results:req-{i}") for i in range(8)) if b"pairwise:shadow:big" in r]
    assert len(judged) == 3
    kept = orjson.loads(judged[0][b"shadow:big"])
    assert kept["request_id"] and kept["answer"].startswith("Tell me fact number")  # the simulator echoes
    queued = client.zrange("llmops:review:queue:ab", 0, -1)
    items = [orjson.loads(client.hget(f"llmops:review:item:{i.decode()}", "doc")) for i in queued]
    assert {i["source"] for i in items} == {"shadow"}
    assert all([a["contestant"] for a in i["answers"]] == ["app", "big"] for i in items)
    assert all(i["judge"] == "pairwise" for i in items)


def test_shadow_budget(tmp_path: Path, redis_url: str, simulator_factory: SimulatorFactory) -> None:
    """A USD budget smaller than one request's cost: the first request spends it, then requests are refused. Requests
    already in flight when it ran out may still pass (at most CONCURRENCY per worker)."""
    sim = simulator_factory(echo=True)
    port = free_port()
    with FakeJudge() as judge:
        path = config(tmp_path, redis_url, sim.base_url, judge.url, port, max_per_minute=100, budget_usd_per_day=1e-9)
        with gateway(path, port=port) as gw, monitors(path) as worker:
            add_samples(redis_url, samples(10))
            count = lambda o: metric(scrape(worker), "llm_shadow_requests_total", outcome=o)  # noqa: E731
            wait_for(lambda: count("sent") + count("over_budget") == 10, timeout=30)
            sent = count("sent")
            assert 1 <= sent <= CONCURRENCY and count("over_budget") == 10 - sent
            assert metric(scrape(gw), "llm_gateway_traffic_requests_total", model="big", kind="shadow") == sent
