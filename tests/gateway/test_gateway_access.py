"""API keys, rate limits and budgets shared by two gateway processes through one Redis, failing open when Redis
goes away, and user feedback on answers."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from llmops.contract import FEEDBACK_STREAM
from llmops.contract import FEEDBACK_TALLY_PREFIX as TALLY_PREFIX
from tests.support import gateway, gateway_config, metric, redis_server, scrape, simulator

USER = [{"role": "user", "content": "one two three"}]  # 3 input tokens, 3 output tokens (echo)
KEYS = {
    "team-a": "sk-team-a-secret",
    "limited": "sk-limited-secret",
    "tokens": "sk-tokens-secret",
    "budget": "sk-budget-secret",
}


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model") as url:
        yield url


def _config(path: Path, sim: str, redis_url: str) -> Path:
    return gateway_config(
        path,
        [
            {
                "name": "echo",
                "deployments": [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}],
                "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 1.0},
                "variants": [{"name": "only", "deployments": ["sim"]}],
            }
        ],
        redis={"url": redis_url},
        keys=[
            {"name": "team-a", "sha256": _sha(KEYS["team-a"])},
            {"name": "limited", "sha256": _sha(KEYS["limited"]), "rpm": 10},
            {"name": "tokens", "sha256": _sha(KEYS["tokens"]), "tpm": 20},
            {"name": "budget", "sha256": _sha(KEYS["budget"]), "budget_usd": 0.00002, "budget_period": "day"},
        ],
    )


@pytest.fixture(scope="module")
def two_gateways(sim: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    with redis_server() as redis_url, ExitStack() as stack:
        config = _config(tmp_path_factory.mktemp("gw") / "config.yaml", sim, redis_url)
        first = stack.enter_context(gateway(config))
        second = stack.enter_context(gateway(config))
        yield first, second, redis_url


def _chat(gw: str, key: str | None, **extra: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        f"{gw}/v1/chat/completions", json={"model": "echo", "messages": USER, **extra}, headers=headers, timeout=10
    )


def _wait_for_fresh_minute() -> None:
    """Fixed one-minute windows: start a counting test well inside one."""
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)


def test_keys_are_required_and_named(two_gateways: tuple[str, str, str]) -> None:
    gw = two_gateways[0]
    for key in (None, "sk-wrong"):
        response = _chat(gw, key)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{gw}/v1/models").status_code == 401
    assert httpx.get(f"{gw}/health").status_code == 200 and httpx.get(f"{gw}/metrics").status_code == 200
    client = openai.OpenAI(base_url=f"{gw}/v1", api_key=KEYS["team-a"], max_retries=0)
    assert client.chat.completions.create(model="echo", messages=USER).choices[0].message.content == "one two three"
    assert [m.id for m in client.models.list()] == ["echo"]
    samples = scrape(gw)
    assert metric(samples, "llm_gateway_requests_total", key="team-a", status="200") >= 1
    assert metric(samples, "llm_gateway_requests_total", key="anonymous", status="401") == 2
    assert "sk-team-a-secret" not in httpx.get(f"{gw}/metrics").text


def test_rate_limit_holds_across_two_gateway_processes(two_gateways: tuple[str, str, str]) -> None:
    first, second, _ = two_gateways
    _wait_for_fresh_minute()
    responses = [_chat(first if i % 2 else second, KEYS["limited"]) for i in range(30)]
    statuses = [r.status_code for r in responses]
    unchecked = sum(metric(scrape(gw), "llm_gateway_limits_unavailable_total") for gw in (first, second))
    assert statuses.count(200) == 10, f"{statuses} ({unchecked} let through unchecked: Redis unreachable)"
    assert statuses.count(429) == 20
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 61
    total = sum(metric(scrape(gw), "llm_gateway_rate_limited_total", key="limited") for gw in (first, second))
    assert total == 20


def test_tokens_per_minute(two_gateways: tuple[str, str, str]) -> None:
    first, second, _ = two_gateways
    _wait_for_fresh_minute()
    statuses = []
    for i in range(6):
        statuses.append(_chat(first if i % 2 else second, KEYS["tokens"]).status_code)
        time.sleep(0.1)  # tokens are charged just after each answer
    assert statuses == [200, 200, 200, 200, 429, 429]  # 6 tokens a request against 20 per minute


def test_budget_stops_spending_once_exceeded_streams_included(two_gateways: tuple[str, str, str]) -> None:
    first, second, redis_url = two_gateways
    statuses = []
    for i in range(8):
        gw = first if i % 2 else second
        if i % 2:
            statuses.append(_chat(gw, KEYS["budget"]).status_code)
        else:
            with httpx.stream(
                "POST",
                f"{gw}/v1/chat/completions",
                json={"model": "echo", "messages": USER, "stream": True},
                headers={"Authorization": f"Bearer {KEYS['budget']}"},
            ) as response:
                response.read()
                statuses.append(response.status_code)
        time.sleep(0.1)
    # 6e-6 USD a request against 2e-5 USD: four answers fit, then the budget is used up
    assert statuses == [200, 200, 200, 200, 429, 429, 429, 429]
    refused = _chat(first, KEYS["budget"])
    assert refused.json()["error"]["code"] == "insufficient_quota"
    spent = [key for key in redis.Redis.from_url(redis_url).keys("llmops:spend:budget:*")]
    assert len(spent) == 1
    assert float(redis.Redis.from_url(redis_url).get(spent[0])) == pytest.approx(4 * 6e-6)
    gauges = [metric(scrape(gw), "llm_gateway_key_spend_usd", key="budget") for gw in (first, second)]
    assert max(gauges) == pytest.approx(4 * 6e-6)
    assert metric(scrape(first), "llm_gateway_key_budget_usd", key="budget") == pytest.approx(0.00002)


def test_feedback_is_counted_stored_and_found_by_another_process(two_gateways: tuple[str, str, str]) -> None:
    first, second, redis_url = two_gateways
    headers = {"Authorization": f"Bearer {KEYS['team-a']}"}
    answered = _chat(first, KEYS["team-a"])
    request_id = answered.headers["x-request-id"]
    time.sleep(0.5)  # the request index reaches Redis in batches
    response = httpx.post(
        f"{second}/v1/feedback",
        json={"request_id": request_id, "rating": "positive", "comment": "great answer"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "echo" and response.json()["variant"] == "only"
    assert metric(scrape(second), "llm_gateway_feedback_total", model="echo", variant="only", rating="positive") == 1
    client = redis.Redis.from_url(redis_url)
    entries = client.xrange(FEEDBACK_STREAM)
    assert entries[-1][1][b"request_id"].decode() == request_id and entries[-1][1][b"comment"] == b"great answer"
    assert client.hget(TALLY_PREFIX + "echo", "only|positive") == b"1"
    unknown = httpx.post(f"{first}/v1/feedback", json={"request_id": "nope-123", "rating": "negative"}, headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "request_id"
    bad = httpx.post(f"{first}/v1/feedback", json={"request_id": request_id, "rating": "meh"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rating"


def test_redis_stopped_mid_test_fails_open(sim: str, tmp_path: Path) -> None:
    with redis_server() as redis_url, gateway(_config(tmp_path / "config.yaml", sim, redis_url)) as gw:
        assert _chat(gw, KEYS["limited"]).status_code == 200
        redis.Redis.from_url(redis_url).shutdown(nosave=True)
        statuses = [_chat(gw, KEYS["limited"], stream=i % 2 == 0).status_code for i in range(20)]
        assert statuses == [200] * 20  # more than the rpm limit: limits cannot be checked, requests still served
        assert metric(scrape(gw), "llm_gateway_limits_unavailable_total") >= 20


class HungRedis:
    """A TCP server that accepts connections and reads what is sent but never answers (a paused or partitioned
    Redis); counts the sends that reach it (a client waiting for each answer sends one command at a time)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sends = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: Any) -> None:
        with conn:
            while conn.recv(65536):
                with self._lock:
                    self.sends += 1

    def close(self) -> None:
        self._server.close()


def test_a_hung_redis_costs_one_request_its_timeout_not_every_request(sim: str, tmp_path: Path) -> None:
    """Limits fail open while Redis does not answer, and the gateway stops asking it: one request every two seconds
    tries again (and waits for the 0.5 s socket timeout), the others go straight through."""
    hung = HungRedis()
    try:
        config = _config(tmp_path / "config.yaml", sim, f"redis://127.0.0.1:{hung.port}/0")
        with gateway(config) as gw:
            statuses = [_chat(gw, KEYS["limited"]).status_code for _ in range(15)]
            samples = scrape(gw)
    finally:
        hung.close()
    assert statuses == [200] * 15
    assert metric(samples, "llm_gateway_limits_unavailable_total") == 15
    # Without the breaker every request would wait for the 0.5 s socket timeout; with it, one every 2 s does (the
    # echo answers in milliseconds otherwise). Counted by the gateway's own duration histogram.
    requests = metric(samples, "llm_gateway_request_duration_seconds_count", model="echo")
    quick = metric(samples, "llm_gateway_request_duration_seconds_bucket", model="echo", le="0.32")
    assert requests == 15
    assert requests - quick <= 4, f"{requests - quick} of 15 requests waited for the hung Redis"
    assert hung.sends >= 1, "Redis was asked at all"


def test_feedback_body_is_bounded(two_gateways: tuple[str, str, str]) -> None:
    first, _, _ = two_gateways
    headers = {"Authorization": f"Bearer {KEYS['team-a']}", "Content-Type": "application/json"}

    def chunks():  # streamed, no content-length: refused as soon as it passes the limit
        yield b'{"request_id": "r", "rating": "positive", "comment": "'
        for _ in range(200):
            yield b"x" * 1024

    response = httpx.post(f"{first}/v1/feedback", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
