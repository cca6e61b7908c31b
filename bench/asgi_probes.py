#!/usr/bin/env python3
"""Which of the gateway's HTTP-server behaviours each ASGI server of ``asgi_servers.py`` keeps: scripted probes
against a gateway served by each (``asgi_servers.py _serve``), the same config, two ``llmops simulate`` upstreams.
Not part of the test suite; the behaviours are the ones tests/gateway checks against uvicorn (test_http_limits,
test_slow_clients, test_shutdown, test_gateway_errors' client disconnect).

    .venv/bin/python bench/asgi_probes.py                        # uvicorn and granian, ~1 min
    .venv/bin/python bench/asgi_probes.py --servers uvicorn,granian,hypercorn --json /tmp/probes.json

Each probe prints ok / FAIL with what it saw. Everything on 127.0.0.1; every probe bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from asgi_servers import ENTRY, SERVERS
from overhead.load import REPO
from overhead.processes import llmops_cmd, stop_process, wait_for
from prometheus_client.parser import text_string_to_metric_families

from llmops.testing.http_probes import closed_by_server, connect, response_status, send_huge_header

SERVER = {
    "max_body_bytes": 2048,
    "max_header_bytes": 16384,
    "max_headers": 50,
    "header_timeout_seconds": 1.0,
    "keep_alive_seconds": 1.0,
    "max_connections": 20,
    "client_stall_seconds": 3.0,
    "client_buffer_bytes": 16384,
    "drain_seconds": 2.0,
}
USER = [{"role": "user", "content": "tell me a long story"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(
    cmd: list[str], ready: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        if not wait_for(ready, 30, proc):
            raise RuntimeError(f"{cmd[:4]} did not come up: {log.read_text()[-1000:]}")
        yield proc
    finally:
        stop_process(proc, grace=15)


def simulate(port: int, log: Path, *flags: str) -> Any:
    cmd = [*llmops_cmd(), "simulate", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *flags]
    return process(cmd, f"http://127.0.0.1:{port}/health", log)


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, x) in ls for k, x in labels.items()))


# ---- the probes: each returns (kept, what was seen) ----------------------------------------------------------------
def p_streaming(gw: str) -> tuple[bool, str]:
    """SSE events reach the client as they come (the first long before the last), ending with [DONE]."""
    body = {"model": "slow", "messages": USER, "stream": True, "max_tokens": 10}  # 5 tokens/s: ~2 s
    t0 = time.monotonic()
    first = None
    data = b""
    with httpx.stream("POST", f"{gw}/v1/chat/completions", json=body, timeout=10) as r:
        for chunk in r.iter_raw():
            if first is None:
                first = time.monotonic() - t0
            data += chunk
        total = time.monotonic() - t0
    ok = r.status_code == 200 and first is not None and first < total / 3 and b"data: [DONE]" in data
    return ok, f"HTTP {r.status_code}, first bytes at {first or 0:.2f} s of {total:.2f} s"


def p_disconnect(gw: str, slow: str) -> tuple[bool, str]:
    """A client that goes away mid-stream: 499 recorded, in-flight freed, the upstream's generation cancelled."""
    before = scrape(gw)
    body = {"model": "slow", "messages": USER, "stream": True, "max_tokens": 400}
    with httpx.stream("POST", f"{gw}/v1/chat/completions", json=body, timeout=10) as r:
        next(r.iter_raw())
    deadline = time.monotonic() + 5
    after = before
    while time.monotonic() < deadline:
        after = scrape(gw)
        if metric(after, "llm_gateway_requests_total", model="slow", status="499") > metric(
            before, "llm_gateway_requests_total", model="slow", status="499"
        ):
            break
        time.sleep(0.05)
    d499 = metric(after, "llm_gateway_requests_total", model="slow", status="499") - metric(
        before, "llm_gateway_requests_total", model="slow", status="499"
    )
    in_flight = metric(after, "llm_gateway_requests_in_flight", model="slow")
    running = 1.0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        running = metric(scrape(slow), "vllm:num_requests_running")
        if running == 0:
            break
        time.sleep(0.05)
    ok = d499 == 1 and in_flight == 0 and running == 0
    return ok, f"499 +{d499:g}, in flight {in_flight:g}, upstream still generating {running:g}"


def p_body_limit(gw: str) -> tuple[bool, str]:
    """A body over max_body_bytes gets 413: declared (content-length) and chunked."""
    big = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "x" * 8000}]}).encode()
    declared = httpx.post(f"{gw}/v1/chat/completions", content=big, timeout=10).status_code

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    chunked = httpx.post(f"{gw}/v1/chat/completions", content=chunks(), timeout=10).status_code
    return declared == 413 and chunked == 413, f"declared {declared}, chunked {chunked}"


def p_huge_header(gw: str) -> tuple[bool, str]:
    """A 64 MiB header: 431 within 1 s, < 8 MiB taken, other clients unaffected (health p100 < 0.5 s)."""
    seen = send_huge_header(gw)
    worst = seen.worst_health_seconds
    ok = seen.status == 431 and seen.answered_seconds < 1.0 and seen.sent_bytes < 8 * 1024 * 1024 and worst < 0.5
    return ok, (
        f"status {seen.status} after {seen.answered_seconds:.2f} s, {seen.sent_bytes / 1048576:.1f} MiB taken, "
        f"health up to {worst:.2f} s"
    )


def p_many_headers(gw: str) -> tuple[bool, str]:
    """More than max_headers (50) headers: 431, connection closed."""
    sock = connect(gw)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(60)) + b"\r\n")
    status = response_status(sock)
    gone = closed_by_server(sock)
    sock.close()
    return status == 431 and gone, f"status {status}, closed {gone}"


def p_slow_headers(gw: str) -> tuple[bool, str]:
    """Headers trickling in past header_timeout_seconds (1 s): 408 within 1.6 s."""
    sock = connect(gw)
    t0 = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n")
    for _ in range(20):
        if select.select([sock], [], [], 0.3)[0]:
            break
        try:
            sock.sendall(b"X-Slow: 1\r\n")
        except OSError:
            break
    status = response_status(sock)
    took = time.monotonic() - t0
    sock.close()
    return status == 408 and took < 1.6, f"status {status} after {took:.2f} s"


def p_idle(gw: str) -> tuple[bool, str]:
    """A silent connection and an idle kept-alive one are closed (keep_alive_seconds 1, header timeout 1) < 3 s."""
    silent = connect(gw, timeout=5)
    kept = connect(gw, timeout=5)
    kept.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
    first = response_status(kept)
    t0 = time.monotonic()
    a, b = closed_by_server(silent), closed_by_server(kept)
    took = time.monotonic() - t0
    silent.close()
    kept.close()
    return first == 200 and a and b and took < 3, f"silent closed {a}, idle closed {b}, after {took:.2f} s"


def p_conn_limit(gw: str) -> tuple[bool, str]:
    """Past max_connections (20) open connections a request gets 503."""
    held = [connect(gw) for _ in range(SERVER["max_connections"])]
    try:
        time.sleep(0.2)
        extra = connect(gw, timeout=3)
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
        status = response_status(extra)
        extra.close()
    finally:
        for s in held:
            s.close()
    return status == 503, f"status {status}"


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and its children (granian-cli's worker), in MB."""
    total = 0
    for p in [pid, *(int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
        with contextlib.suppress(OSError), open(f"/proc/{p}/status") as f:
            total += sum(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return total / 1024


def p_stall(gw: str, proc: subprocess.Popen[bytes]) -> tuple[bool, str]:
    """Clients that stop reading a big stream (60,000 tokens, ~13 MB of events each): cut after
    client_stall_seconds (3 s), counted 499 client_stalled; the server's memory stays bounded."""
    body = json.dumps({"model": "big", "messages": [{"role": "user", "content": "go"}], "stream": True,
                       "max_tokens": 60000}).encode()  # fmt: skip
    before = scrape(gw)
    rss0 = rss_mb(proc.pid)
    peak = rss0
    socks = []
    for _ in range(2):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", int(gw.rsplit(":", 1)[1])))
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        socks.append(s)
    t0 = time.monotonic()
    try:
        after = before
        while time.monotonic() < t0 + 2 and metric(after, "llm_gateway_requests_total", model="big") == metric(
            before, "llm_gateway_requests_total", model="big"
        ):
            if metric(after, "llm_gateway_requests_in_flight", model="big") == 2:
                break
            time.sleep(0.05)
            after = scrape(gw)
        while time.monotonic() < t0 + 10 and metric(after, "llm_gateway_requests_in_flight", model="big") > 0:
            time.sleep(0.25)
            after = scrape(gw)
            peak = max(peak, rss_mb(proc.pid))
        peak = max(peak, rss_mb(proc.pid))
        took = time.monotonic() - t0
    finally:
        for s in socks:
            s.close()

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    stalls = delta("llm_gateway_client_stalls_total", model="big")
    d499 = delta("llm_gateway_requests_total", model="big", status="499")
    in_flight = metric(after, "llm_gateway_requests_in_flight", model="big")
    d200 = delta("llm_gateway_requests_total", model="big", status="200")
    ok = stalls == 2 and d499 == 2 and in_flight == 0
    seen = f"after {took:.1f} s: stalls +{stalls:g}, 499 +{d499:g}, 200 +{d200:g}, in flight {in_flight:g}"
    return ok, seen + f"; server RSS {rss0:.0f} -> {peak:.0f} MB"


def p_drain(gw: str, proc: subprocess.Popen[bytes], log: Path) -> tuple[bool, str]:
    """SIGTERM (drain_seconds 2): new connections refused, a stream that ends within the drain completes, a long
    stream ends with a server_shutting_down event, a long unary request gets 503, the process exits < 5 s."""
    results: dict[str, Any] = {}

    def stream(name: str, tokens: int) -> None:
        body = {"model": "slow", "messages": USER, "stream": True, "max_tokens": tokens}
        try:
            with httpx.stream("POST", f"{gw}/v1/chat/completions", json=body, timeout=30) as r:
                results[name] = (r.status_code, r.read())
        except httpx.HTTPError as e:
            results[name] = (0, repr(e).encode())

    def unary() -> None:
        try:
            r = httpx.post(f"{gw}/v1/chat/completions", json={"model": "slow", "messages": USER}, timeout=30)
            results["unary"] = (r.status_code, r.content)
        except httpx.HTTPError as e:
            results["unary"] = (0, repr(e).encode())

    threads = [
        threading.Thread(target=stream, args=("short", 8)),  # ~1.6 s at 5 tokens/s
        threading.Thread(target=stream, args=("long", 200)),  # 40 s
        threading.Thread(target=unary),  # the simulator's default output: 40 s
    ]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    try:
        late = httpx.get(f"{gw}/health", timeout=2).status_code
        refused = f"answered {late}"
    except httpx.HTTPError as e:
        refused = f"refused ({type(e).__name__})"
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    stopped = time.monotonic() - t0
    for t in threads:
        t.join(10)
    text = log.read_text(errors="replace")
    short = results.get("short", (0, b""))
    long_ = results.get("long", (0, b""))
    unary_ = results.get("unary", (0, b""))
    checks = {
        "refused new": refused.startswith("refused") or "503" in refused,
        "short done": short[0] == 200 and b"data: [DONE]" in short[1],
        "long cut": long_[0] == 200 and b"server_shutting_down" in long_[1].rsplit(b"data: ", 1)[-1],
        "unary 503": unary_[0] == 503 and b"server_shutting_down" in unary_[1],
        "exit < 5 s": proc.poll() is not None and stopped < 5,
        "no traceback": "Traceback" not in text,
    }
    seen = (
        f"new request {refused}; short {short[0]} {short[1][-30:]!r}; long {long_[0]} {long_[1][-60:]!r}; "
        f"unary {unary_[0]} {unary_[1][:80]!r}; exit after {stopped:.1f} s (rc {proc.poll()})"
    )
    failed = [k for k, v in checks.items() if not v]
    return not failed, ("failed: " + ", ".join(failed) + "; " if failed else "") + seen


PROBES: dict[str, Callable[..., tuple[bool, str]]] = {
    "streaming (events as they come)": p_streaming,
    "client disconnect: 499 + upstream cancelled": p_disconnect,
    "body over max_body_bytes: 413": p_body_limit,
    "64 MiB header: 431 fast, others unaffected": p_huge_header,
    "too many headers: 431": p_many_headers,
    "slow headers: 408": p_slow_headers,
    "idle / silent connections closed": p_idle,
    "connections past max_connections: 503": p_conn_limit,
    "client not reading: cut, 499 client_stalled": p_stall,
    "SIGTERM: drain, cut at the deadline, exit": p_drain,
}


def run_server(server: str, tmp: Path, fast: str, slow: str, only: str = "") -> dict[str, tuple[bool, str]]:
    import yaml

    config = tmp / f"{server}.yaml"
    models = [
        {"name": "fast", "deployments": [{"name": "fast", "base_url": f"{fast}/v1", "model": "sim-model"}]},
        {"name": "big", "deployments": [{"name": "fast", "base_url": f"{fast}/v1", "model": "sim-model"}]},
        {"name": "slow", "deployments": [{"name": "slow", "base_url": f"{slow}/v1", "model": "sim-model"}]},
    ]
    config.write_text(yaml.safe_dump({"models": models, "server": SERVER}, sort_keys=False))
    port = free_port()
    gw = f"http://127.0.0.1:{port}"
    log = tmp / f"{server}.log"
    cmd = [sys.executable, str(ENTRY), "_serve", "--server", server, "--config", str(config), "--port", str(port)]
    cmd += ["--log-level", "info"]
    out: dict[str, tuple[bool, str]] = {}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    with process(cmd, f"{gw}/ready", log, env) as proc:  # this checkout's gateway
        for name, probe in PROBES.items():
            if only not in name:
                continue
            args: list[Any] = [gw]
            if probe is p_disconnect:
                args.append(slow)
            elif probe is p_stall:
                args.append(proc)
            elif probe is p_drain:
                args += [proc, log]
            try:
                out[name] = probe(*args)
            except Exception as e:  # a probe that broke is a behaviour not kept, with why
                out[name] = (False, f"probe error: {e!r}")
            if probe is not p_drain and proc.poll() is not None:
                out[name] = (False, out[name][1] + f"; the server exited (rc {proc.returncode})")
                break
            time.sleep(0.3)
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="uvicorn,granian", help=f"comma-separated, of {', '.join(SERVERS)}")
    ap.add_argument("--only", default="", help="only the probes whose name contains this")
    ap.add_argument("--json", metavar="OUT")
    a = ap.parse_args(argv)
    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    if unknown := set(servers) - set(SERVERS):
        ap.error(f"unknown servers: {unknown}")
    import tempfile

    results: dict[str, dict[str, tuple[bool, str]]] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asgi-probes-")))
        fp, sp = free_port(), free_port()
        fast_flags = ["--ttft-ms", "0", "--tokens-per-second", "0", "--max-model-len", "100000"]
        fast_flags += ["--kv-cache-tokens", "1000000", "--model", "sim-model"]
        stack.enter_context(simulate(fp, tmp / "fast.log", *fast_flags))
        slow_flags = ["--ttft-ms", "0", "--tokens-per-second", "5", "--output-tokens", "200", "--model", "sim-model"]
        stack.enter_context(simulate(sp, tmp / "slow.log", *slow_flags))
        for server in servers:
            print(f"== {server}", flush=True)
            results[server] = run_server(server, tmp, f"http://127.0.0.1:{fp}", f"http://127.0.0.1:{sp}", a.only)
            for name, (ok, seen) in results[server].items():
                print(f"  {'ok  ' if ok else 'FAIL'} {name}: {seen}", flush=True)
    print()
    width = max(len(n) for n in PROBES)
    print(f"{'behaviour':<{width}}  " + "  ".join(f"{s:<12}" for s in servers))
    for name in PROBES:
        cells = []
        for s in servers:
            r = results[s].get(name)
            cells.append("-" if r is None else ("kept" if r[0] else "LOST"))
        print(f"{name:<{width}}  " + "  ".join(f"{c:<12}" for c in cells))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
