"""Measures what the gateway does in the failure modes of docs/runbook.md ("Failure modes"), on this machine.

    .venv/bin/python bench/failure_modes.py          # about a minute; prints one line per measurement

Everything runs on 127.0.0.1: a simulator, private redis-servers, gateway processes. Not part of the test suite
(the tests in tests/gateway assert the behaviour; this prints the numbers the runbook quotes).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmops.testing.processes import PersistentRedis
from tests.support import free_port, gateway, gateway_config, metric, running, scrape, simulator

SECRET = "sk-bench"
USER = [{"role": "user", "content": "one two three"}]


def _key(**limits: Any) -> dict[str, Any]:
    return {"name": "bench", "sha256": hashlib.sha256(SECRET.encode()).hexdigest(), **limits}


def _model(sim: str, **extra: Any) -> list[dict[str, Any]]:
    deployment = {"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model", **extra}
    return [{"name": "echo", "deployments": [deployment], "pricing": {"input_per_mtok": 1, "output_per_mtok": 1}}]


def _rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _burst(gw: str, count: int) -> tuple[list[int], list[float]]:
    client = openai.AsyncOpenAI(base_url=f"{gw}/v1", api_key=SECRET, max_retries=0, timeout=60)

    async def one() -> tuple[int, float]:
        started = time.monotonic()
        try:
            await client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
            status = 200
        except openai.APIStatusError as error:
            status = error.status_code
        return status, time.monotonic() - started

    try:
        results = await asyncio.gather(*(one() for _ in range(count)))
    finally:
        await client.close()
    return [s for s, _ in results], [d for _, d in results]


def burst(sim: str, work: Path) -> None:
    if time.time() % 60 > 45:
        time.sleep(61 - time.time() % 60)
    with PersistentRedis() as store:
        config = gateway_config(work / "burst.yaml", _model(sim), redis={"url": store.url}, keys=[_key(rpm=30)])
        with gateway(config) as gw:
            started = time.monotonic()
            statuses, durations = asyncio.run(_burst(gw, 400))
            wall = time.monotonic() - started
            unchecked = metric(scrape(gw), "llm_gateway_limits_unavailable_total")
    p99 = statistics.quantiles(durations, n=100)[98]
    print(
        f"burst: 400 concurrent requests, rpm 30: {statuses.count(200)} admitted, {statuses.count(429)} 429, "
        f"{statuses.count(503)} 503, {unchecked:g} unchecked; {wall:.2f} s, p99 {p99 * 1000:.0f} ms"
    )


def outage(sim: str, work: Path) -> None:
    with PersistentRedis() as store:
        config = gateway_config(
            work / "outage.yaml", _model(sim), redis={"url": store.url}, keys=[_key(budget_usd=1.0)]
        )
        with gateway(config) as gw:
            client = openai.OpenAI(base_url=f"{gw}/v1", api_key=SECRET, max_retries=0)
            for _ in range(3):
                client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
            time.sleep(0.3)
            store.stop()
            for _ in range(5):
                client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
            held = metric(scrape(gw), "llm_gateway_uncharged_spend_usd")
            store.start()
            back = time.monotonic()
            while metric(scrape(gw), "llm_gateway_uncharged_spend_usd") > 0:
                client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
                time.sleep(0.1)
            charged = time.monotonic() - back
            time.sleep(0.3)
            here = metric(scrape(gw), "llm_gateway_cost_usd_total", key="bench")
            r = redis.Redis.from_url(store.url)
            there = sum(float(r.get(k) or 0) for k in r.keys("llmops:spend:bench:*"))
    print(
        f"outage: {held * 1e6:.0f} µUSD held in memory during the outage, charged {charged:.1f} s after Redis came "
        f"back; spend in Redis {there * 1e6:.0f} µUSD = gateway's cost {here * 1e6:.0f} µUSD"
    )


def hung_redis(sim: str, work: Path) -> None:
    with PersistentRedis() as store:
        config = gateway_config(work / "hung.yaml", _model(sim), redis={"url": store.url}, keys=[_key(rpm=100_000)])
        with gateway(config) as gw:
            process = store._process
            assert process is not None
            os.kill(process.pid, signal.SIGSTOP)  # Redis hangs: accepts, never answers
            try:
                waits = asyncio.run(_timed(gw, 50))
                time.sleep(2.2)
                later = asyncio.run(_timed(gw, 50))
            finally:
                os.kill(process.pid, signal.SIGCONT)
    print(
        f"hung Redis (SIGSTOP) under 50 concurrent requests: {sum(w >= 0.45 for w in waits)} waited the 0.5 s "
        f"timeout (max {max(waits):.2f} s); 2 s later {sum(w >= 0.45 for w in later)} of 50 (the probe)"
    )
    port = free_port()
    hung = socket.create_server(("127.0.0.1", 0))
    config = gateway_config(
        work / "hung-start.yaml",
        _model(sim),
        redis={"url": f"redis://127.0.0.1:{hung.getsockname()[1]}/0"},
        keys=[_key(rpm=10)],
    )
    started = time.monotonic()
    with gateway(config, port=port):
        ready = time.monotonic() - started
    hung.close()
    print(f"hung Redis at start: the gateway was ready after {ready:.1f} s (three 0.5 s probes)")


async def _timed(gw: str, count: int) -> list[float]:
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {SECRET}"}) as client:

        async def one() -> float:
            started = time.monotonic()
            await client.post(f"{gw}/v1/chat/completions", json={"model": "echo", "messages": USER})
            return time.monotonic() - started

        return list(await asyncio.gather(*(one() for _ in range(count))))


def huge_header(sim: str, work: Path) -> None:
    config = gateway_config(work / "header.yaml", _model(sim))
    with gateway(config) as gw:
        probes: list[float] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                started = time.monotonic()
                httpx.get(f"{gw}/health", timeout=30)
                probes.append(time.monotonic() - started)
                time.sleep(0.01)

        prober = threading.Thread(target=probe)
        prober.start()
        host, port = gw.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)))
        sent = 0

        def send() -> None:
            nonlocal sent
            try:
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Big: ")
                for _ in range(1024):
                    sock.sendall(b"a" * 65536)
                    sent += 65536
            except OSError:
                pass

        started = time.monotonic()
        sender = threading.Thread(target=send)
        sender.start()
        status = sock.recv(64).split(b" ")[1].decode()
        answered = time.monotonic() - started
        sender.join(10)
        sock.close()
        time.sleep(0.2)
        stop.set()
        prober.join()
    print(
        f"64 MiB header: {status} after {answered * 1000:.0f} ms, closed after {sent / 2**20:.1f} MiB sent; health "
        f"probes meanwhile: median {statistics.median(probes) * 1000:.1f} ms, max {max(probes) * 1000:.1f} ms"
    )


def stalled_clients(work: Path) -> None:
    args = ("--ttft-ms", "0", "--tokens-per-second", "0", "--max-model-len", "100000", "--kv-cache-tokens", "1000000")
    with simulator(*args) as sim:
        config = gateway_config(
            work / "stall.yaml",
            _model(sim, timeouts={"total": 5.0}),
            server={"client_stall_seconds": 2.0},
            routing={"failure_threshold": 1},
        )
        port = free_port()
        run = ["gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        gw = f"http://127.0.0.1:{port}"
        body = (
            b'{"model": "echo", "messages": [{"role": "user", "content": "go"}], "stream": true, "max_tokens": 60000}'
        )
        with running(run, f"{gw}/ready") as process:
            before = _rss_mib(process.pid)
            clients = []
            for _ in range(4):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                sock.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body) + body
                )
                clients.append(sock)
            started = time.monotonic()
            peak = before
            while metric(scrape(gw), "llm_gateway_requests_in_flight") > 0 and time.monotonic() - started < 30:
                peak = max(peak, _rss_mib(process.pid))
                time.sleep(0.1)
            cut = time.monotonic() - started
            time.sleep(0.5)
            after = _rss_mib(process.pid)
            samples = scrape(gw)
            for sock in clients:
                sock.close()
    print(
        f"4 clients not reading 1.8 MB streams: all cut after {cut:.1f} s (client_stall_seconds 2, timeouts.total "
        f"5), {metric(samples, 'llm_gateway_client_stalls_total'):g} counted 499 client_stalled, "
        f"{metric(samples, 'llm_gateway_upstream_errors_total'):g} upstream errors, deployment healthy "
        f"{metric(samples, 'llm_gateway_deployment_healthy'):g}; RSS {before:.0f} -> peak {peak:.0f} -> {after:.0f} MiB"
    )


def shutdown(work: Path) -> None:
    with simulator("--ttft-ms", "0", "--tokens-per-second", "5", "--output-tokens", "200") as sim:
        config = gateway_config(work / "drain.yaml", _model(sim), server={"drain_seconds": 1.0})
        port = free_port()
        run = ["gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        gw = f"http://127.0.0.1:{port}"
        with running(run, f"{gw}/ready") as process:

            def stream() -> None:
                body = {"model": "echo", "messages": USER, "stream": True}
                with httpx.stream("POST", f"{gw}/v1/chat/completions", json=body, timeout=60) as response:
                    response.read()

            thread = threading.Thread(target=stream)
            thread.start()
            time.sleep(0.5)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            stopped = time.monotonic() - started
            thread.join(10)
    print(f"SIGTERM with a 40 s stream running, drain_seconds 1: the gateway exited after {stopped:.1f} s")


def estimate_bias(sim: str) -> None:
    from gateway.usage_estimate import estimate_prompt_tokens

    prompts = {
        "short English": "one two three",
        "English paragraph": "The gateway relays every request to the deployment that serves its model, measures "
        "the latency, the tokens and the cost, and copies a share of the traffic to the monitors.",
        "Korean": "게이트웨이는 모든 요청을 해당 모델을 제공하는 배포로 전달하고 지연 시간과 토큰과 비용을 측정합니다.",
    }
    parts = []
    for name, text in prompts.items():
        messages = [{"role": "user", "content": text}]
        real = httpx.post(f"{sim}/tokenize", json={"messages": messages}).json()["count"]
        parts.append(f"{name}: rule {estimate_prompt_tokens({'messages': messages})}, host {real}")
    print("prompt estimate of a cut stream (the simulator's toy tokenizer): " + "; ".join(parts))


def main() -> None:
    """``failure_modes.py [NAME ...]``: the measurements named (all by default)."""
    wanted = set(sys.argv[1:])
    with (
        tempfile.TemporaryDirectory() as tmp,
        simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model") as sim,
    ):
        work = Path(tmp)
        steps = {
            "burst": lambda: burst(sim, work),
            "outage": lambda: outage(sim, work),
            "hung_redis": lambda: hung_redis(sim, work),
            "huge_header": lambda: huge_header(sim, work),
            "estimate_bias": lambda: estimate_bias(sim),
            "stalled_clients": lambda: stalled_clients(work),
            "shutdown": lambda: shutdown(work),
        }
        for name, step in steps.items():
            if not wanted or name in wanted:
                step()
    machine = subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    print(f"(on {os.cpu_count()} CPUs, {machine})")


if __name__ == "__main__":
    main()
