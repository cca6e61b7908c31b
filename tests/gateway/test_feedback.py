"""Feedback belongs to the key that made the request: other keys cannot rate it, one rating counts per request and
key (a later one replaces it), and the endpoint is rate-limited per key."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from llmops.contract import FEEDBACK_STREAM, FEEDBACK_TALLY_PREFIX
from tests.support import gateway, gateway_config, metric, redis_server, scrape, simulator

KEYS = {"owner": "sk-owner-secret", "other": "sk-other-secret", "spammer": "sk-spammer-secret"}


def _headers(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with (
        simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model") as sim,
        redis_server() as redis_url,
    ):
        config = gateway_config(
            tmp_path_factory.mktemp("feedback") / "config.yaml",
            [
                {
                    "name": "echo",
                    "deployments": [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}],
                    "variants": [{"name": "only", "deployments": ["sim"]}],
                }
            ],
            redis={"url": redis_url},
            keys=[
                {"name": name, "sha256": hashlib.sha256(secret.encode()).hexdigest()} for name, secret in KEYS.items()
            ],
            feedback={"rpm": 5},
        )
        with gateway(config) as url:
            yield url, redis_url


def _answer(gw: str, key: str) -> str:
    response = httpx.post(
        f"{gw}/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        headers=_headers(key),
    )
    assert response.status_code == 200
    time.sleep(0.3)  # the request index reaches Redis in batches
    return response.headers["x-request-id"]


def _rate(gw: str, key: str, request_id: str, rating: str) -> httpx.Response:
    return httpx.post(
        f"{gw}/v1/feedback", json={"request_id": request_id, "rating": rating}, headers=_headers(key), timeout=10
    )


def test_only_the_requests_key_may_rate_it_once(gw: tuple[str, str]) -> None:
    url, redis_url = gw
    request_id = _answer(url, "owner")
    stranger = _rate(url, "other", request_id, "negative")
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "request_not_found"
    first = _rate(url, "owner", request_id, "positive")
    assert first.status_code == 200 and first.json()["status"] == "recorded"
    again = _rate(url, "owner", request_id, "positive")
    assert again.status_code == 200 and again.json()["status"] == "unchanged"
    changed = _rate(url, "owner", request_id, "negative")
    assert changed.json()["status"] == "replaced" and changed.json()["replaced"] == "positive"
    client = redis.Redis.from_url(redis_url)
    tally = {k.decode(): int(v) for k, v in client.hgetall(FEEDBACK_TALLY_PREFIX + "echo").items()}
    assert tally == {"only|positive": 0, "only|negative": 1}  # one rating per request and key: the last one
    entries = [f for _, f in client.xrange(FEEDBACK_STREAM) if f[b"request_id"] == request_id.encode()]
    assert len(entries) == 1 and entries[0][b"key"] == b"owner"
    samples = scrape(url)
    assert metric(samples, "llm_gateway_feedback_total", model="echo", rating="positive") == 1
    assert metric(samples, "llm_gateway_feedback_total", model="echo", rating="negative") == 1


def test_feedback_is_rate_limited_per_key(gw: tuple[str, str]) -> None:
    url, _ = gw
    if time.time() % 60 > 50:  # fixed one-minute windows
        time.sleep(61 - time.time() % 60)
    request_id = _answer(url, "spammer")
    statuses = [_rate(url, "spammer", request_id, "positive" if i % 2 else "negative").status_code for i in range(8)]
    assert statuses == [200] * 5 + [429] * 3
    assert _rate(url, "spammer", "unknown-request-id", "positive").status_code == 429  # 404s count as well
    assert _rate(url, "owner", _answer(url, "owner"), "positive").status_code == 200  # other keys are not limited
