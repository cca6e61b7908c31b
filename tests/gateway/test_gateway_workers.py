"""``llmops gateway --workers N`` (issue 17, item 1), with real processes: a supervisor and its workers on one port in
front of the simulator, one ``/metrics`` exact across workers (a worker killed midway included, and a real Prometheus
agreeing), SIGTERM draining every worker, two gateways on one host apart, ``auto``, a taken port, a crash loop, and
the config's checks."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.workers import Supervisor, check_workers, worker_cpus
from llmops.cli import build_parser
from llmops.config import ConfigError, parse_config
from llmops.config_server import MAX_WORKERS, available_cpus, resolve_workers
from tests.prometheus_support import prometheus, prometheus_config, vector, wait_until
from tests.support import LLMOPS, REPO, free_port, gateway_config, metric, redis_server, running, scrape, simulator

MESSAGES = [{"role": "user", "content": "count the workers"}]
# whole dollars per token: every request's cost is an integer, so sums over processes are exact in floating point
PRICING = {"input_per_mtok": 1_000_000, "output_per_mtok": 2_000_000}
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
RUN_DIR = re.compile(r"\((/\S+)/metrics\)")


@dataclass
class Gw:
    url: str
    port: int
    process: subprocess.Popen[str]
    log: Path

    def text(self) -> str:
        return self.log.read_text()


def _listeners(port: int) -> int:
    """Sockets listening on ``port``: one per worker that serves."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in rows.readlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return {int(child) for child in children.read().split()}


def _per_worker(samples: dict[Any, float], name: str = "llm_gateway_worker_requests") -> dict[int, float]:
    """A per-worker series by pid."""
    return {int(dict(labels)["pid"]): value for (sample, labels), value in samples.items() if sample == name}


@contextmanager
def _gateway(config: Path, log: Path, workers: int, port: int | None = None) -> Iterator[Gw]:
    """``llmops gateway --workers N``, ready once every worker listens."""
    port = port or free_port()
    args = ["gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
    with running(args, f"http://127.0.0.1:{port}/ready", log=log) as process:
        wait_until(lambda: _listeners(port) == workers, 30, f"{workers} workers listening on {port}")
        yield Gw(f"http://127.0.0.1:{port}", port, process, log)


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with simulator("--model", "sim-model", "--ttft-ms", "0", "--tokens-per-second", "0") as url:
        yield url


@pytest.fixture(scope="module")
def gw(sim: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    """One gateway with 2 workers (shared by the tests that leave it running), Redis for its GPU-priced model."""
    tmp = tmp_path_factory.mktemp("workers")
    deployment = {"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}
    models = [
        {"name": "m", "deployments": [deployment], "pricing": PRICING},
        {"name": "gpu", "deployments": [deployment], "pricing": {"gpu_hour_usd": 3.6}},
    ]
    with redis_server() as redis_url:
        config = gateway_config(tmp / "config.yaml", models, server={"workers": 2}, redis={"url": redis_url})
        with _gateway(config, tmp / "gateway.log", 2) as gateway:
            yield gateway


# ---------------------------------------------------------------------------------------------------- traffic
@dataclass
class Outcome:
    kind: str
    status: int
    tokens: int = 0  # prompt + completion tokens from the response's usage
    cost: int = 0  # what PRICING makes of that usage


def _usage(outcome: Outcome, usage: dict[str, int]) -> Outcome:
    outcome.tokens = usage["prompt_tokens"] + usage["completion_tokens"]
    outcome.cost = usage["prompt_tokens"] + 2 * usage["completion_tokens"]
    return outcome


def _request(url: str, kind: str) -> Outcome:
    """One request on a new connection (so the kernel spreads them over the workers)."""
    chat = f"{url}/v1/chat/completions"
    body: dict[str, Any] = {"model": "m", "messages": MESSAGES, "max_tokens": 12}
    if kind == "bad_json":
        response = httpx.post(chat, content=b'{"model": "m", ', headers={"content-type": "application/json"})
        return Outcome(kind, response.status_code)
    if kind == "upstream_error":
        response = httpx.post(chat, json={**body, "simulate": {"fault": "error", "status": 400}})
        return Outcome(kind, response.status_code)
    if kind == "stream":
        body.update(stream=True, stream_options={"include_usage": True})
        with httpx.stream("POST", chat, json=body, timeout=30) as response:
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]", events[-3:]
        usage = [json.loads(e)["usage"] for e in events[:-1] if json.loads(e).get("usage")]
        return _usage(Outcome(kind, response.status_code), usage[-1])
    response = httpx.post(chat, json=body, timeout=30)
    return _usage(Outcome(kind, response.status_code), response.json()["usage"])


KINDS = ["unary", "stream", "unary", "upstream_error", "stream", "bad_json"]


def _traffic(url: str, count: int) -> list[Outcome]:
    with ThreadPoolExecutor(6) as pool:
        return list(pool.map(lambda i: _request(url, KINDS[i % len(KINDS)]), range(count)))


def _totals(samples: dict[Any, float]) -> dict[str, float]:
    return {
        "requests": metric(samples, "llm_gateway_requests_total"),
        "ok": metric(samples, "llm_gateway_requests_total", status="200"),
        "bad": metric(samples, "llm_gateway_requests_total", status="400"),
        "tokens": metric(samples, "llm_gateway_tokens_total"),
        "cost": metric(samples, "llm_gateway_cost_usd_total", model="m"),
        "duration": metric(samples, "llm_gateway_request_duration_seconds_count"),
        "overhead": metric(samples, "llm_gateway_overhead_seconds_count"),
        "ttft": metric(samples, "llm_gateway_time_to_first_token_seconds_count"),
        "buckets": metric(samples, "llm_gateway_request_duration_seconds_bucket", le="+Inf"),
    }


# ---------------------------------------------------------------------------------------------------- tests
def test_one_metrics_exact_across_workers_with_one_killed_midway(gw: Gw, tmp_path: Path) -> None:
    before = _totals(scrape(gw.url))
    prom_config = prometheus_config(tmp_path / "prometheus.yml", {"llm-gateway": [f"127.0.0.1:{gw.port}"]}, [])
    with prometheus(prom_config, tmp_path / "prometheus") as prom:
        first = _traffic(gw.url, 60)
        # both workers served: each live worker's own count (set every second) is above 0
        served = wait_until(
            lambda: (w := _per_worker(scrape(gw.url))) and len(w) == 2 and all(w.values()) and w,
            10,
            "both workers serving requests",
        )
        assert set(served) == _children(gw.process.pid), (served, gw.text())
        killed = min(served)
        os.kill(killed, signal.SIGKILL)
        line = wait_until(
            lambda: re.search(
                rf"worker {killed} killed by SIGKILL after \S+ s: started worker (\d+) in its place", gw.text()
            ),
            15,
            "the killed worker's replacement",
        )
        replacement = int(line.group(1))
        wait_until(lambda: _listeners(gw.port) == 2, 30, "the replacement listening")
        second = _traffic(gw.url, 60)
        outcomes = first + second
        expected = {
            "requests": len(outcomes),
            "ok": sum(o.status == 200 for o in outcomes),
            "bad": sum(o.status == 400 for o in outcomes),
            "tokens": sum(o.tokens for o in outcomes),
            "cost": sum(o.cost for o in outcomes),
            # every request that reached a deployment is timed; a body that is not JSON never does
            "duration": sum(o.kind != "bad_json" for o in outcomes),
            "overhead": sum(o.kind != "bad_json" for o in outcomes),
            "buckets": sum(o.kind != "bad_json" for o in outcomes),
            "ttft": sum(o.kind == "stream" for o in outcomes),
        }
        assert [o.status for o in outcomes if o.kind in ("unary", "stream")] == [200] * (expected["ok"])
        assert expected["bad"] == sum(o.kind in ("bad_json", "upstream_error") for o in outcomes)

        def exact() -> dict[str, float] | None:
            now = _totals(scrape(gw.url))
            delta = {name: now[name] - before[name] for name in now}
            return now if delta == expected else None

        after = wait_until(exact, 10, f"/metrics counting {expected}")
        samples = scrape(gw.url)
        workers = wait_until(
            lambda: (w := _per_worker(scrape(gw.url))) and len(w) == 2 and all(w.values()) and w,
            10,
            "the surviving and the replacement worker both serving",
        )
        assert set(workers) == {max(served), replacement}, workers  # the dead worker's series is gone
        assert metric(samples, "llm_gateway_worker_restarts_total") == 1
        assert metric(samples, "llm_gateway_requests_in_flight") == 0

        # Prometheus scraped all along (a worker's death resets no counter) and ends with the same sums
        def agrees() -> bool:
            def value(expr: str) -> float:
                result = vector(prom, expr)
                return float(result[0]["value"][1]) if result else -1.0

            return (
                value("sum(llm_gateway_requests_total)") == after["requests"]
                and value("sum(llm_gateway_tokens_total)") == after["tokens"]
                and value('sum(llm_gateway_cost_usd_total{model="m"})') == after["cost"]
                and value("sum(llm_gateway_request_duration_seconds_count)") == after["duration"]
            )

        wait_until(agrees, 20, "Prometheus's sums equal to /metrics")
        assert vector(prom, "sum(resets(llm_gateway_requests_total[5m]))")[0]["value"][1] == "0"


def test_gauges_read_from_the_processes_and_what_multiprocess_mode_leaves_out(gw: Gw) -> None:
    for _ in range(4):
        response = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpu", "messages": MESSAGES})
        assert response.status_code == 200
    labels = {"model": "gpu", "deployment": "sim"}

    def synced() -> dict[Any, float] | None:
        samples = scrape(gw.url)
        served = metric(samples, "llm_gateway_gpu_served_tokens_per_second", **labels)
        shared = metric(samples, "llm_gateway_gpu_throughput_shared", **labels)
        return samples if served > 0 and shared == 1 else None

    samples = wait_until(synced, 10, "the GPU gauges set by the workers (served tokens, shared through Redis)")
    assert metric(samples, "llm_gateway_uncharged_spend_usd") == 0
    assert metric(samples, "llm_gateway_deployment_healthy", model="m", deployment="sim") == 1
    assert metric(samples, "llm_gateway_deployment_info", model="gpu", deployment="sim") == 1
    # one series per label set for every gauge but the per-worker ones (pid), and no process collector
    names = {name for name, _ in samples}
    assert not {n for n in names if n.startswith(("process_", "python_"))}, names
    assert all("pid" not in dict(lb) for n, lb in samples if not n.startswith("llm_gateway_worker_")), names
    assert len(_per_worker(samples, "llm_gateway_worker_cpu_seconds")) == 2
    assert len(_per_worker(samples, "llm_gateway_worker_resident_memory_bytes")) == 2
    text = httpx.get(f"{gw.url}/metrics", headers={"accept": OPENMETRICS}).text
    assert text.endswith("# EOF\n") and "llm_gateway_requests_total" in text


def test_auto_apart_from_another_gateway_and_draining_on_sigterm(gw: Gw, sim: str, tmp_path: Path) -> None:
    """A second gateway (``workers: auto`` on 2 CPUs) keeps its own metrics; SIGTERM lets a running stream finish."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("auto means several workers only with 2 CPUs or more")
    deployment = {"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}
    config = gateway_config(
        tmp_path / "config.yaml",
        [{"name": "m", "deployments": [deployment], "pricing": PRICING}],
        server={"workers": "auto", "drain_seconds": 5},
    )
    a_before = metric(scrape(gw.url), "llm_gateway_requests_total")
    with ExitStack() as stack:
        os.sched_setaffinity(0, cpus[:2])  # the gateway inherits 2 CPUs: auto is 2
        try:
            b = stack.enter_context(_gateway(config, tmp_path / "gateway.log", 2))
        finally:
            os.sched_setaffinity(0, cpus)
        assert "starting 2 workers (auto: one per CPU this process may use)" in b.text(), b.text()
        for _ in range(5):
            assert _request(b.url, "unary").status == 200
        assert metric(scrape(b.url), "llm_gateway_requests_total") == 5
        assert metric(scrape(gw.url), "llm_gateway_requests_total") == a_before  # none of B's in A
        (run_dir,) = RUN_DIR.findall(b.text())
        assert run_dir not in gw.text() and Path(run_dir).is_dir()

        # SIGTERM while a stream runs (15 tokens at 10 a second): it ends complete, the supervisor exits 0
        result: dict[str, Any] = {}
        first_event = threading.Event()

        def stream() -> None:
            body = {
                "model": "m",
                "messages": MESSAGES,
                "max_tokens": 15,
                "stream": True,
                "simulate": {"tokens_per_second": 10, "fault": "none"},
            }
            with httpx.stream("POST", f"{b.url}/v1/chat/completions", json=body, timeout=30) as response:
                lines = []
                for line in response.iter_lines():
                    first_event.set()
                    if line:
                        lines.append(line)
                result["stream"] = (response.status_code, lines)

        thread = threading.Thread(target=stream)
        thread.start()
        assert first_event.wait(10)
        b.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert b.process.wait(timeout=15) == 0, b.text()
        stopped = time.monotonic() - started
        thread.join(10)
        status, lines = result["stream"]
        assert status == 200 and lines[-1] == "data: [DONE]", lines[-3:]
        assert not any("server_shutting_down" in line for line in lines), lines[-3:]
        assert stopped < 5, b.text()
        text = b.text()
        assert "stopping 2 workers: running requests get up to 5 s" in text and "all workers stopped" in text, text
        assert "Traceback" not in text, text
        assert not Path(run_dir).exists()  # the metrics directory went with the gateway


def test_a_taken_port_is_one_line_and_a_failure(tmp_path: Path) -> None:
    config = gateway_config(
        tmp_path / "config.yaml",
        [{"name": "m", "deployments": [{"name": "d", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]}],
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
        result = subprocess.run([*LLMOPS, *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"llmops gateway: cannot listen on 127.0.0.1:{port}: address already in use"
    ], result.stderr


def test_pinned_workers_each_run_on_one_cpu_and_a_replacement_takes_its_slots(sim: str, tmp_path: Path) -> None:
    deployment = {"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}
    models = [{"name": "m", "deployments": [deployment], "pricing": PRICING}]
    config = gateway_config(tmp_path / "config.yaml", models, server={"workers": 2, "pin_workers": True})
    expected = worker_cpus(2)  # the CPUs this test may run on, in turn: the gateway inherits them
    with _gateway(config, tmp_path / "gateway.log", 2) as gateway:
        workers = sorted(_children(gateway.process.pid))
        pinned = {pid: os.sched_getaffinity(pid) for pid in workers}
        assert sorted(min(cpus) for cpus in pinned.values()) == sorted(expected)
        assert all(len(cpus) == 1 for cpus in pinned.values()), pinned
        killed = workers[0]
        os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)  # its socket closed with it
        wait_until(lambda: _listeners(gateway.port) == 2, 30, "a replacement worker listening")
        (replacement,) = _children(gateway.process.pid) - set(workers)
        assert os.sched_getaffinity(replacement) == pinned[killed]
        assert _request(gateway.url, "ok").status == 200
        assert "each worker on one CPU (server.pin_workers): " + ", ".join(map(str, expected)) in gateway.text()


def test_worker_cpus_go_round_the_available_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5, 2})
    assert worker_cpus(3) == [2, 5, 2]
    assert worker_cpus(1) == [2]


def test_a_cpu_a_worker_may_not_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = gateway_config(tmp_path / "config.yaml", [MODEL])
    args = ["--config", str(config), "--host", "127.0.0.1", "--port", "9", "--supervisor", "1", "--cpu", "4096"]
    result = subprocess.run(
        [sys.executable, "-m", "gateway.worker", *args],
        cwd=REPO,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().endswith("cannot run on CPU 4096 (server.pin_workers): Invalid argument")
    assert len(result.stderr.strip().splitlines()) == 1


def _fake_workers(code: str) -> Any:
    def spawn(index: int, replacement: bool) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", code])

    return spawn


def test_workers_that_keep_failing_at_start_stop_the_supervisor(tmp_path: Path) -> None:
    supervisor = Supervisor(
        _fake_workers("import sys; sys.exit(3)"), 2, str(tmp_path), 1.0, 5.0, grace_seconds=5, backoff_seconds=0.01
    )
    started = time.monotonic()
    status, message = supervisor.run()
    assert status == 1 and time.monotonic() - started < 10
    assert message is not None and "\n" not in message
    assert message.startswith("workers keep failing at start (5 in a row within 5 s of starting; the last: worker ")
    assert "exited with status 3" in message and message.endswith("giving up (their messages are above)")


def test_a_replaced_worker_resets_the_count_and_sigterm_stops_the_rest(tmp_path: Path) -> None:
    spawned: list[tuple[int, bool]] = []
    sleeper = _fake_workers("import time; time.sleep(60)")

    def spawn(index: int, replacement: bool) -> subprocess.Popen[bytes]:
        spawned.append((index, replacement))
        return sleeper(index, replacement)

    supervisor = Supervisor(spawn, 2, str(tmp_path), 1.0, 5.0, grace_seconds=0.2)

    def chaos() -> None:
        time.sleep(0.5)
        first = supervisor.slots[0].process
        assert first is not None
        first.kill()  # it lived past its grace period: replaced at once, no failure counted
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=chaos)
    thread.start()
    status, message = supervisor.run()
    thread.join()
    assert (status, message) == (0, None)
    assert spawned == [(0, False), (1, False), (0, True)]
    assert supervisor.failures == 0
    assert all(slot.process is not None and slot.process.poll() is not None for slot in supervisor.slots)


# ---------------------------------------------------------------------------------------------------- config
MODEL = {"name": "m", "deployments": [{"name": "d", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]}


@pytest.mark.parametrize("bad", [0, -1, MAX_WORKERS + 1, 2.5, "many", "", None, True])
def test_bad_worker_counts_are_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"models": [MODEL], "server": {"workers": bad}})
    assert (
        str(error.value)
        .splitlines()[1]
        .startswith(
            "  - server.workers: expected a whole number of processes from 1 to 256, or auto (one per available CPU)"
        )
    )


def test_worker_counts_and_auto() -> None:
    assert parse_config({"models": [MODEL]}).server.worker_count() == 1
    assert parse_config({"models": [MODEL], "server": {"workers": "4"}}).server.workers == 4
    auto = parse_config({"models": [MODEL], "server": {"workers": "auto"}}).server
    assert auto.workers == "auto" and auto.worker_count() == len(os.sched_getaffinity(0)) == available_cpus()
    assert resolve_workers(3) == 3
    assert build_parser().parse_args(["gateway", "--config", "c", "--workers", "auto"]).workers == "auto"
    assert build_parser().parse_args(["gateway", "--config", "c", "--workers", "2"]).workers == 2


def test_bad_workers_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["gateway", "--config", "c", "--workers", "0"])
    assert exit_.value.code == 2
    assert "argument --workers: expected a whole number of processes from 1 to 256" in capsys.readouterr().err


def test_what_several_workers_need() -> None:
    gpu = parse_config({"models": [{**MODEL, "pricing": {"gpu_hour_usd": 2.0}}]})
    with pytest.raises(ConfigError, match="2 workers with GPU-priced models \\(m\\) need redis"):
        check_workers(gpu, 2, 8080)
    with pytest.raises(ConfigError, match="need a fixed port"):
        check_workers(parse_config({"models": [MODEL]}), 2, 0)
    check_workers(parse_config({"models": [MODEL], "redis": {}}), 2, 8080)
