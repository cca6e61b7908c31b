"""Shutdown is bounded: on SIGTERM running requests get ``server.drain_seconds``; streams still running then end
with an error event, requests still waiting for their upstream get 503, all counted; queued samples get
``redis.flush_seconds`` to reach Redis, and those that could not are counted and said."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.gateway.test_gateway_access import HungRedis
from tests.support import free_port, gateway_config, running, simulator

MESSAGES = [{"role": "user", "content": "tell me a long story"}]


def _gateway(config: Path) -> tuple[list[str], str]:
    port = free_port()
    args = ["gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
    return args, f"http://127.0.0.1:{port}"


def test_sigterm_ends_running_requests_cleanly_at_the_drain_deadline(tmp_path: Path) -> None:
    # 200 tokens at 5 a second: 40 s per answer, far past the 1 s drain
    with simulator(
        "--ttft-ms", "0", "--tokens-per-second", "5", "--output-tokens", "200", "--model", "sim-model"
    ) as sim:
        config = gateway_config(
            tmp_path / "config.yaml",
            [{"name": "slow", "deployments": [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}]}],
            server={"drain_seconds": 1.0},
        )
        log = tmp_path / "gateway.log"
        args, gw = _gateway(config)
        results: dict[str, Any] = {}

        def stream() -> None:
            body = {"model": "slow", "messages": MESSAGES, "stream": True}
            with httpx.stream("POST", f"{gw}/v1/chat/completions", json=body, timeout=30) as response:
                results["stream"] = (response.status_code, response.read())  # raises if the stream is cut dirty

        def unary() -> None:
            response = httpx.post(f"{gw}/v1/chat/completions", json={"model": "slow", "messages": MESSAGES}, timeout=30)
            results["unary"] = (response.status_code, response.json())

        with running(args, f"{gw}/ready", log=log) as process:
            threads = [threading.Thread(target=stream), threading.Thread(target=unary)]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
            stopped = time.monotonic() - started
            for thread in threads:
                thread.join(10)
    text = log.read_text()
    assert stopped < 4.0, f"shutdown took {stopped:.1f} s with drain_seconds 1\n{text}"
    status, body = results["stream"]
    assert status == 200 and b"server_shutting_down" in body.rsplit(b"data: ", 1)[-1], body[-500:]
    status, error = results["unary"]
    assert status == 503 and error["error"]["code"] == "server_shutting_down"
    assert "shutdown deadline passed: ending 2 requests still running" in text, text
    assert "Traceback" not in text, text


def test_samples_that_cannot_be_flushed_at_shutdown_are_counted_and_said(tmp_path: Path) -> None:
    hung = HungRedis()
    try:
        with simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model") as sim:
            config = gateway_config(
                tmp_path / "config.yaml",
                [
                    {
                        "name": "echo",
                        "deployments": [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}],
                        "sampling": {"rate": 1.0},
                    }
                ],
                redis={"url": f"redis://127.0.0.1:{hung.port}/0", "flush_seconds": 0.5},
            )
            log = tmp_path / "gateway.log"
            args, gw = _gateway(config)
            with running(args, f"{gw}/ready", log=log) as process:
                for _ in range(5):
                    response = httpx.post(f"{gw}/v1/chat/completions", json={"model": "echo", "messages": MESSAGES})
                    assert response.status_code == 200
                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=15)
                stopped = time.monotonic() - started
    finally:
        hung.close()
    text = log.read_text()
    assert "shutdown: 5 traffic samples could not be written to Redis within 0.5 s and are dropped" in text, text
    assert stopped < 4.0, text
