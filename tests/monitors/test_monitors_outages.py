"""The monitors through outages of their dependencies: a worker whose Redis is unreachable stays up and says so in
one line per try (no traceback) until it can consume; ``llmops monitors show`` names the Redis it could not reach;
the judge model's HTTP calls stay out of the INFO log."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import redis
import yaml

from llmops.contract import SAMPLES_STREAM
from llmops.testing.processes import PersistentRedis
from tests.support import REPO, free_port, running, serve_post, wait_for


def _config(path: Path, redis_url: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {"name": "m", "deployments": [{"name": "d", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]}
                ],
                "redis": {"url": redis_url},
                "monitors": {"judges": ["rules"], "drift": {"enabled": False}},
            }
        )
    )
    return path


def test_a_worker_waits_for_redis_and_stays_up(tmp_path: Path) -> None:
    store = PersistentRedis()  # its port is chosen, nothing listens there yet
    port = free_port()
    log = tmp_path / "monitors.log"
    args = ["monitors", "--config", str(_config(tmp_path / "c.yaml", store.url)), "--metrics-port", str(port)]
    try:
        with running(args, f"http://127.0.0.1:{port}/health", log=log) as process:
            time.sleep(3.5)  # tries at 0, 1 and 3 s: backoff
            assert process.poll() is None, log.read_text()
            assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
            text = log.read_text()
            tries = [line for line in text.splitlines() if f"cannot reach Redis at 127.0.0.1:{store.port}/0" in line]
            assert 2 <= len(tries) <= 4, text
            assert "Traceback" not in text
            store.start()
            client = redis.Redis.from_url(store.url)
            wait_for(lambda: client.exists(SAMPLES_STREAM) and client.xinfo_groups(SAMPLES_STREAM), timeout=15)
            assert process.poll() is None
    finally:
        store.__exit__(None, None, None)


def test_show_names_the_redis_it_could_not_reach(tmp_path: Path) -> None:
    closed = free_port()
    config = _config(tmp_path / "c.yaml", f"redis://:hunter2@127.0.0.1:{closed}/3")
    run = subprocess.run(
        [sys.executable, "-m", "llmops.cli", "monitors", "show", "some-request", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert f"cannot reach Redis at 127.0.0.1:{closed}/3 (redis.url of {config})" in lines[0]
    assert "hunter2" not in run.stderr and "Traceback" not in run.stderr


async def test_judge_calls_stay_out_of_the_info_log() -> None:
    from aiohttp import web

    from monitors.server import quiet_http_client_logs

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "8"}, "finish_reason": "stop"}],
            }
        )

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        async with serve_post("/v1/chat/completions", answer) as base:
            client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "rate"}])
            loud = [r.name for r in records if "HTTP Request" in r.getMessage()]
            assert loud, "the SDK no longer logs its calls at INFO: HTTP_CLIENT_LOGGERS may be stale"
            records.clear()
            quiet_http_client_logs()
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "rate"}])
            await client.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    assert [r.getMessage() for r in records if "HTTP Request" in r.getMessage()] == [], loud
