"""What the gateway lets out of its upstreams and keeps about its requests: an upstream's 5xx message stays out of
the client's 502 unless configured (the log keeps it), and the request index's Redis keys live for its TTL."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from gateway.request_index import INDEX_PREFIX
from tests.support import ScriptedUpstream, gateway, gateway_config, redis_server, simulator

SECRET_MESSAGE = "connection to postgres://admin:hunter2@10.0.0.5:5432/models failed"


@pytest.mark.parametrize("expose", [False, True])
def test_an_upstream_5xx_message_reaches_the_client_only_when_configured(tmp_path: Path, expose: bool) -> None:
    with ScriptedUpstream() as upstream:
        upstream.reply = (
            500,
            {"Content-Type": "application/json"},
            orjson.dumps({"error": {"message": SECRET_MESSAGE}}),
        )
        config = gateway_config(
            tmp_path / "config.yaml",
            [{"name": "m", "deployments": [{"name": "internal-vllm", "base_url": upstream.url, "model": "m"}]}],
            routing={"max_attempts": 1},
            server={"upstream_error_messages": expose},
        )
        log = tmp_path / "gateway.log"
        with gateway(config, log=log) as gw:
            response = httpx.post(
                f"{gw}/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]}
            )
            time.sleep(0.2)
    error = response.json()["error"]
    assert response.status_code == 502 and error["code"] == "upstream_http_error"
    assert "'internal-vllm'" in error["message"] and "HTTP 500" in error["message"]
    if expose:
        assert SECRET_MESSAGE in error["message"]
    else:
        assert "hunter2" not in response.text and "10.0.0.5" not in response.text
        assert response.headers["x-request-id"] in error["message"]
    assert SECRET_MESSAGE in log.read_text()  # the operator still reads it


def test_the_request_index_lives_for_its_configured_ttl(tmp_path: Path) -> None:
    with (
        simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model") as sim,
        redis_server() as redis_url,
    ):
        config = gateway_config(
            tmp_path / "config.yaml",
            [{"name": "echo", "deployments": [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}]}],
            redis={"url": redis_url, "request_index_ttl_seconds": 600},
        )
        with gateway(config) as gw:
            response = httpx.post(
                f"{gw}/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "x"}]}
            )
            key = INDEX_PREFIX + response.headers["x-request-id"]
            client = redis.Redis.from_url(redis_url)
            deadline = time.monotonic() + 5
            while not client.exists(key) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert 590 <= client.ttl(key) <= 600
