"""A client that stops reading its stream is the client's problem: cut off after ``server.client_stall_seconds``,
counted as 499 ``client_stalled``, never an upstream timeout, and never against the deployment's health."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import gateway, gateway_config, metric, scrape, simulator, wait_for

BODY = json.dumps(
    {"model": "big", "messages": [{"role": "user", "content": "go"}], "stream": True, "max_tokens": 8000}
).encode()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # a fast upstream with long answers (8,000 tokens: 1.8 MB of events, far more than the buffers hold), a total
    # timeout shorter than the stall bound (it passes while the gateway waits for the client), and a deployment that
    # one failure would put in cooldown
    with simulator(
        "--ttft-ms", "0", "--tokens-per-second", "0", "--max-model-len", "100000", "--kv-cache-tokens", "1000000"
    ) as sim:
        config = gateway_config(
            tmp_path_factory.mktemp("slow") / "config.yaml",
            [
                {
                    "name": "big",
                    "deployments": [
                        {
                            "name": "sim",
                            "base_url": f"{sim}/v1",
                            "model": "sim-model",
                            "timeouts": {"total": 2.0},
                        }
                    ],
                }
            ],
            server={"client_stall_seconds": 3.0, "client_buffer_bytes": 16384},
            routing={"failure_threshold": 1},
        )
        with gateway(config) as url:
            yield url


def _stalled_client(gw: str) -> socket.socket:
    """A client that sends a streamed request, then never reads (its receive buffer kept small)."""
    host, port = gw.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY
    )
    return sock


def test_a_deployment_stays_healthy_while_clients_stall(gw: str, tmp_path: Path) -> None:
    clients = [_stalled_client(gw) for _ in range(4)]
    try:
        time.sleep(0.5)
        assert metric(scrape(gw), "llm_gateway_requests_in_flight", model="big") == 4
        # cut off after client_stall_seconds (3 s), though the upstream's total timeout (2 s) passed before
        samples = wait_for(
            lambda: (s := scrape(gw)) and metric(s, "llm_gateway_requests_in_flight", model="big") == 0 and s,
            timeout=10,
        )
    finally:
        for sock in clients:
            sock.close()
    assert metric(samples, "llm_gateway_requests_total", model="big", status="499") == 4
    assert metric(samples, "llm_gateway_upstream_errors_total", deployment="sim") == 0
    assert metric(samples, "llm_gateway_requests_total", status="504") == 0
    assert metric(samples, "llm_gateway_deployment_healthy", deployment="sim") == 1
    assert metric(samples, "llm_gateway_client_stalls_total", model="big") == 4
    # and the deployment still serves a client that reads
    short = {"model": "big", "messages": [{"role": "user", "content": "go"}], "stream": True, "max_tokens": 500}
    with httpx.stream("POST", f"{gw}/v1/chat/completions", json=short, timeout=30) as response:
        assert response.status_code == 200
        assert b"data: [DONE]" in response.read()
