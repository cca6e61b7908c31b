"""Shadow comparisons end to end: a real gateway (in front of a simulator and a scripted judge), a real monitors
worker and a real Redis. The worker sends a share of a model's sampled requests to another model through the gateway
as shadow traffic (metered and costed as its own kind, never sampled), bounded by its rate and its budget, and the
pairs reach the pairwise judge, the ratings and the review queue. A shadow may also ask another A/B variant of the
sampled model itself, pinned with ``x-llmops-variant`` (which the gateway honours on shadow traffic only)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from gateway.routing import ModelRoute
from llmops.config import load_config
from llmops.contract import SAMPLES_STREAM, TRAFFIC_HEADER, VARIANT_HEADER
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


MONITORS_KEY, USER_KEY = "sk-monitors-3b8e1f", "sk-app-5c2d9a"
KOREAN = "환불 규정을 알려 주세요. 주문한 지 10일이 지났습니다."


def variants_config(tmp_path: Path, redis_url: str, sim_url: str, judge_url: str, gw_port: int) -> Path:
    """Model ``chat`` split into variants ``a`` and ``b`` on its own deployments; the shadow of ``a`` asks ``b``.
    Keys are on: the monitors' key may pin a variant, the application's may not."""
    deployments = [{"name": n, "base_url": sim_url, "model": "sim-model"} for n in ("vllm-a", "vllm-b")]
    models = [
        {
            "name": "chat",
            "deployments": deployments,
            "variants": [{"name": "a", "deployments": ["vllm-a"]}, {"name": "b", "deployments": ["vllm-b"]}],
            "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            "sampling": {"rate": 1.0},  # the application's request is sampled; shadow requests never are
        },
        {"name": "judge", "deployments": [{"name": "j", "base_url": judge_url, "model": "j"}]},
    ]
    sha = lambda key: hashlib.sha256(key.encode()).hexdigest()  # noqa: E731
    return gateway_config(
        tmp_path / "config.yaml",
        models,
        redis={"url": redis_url},
        keys=[
            {"name": "monitors", "sha256": sha(MONITORS_KEY), "variant_pin": True},
            {"name": "app", "sha256": sha(USER_KEY)},
        ],
        monitors={
            "gateway_url": f"http://127.0.0.1:{gw_port}/v1",
            "judge_model": "judge",
            "judge_api_key": MONITORS_KEY,
            "judges": ["rules", {"name": "pairwise", "models": ["chat"]}],
            "drift": {"enabled": False},
            "claim_idle_seconds": 1,
            "shadow": [{"model": "chat", "target": "chat", "variant": "b", "rate": 1.0, "max_tokens_per_day": 10**6}],
            "review": {"enabled": True, "reviewers": reviewers(), "queues": [{"name": "ab", "mode": "pair"}]},
        },
    )


def test_shadow_of_a_variant_onto_another_variant_of_the_same_model(
    tmp_path: Path, redis_url: str, simulator_factory: SimulatorFactory
) -> None:
    """Variant ``a``'s samples are asked again of variant ``b`` of the same model (pinned with x-llmops-variant, as
    shadow traffic, with the monitors' key); ``b``'s own samples are not shadowed; an application's request carrying
    the header stays in its A/B variant, and one that claims to be shadow traffic to pin is refused."""
    sim = simulator_factory(echo=True)
    port = free_port()
    client = redis.Redis.from_url(redis_url)
    prompts = {"a-0": KOREAN, "a-1": "Explain the refund policy.", "b-0": "B's own question.", "b-1": "Another one."}
    written = [
        chat_sample(i, [{"role": "user", "content": p}], f"Answer to {p}", model="chat", variant=i[0])
        for i, p in prompts.items()
    ]
    with FakeJudge() as judge:
        path = variants_config(tmp_path, redis_url, sim.base_url, judge.url, port)
        chat = load_config(path).model("chat")
        assert chat is not None
        sticky = ModelRoute(config=chat, deployments=[], variants=list(chat.variants))
        user = next(
            u for u in (f"user-{i}" for i in range(100)) if getattr(sticky.choose_variant(u), "name", "") == "a"
        )
        with gateway(path, port=port) as gw, monitors(path) as worker:

            def ask(**headers: str) -> httpx.Response:
                body = {
                    "model": "chat",
                    "messages": [{"role": "user", "content": "어떤 요금제가 있나요?"}],
                    "user": user,
                }
                headers["Authorization"] = f"Bearer {USER_KEY}"
                return httpx.post(f"{gw}/v1/chat/completions", json=body, headers=headers, timeout=10)

            ignored = ask(**{VARIANT_HEADER: "b"})
            assert ignored.status_code == 200 and ignored.headers[VARIANT_HEADER] == "a"  # not pinned
            refused = ask(**{VARIANT_HEADER: "b", TRAFFIC_HEADER: "shadow"})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "variant_pin_not_allowed"
            add_samples(redis_url, written)
            sent = lambda: metric(scrape(worker), "llm_shadow_requests_total", target="chat@b")  # noqa: E731
            # a-0, a-1 and the application's own (sampled, variant a) request; never b-0 or b-1
            committed = lambda: all(client.exists(f"llmops:results:{i}") for i in prompts)  # noqa: E731
            wait_for(lambda: committed() and sent() >= 3 and client.zcard("llmops:review:queue:ab") >= 3, timeout=30)
            time.sleep(1)  # every sample was committed: a shadow of b's samples would show by now
            at_gateway, worker_metrics = scrape(gw), scrape(worker)
    assert metric(worker_metrics, "llm_shadow_requests_total", model="chat", target="chat@b", outcome="sent") == 3
    # metered as shadow traffic, under variant b and its deployment, with the monitors' key; never sampled
    assert metric(at_gateway, "llm_gateway_traffic_requests_total", model="chat", kind="shadow") == 3
    assert metric(at_gateway, "llm_gateway_traffic_cost_usd_total", model="chat", kind="shadow") > 0
    assert metric(at_gateway, "llm_gateway_requests_total", model="chat", variant="b", deployment="vllm-b") == 3
    assert metric(at_gateway, "llm_gateway_requests_total", model="chat", variant="b", key="monitors") == 3
    assert metric(at_gateway, "llm_gateway_requests_total", model="chat", variant="a", key="app") == 1
    assert metric(at_gateway, "llm_gateway_requests_total", variant="b", key="app") == 0
    assert client.xlen(SAMPLES_STREAM) == len(written) + 1  # the application's request, not the shadows
    # judged as a pair of the model's variants a and b, kept with the sample's results, queued for reviewers
    assert metric(worker_metrics, "llm_judge_pairwise_total", model="chat", variant_a="a", variant_b="b") == 3
    tally = {k.decode(): int(v) for k, v in client.hgetall("llmops:pairwise:chat").items()}
    assert sum(tally.values()) == 3 and all(k.startswith("a|b|") for k in tally)
    korean = client.hgetall("llmops:results:a-0")
    assert b"pairwise:shadow:chat@b" in korean
    assert orjson.loads(korean[b"shadow:chat@b"])["answer"].startswith("환불 규정을 알려 주세요")  # echoed by b
    assert not any(client.hexists(f"llmops:results:{i}", "shadow:chat@b") for i in ("b-0", "b-1"))
    items = [
        orjson.loads(client.hget(f"llmops:review:item:{i.decode()}", "doc"))
        for i in client.zrange("llmops:review:queue:ab", 0, -1)
    ]
    assert len(items) == 3 and {i["source"] for i in items} == {"shadow"}
    for item in items:
        assert [(a["contestant"], a["model"], a["variant"]) for a in item["answers"]] == [
            ("a", "chat", "a"),
            ("b", "chat", "b"),
        ]
    assert any("환불 규정" in m["content"] for i in items for m in i["conversation"])
