"""`llmops demo` end to end: real simulator and gateway processes, traffic, and a summary read from /metrics."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmops.demo.promquery import histogram_quantile
from tests.support import REPO, free_port


def run_demo(*args: str) -> str:
    """``llmops demo --once ARGS`` on free ports; its standard output (the run must succeed)."""
    ports = ["--gateway-port", str(free_port()), "--simulator-port", str(free_port())]
    result = subprocess.run(
        [sys.executable, "-m", "llmops.cli", "demo", "--once", *ports, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_demo_runs_and_prints_measured_summary() -> None:
    out = run_demo("--requests", "40", "--concurrency", "8", "--gateway-workers", "2")
    assert "gateway: 2 worker processes on one port" in out
    assert "What the gateway measured" in out
    rows = {m.group(1): m for m in re.finditer(r"│ (llama-3-8b|gpt-4o-mini)\s+│\s+(\d+) │\s+(\d+) │", out)}
    assert set(rows) == {"llama-3-8b", "gpt-4o-mini"}
    assert sum(int(m.group(2)) for m in rows.values()) == 40  # every request counted once, over both workers
    assert "/metrics" in out
    # some traffic goes through the Responses and Messages APIs: the same models, counted alike
    apis = re.search(r"(\d+) succeeded \((\d+) chat completions, (\d+) through the Responses API, (\d+) through", out)
    assert apis is not None, out
    ok, chat, responses, messages = (int(g) for g in apis.groups())
    assert chat + responses + messages == ok and responses > 0 and messages > 0
    assert "What the monitors judged" in out
    judged = re.findall(r"│ (?:llama-3-8b|gpt-4o-mini)\s+│ (\w+)\s+│ (\w+)\s+│\s+(\d+) │\s+([\d.]+) │", out)
    judges = {judge for judge, *_ in judged}
    assert {"rules", "llm_single"} <= judges, out
    single = [float(score) for judge, _, _, score in judged if judge == "llm_single"]
    assert single and all(5 / 9 - 0.001 <= s <= 6 / 9 + 0.001 for s in single)  # scripted [[6]]/[[7]] verdicts
    # the prompts with a reference get scripted answers close to it: the reference judge's scores mean something
    rouge = [float(score) for judge, criterion, _, score in judged if (judge, criterion) == ("reference", "rouge_l")]
    assert rouge and all(0.5 < r < 1.0 for r in rouge), out
    assert "no drift run yet: a model's first drift run comes after 60" in out  # 40 requests: too few, and said so


def test_histogram_quantile_matches_prometheus() -> None:
    buckets = [(0.1, 10.0), (0.2, 30.0), (0.4, 40.0), (float("inf"), 40.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.15)  # rank 20 lies halfway through the (0.1, 0.2] bucket
    assert histogram_quantile(0.25, buckets) == 0.1
    assert histogram_quantile(1.0, buckets) == 0.4
    assert histogram_quantile(0.5, [(float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(1.0, 1.0), (float("inf"), 5.0)]) == 1.0  # rank in +Inf: last finite bound


def test_demo_without_redis_runs_on_the_embedded_stand_in_and_says_so() -> None:
    out = run_demo("--requests", "30", "--redis", "embedded")
    assert "embedded in-process stand-in" in out
    assert "Production always uses a real Redis" in out
    assert re.search(r"│ (llama-3-8b|gpt-4o-mini)\s+│ llm_single\s+│ overall", out), out


def test_ports_picked_once_each() -> None:
    """The demo's parts never share a port, even when the ports asked for collide (judge = simulator + 1)."""
    from llmops.demo.ports import free_port as pick

    taken: set[int] = set()
    base = free_port()
    first = pick(base, taken)
    second = pick(base, taken)  # the same port asked for twice
    third = pick(base + 1, taken)
    assert first == base
    assert len({first, second, third}) == 3
    assert {first, second, third} == taken


def test_a_port_in_time_wait_is_still_the_preferred_one() -> None:
    """A demo stopped a moment ago leaves its ports' connections in TIME_WAIT: the servers can bind them again (they
    set SO_REUSEADDR), so a re-run keeps the documented ports instead of moving to random ones."""
    import socket

    from llmops.demo.ports import free_port as pick

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first: its end of the connection waits in TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    assert pick(port, set()) == port
    with socket.create_server(("127.0.0.1", 0)) as busy:  # a listener does make a port taken
        assert pick(busy.getsockname()[1], set()) != busy.getsockname()[1]


def test_demo_shows_drift_runs() -> None:
    out = run_demo("--requests", "150", "--concurrency", "8")
    assert "Drift: latest window vs reference" in out, out
    assert re.search(r"│ llama-3-8b\s+│\s+\d+ of \d+ │", out), out
    assert "/reports/llama-3-8b" in out


def test_redis_server_mode_without_the_binary_says_what_to_install(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llmops.cli", "demo", "--once", "--redis", "server"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": str(tmp_path)},  # no redis-server on it
    )
    assert result.returncode == 2
    assert "redis-server is not installed (apt-get install redis-server)" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_stops_the_whole_stack() -> None:
    """`llmops demo` (staying up) ended with SIGTERM stops its simulator, judge, gateway, monitors and Redis: its
    children run in their own sessions, so nobody else would."""
    import os
    import signal
    import socket
    import time

    gateway_port, simulator_port = free_port(), free_port()
    ports_asked = ["--gateway-port", str(gateway_port), "--simulator-port", str(simulator_port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "llmops.cli", "demo", "--requests", "10", *ports_asked],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "stays up" in line:
                break
        output = "".join(lines)
        assert "stays up" in output, output
        ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", output)]
        assert gateway_port in ports and simulator_port in ports, output

        def listening(port: int) -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        assert all(listening(port) for port in set(ports))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) is not None
        deadline = time.monotonic() + 10
        while any(listening(port) for port in set(ports)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [port for port in set(ports) if listening(port)], "parts of the demo outlived it"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_auto_redis_needs_a_redis_that_answers_ping() -> None:
    """`--redis auto` uses a Redis on 6379 only if it answers PING without a password, not any listener there."""
    import socket
    import threading

    from llmops.demo.redis_choice import redis_answers
    from tests.support import redis_server

    with redis_server() as url:
        assert redis_answers(int(url.rsplit(":", 1)[1].split("/")[0]))
    with socket.create_server(("127.0.0.1", 0)) as server:  # a listener that answers like a protected Redis
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"-NOAUTH Authentication required.\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        assert not redis_answers(port)
        thread.join(5)
    assert not redis_answers(free_port())  # nothing listening
