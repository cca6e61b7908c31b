"""Limits under load and through outages: a burst of concurrent requests never exhausts the gateway's Redis pool into
failing open, and spend during a Redis outage is charged when Redis is back."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from llmops.testing.processes import PersistentRedis
from tests.support import gateway, gateway_config, metric, redis_server, scrape, simulator, wait_for

SECRET = "sk-burst-secret"
USER = [{"role": "user", "content": "one two three"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model") as url:
        yield url


def _config(path: Path, sim: str, redis_url: str, rpm: int | None = None, budget: float | None = None) -> Path:
    return gateway_config(
        path,
        [
            {
                "name": "echo",
                "deployments": [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}],
                "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 1.0},
            }
        ],
        redis={"url": redis_url},
        keys=[
            {
                "name": "burst",
                "sha256": hashlib.sha256(SECRET.encode()).hexdigest(),
                **({"rpm": rpm} if rpm else {}),
                **({"budget_usd": budget, "budget_period": "day"} if budget else {}),
            }
        ],
    )


async def _burst(gw: str, count: int) -> list[int]:
    client = openai.AsyncOpenAI(base_url=f"{gw}/v1", api_key=SECRET, max_retries=0, timeout=60)

    async def one() -> int:
        try:
            await client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
            return 200
        except openai.APIStatusError as error:
            return error.status_code

    try:
        return list(await asyncio.gather(*(one() for _ in range(count))))
    finally:
        await client.close()


def test_a_burst_gets_no_more_than_the_limit_through_while_redis_is_up(sim: str, tmp_path: Path) -> None:
    if time.time() % 60 > 35:  # fixed one-minute windows: the whole burst inside one
        time.sleep(61 - time.time() % 60)
    with redis_server() as redis_url, gateway(_config(tmp_path / "config.yaml", sim, redis_url, rpm=30)) as gw:
        statuses = asyncio.run(_burst(gw, 400))
        samples = scrape(gw)
    assert statuses.count(200) <= 30, f"{statuses.count(200)} of 400 got through a limit of 30 per minute"
    assert statuses.count(200) == 30 and statuses.count(429) == 370, sorted(set(statuses))
    assert metric(samples, "llm_gateway_limits_unavailable_total") == 0


def _chat(gw: str, stream: bool = False) -> None:
    client = openai.OpenAI(base_url=f"{gw}/v1", api_key=SECRET, max_retries=0)
    if stream:
        for _ in client.chat.completions.create(model="echo", messages=USER, stream=True):  # type: ignore[arg-type]
            pass
    else:
        client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]


def _spent(redis_url: str) -> float:
    import redis

    client = redis.Redis.from_url(redis_url)
    return sum(float(client.get(key) or 0) for key in client.keys("llmops:spend:burst:*"))


def test_spend_during_a_redis_outage_is_charged_when_redis_is_back(sim: str, tmp_path: Path) -> None:
    with (
        PersistentRedis() as redis_server_,
        gateway(_config(tmp_path / "c.yaml", sim, redis_server_.url, budget=1.0)) as gw,
    ):
        for i in range(3):
            _chat(gw, stream=i == 1)
        wait_for(lambda: _spent(redis_server_.url) > 0)
        redis_server_.stop()
        for i in range(5):  # served unchecked (fail open), their spend kept in memory
            _chat(gw, stream=i % 2 == 0)
        assert metric(scrape(gw), "llm_gateway_uncharged_spend_usd") > 0
        redis_server_.start()
        time.sleep(2.2)  # one request tries Redis again every 2 s (redis.limits_retry_seconds)
        _chat(gw)
        samples = wait_for(lambda: (s := scrape(gw)) and metric(s, "llm_gateway_uncharged_spend_usd") == 0 and s)
        spent_here = metric(samples, "llm_gateway_cost_usd_total", key="burst")
        assert spent_here == pytest.approx(9 * 6e-6)  # 3 input + 3 output tokens at 1 USD per million, 9 requests
        wait_for(lambda: _spent(redis_server_.url) == pytest.approx(spent_here))
        assert metric(samples, "llm_gateway_limits_unavailable_total") >= 5
