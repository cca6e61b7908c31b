"""Outages of the gateway's dependencies, said in one line: an upstream that refuses connections is named in the log
(rate-limited), and a hung Redis is asked by one request at a time while its state is unknown."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import httpx

from tests.gateway.test_gateway_access import HungRedis
from tests.support import free_port, gateway, gateway_config, metric, scrape, simulator


def test_an_upstream_refusing_connections_is_logged_with_its_name(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens here
    config = gateway_config(
        tmp_path / "config.yaml",
        [
            {
                "name": "echo",
                "deployments": [{"name": "refusing-vllm", "base_url": f"http://127.0.0.1:{closed}/v1", "model": "m"}],
            }
        ],
        routing={"max_attempts": 1},
    )
    log = tmp_path / "gateway.log"
    with gateway(config, log=log) as gw:
        statuses = [
            httpx.post(
                f"{gw}/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "x"}]}
            )
            for _ in range(10)
        ]
        time.sleep(0.2)
        lines = [line for line in log.read_text().splitlines() if "upstream deployment refusing-vllm" in line]
    assert {r.status_code for r in statuses} == {502}
    assert len(lines) == 1, lines  # ten refusals, one line: said at most once per 10 s per deployment and reason
    assert f"127.0.0.1:{closed}" in lines[0] and "Could not connect" in lines[0] and "WARNING" in lines[0]


def test_while_redis_state_is_unknown_one_request_probes_it(tmp_path: Path) -> None:
    """Redis hangs from the start: the gateway learns it before serving, and when it is time to try again, one of
    twenty concurrent requests waits for the probe's timeout; the other nineteen pass at once."""
    hung = HungRedis()
    try:
        with simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model") as sim:
            config = gateway_config(
                tmp_path / "config.yaml",
                [{"name": "echo", "deployments": [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}]}],
                redis={"url": f"redis://127.0.0.1:{hung.port}/0", "limits_retry_seconds": 1.0},
                keys=[{"name": "k", "sha256": hashlib.sha256(b"sk-k").hexdigest(), "rpm": 1000}],
            )
            with gateway(config) as gw:
                time.sleep(1.2)  # past limits_retry_seconds: Redis's state is unknown again
                durations = asyncio.run(_concurrent(gw, 20))
                samples = scrape(gw)
    finally:
        hung.close()
    slow = [d for d in durations if d >= 0.45]
    assert len(slow) == 1, sorted(durations)
    assert metric(samples, "llm_gateway_limits_unavailable_total") == 20


async def _concurrent(gw: str, count: int) -> list[float]:
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": "Bearer sk-k"}) as client:

        async def one() -> float:
            started = time.monotonic()
            response = await client.post(
                f"{gw}/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "x"}]}
            )
            assert response.status_code == 200
            return time.monotonic() - started

        return list(await asyncio.gather(*(one() for _ in range(count))))
