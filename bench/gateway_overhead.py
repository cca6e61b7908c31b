#!/usr/bin/env python3
"""Gateway overhead benchmark: the same load sent straight to a near-zero-cost upstream and through one gateway
worker, side by side, in one run. Not part of the test suite.

    .venv/bin/python bench/gateway_overhead.py                    # all steps, ~4 min on a quiet box
    .venv/bin/python bench/gateway_overhead.py --json /tmp/overhead.json
    .venv/bin/python bench/gateway_overhead.py --soak 300         # RSS over a 5-minute run

What it does (everything on 127.0.0.1, every load step bounded: --duration, 15 s by default):
  * starts the fake upstream: gwbench's nginx (``<repo>/../shared/gwbench/upstream.sh``, canned chat completion and
    20-event SSE stream) when nginx is installed, else ``llmops simulate --ttft-ms 0 --tokens-per-second 0``;
    an upstream already answering on --upstream-port is reused (and left running);
  * starts one gateway process (``llmops gateway``, one uvicorn worker) pinned to CPU 0 (--gw-cpus);
  * pins itself, the load generators and the upstream to CPU 1 (--load-cpus);
  * for non-streaming and streaming requests, at fixed rates (--rates, open loop, our own generator: this file's
    ``_load`` subcommand, asyncio + httptools) and at maximum throughput (wrk, closed loop, --conns connections),
    measures direct-to-upstream and then through the gateway;
  * per step: p50/p99 latency (and time to first byte of the SSE body for streaming at fixed rates), the gateway's
    added latency and the ratio against the direct baseline of the same run, the gateway's CPU ms per request
    (utime+stime from /proc/<pid>/stat over the step / requests), its RSS, and the CPU used by *other* processes
    during the step (the box may be shared: a step with more than --noise-max cores of foreign CPU is re-run).

--soak SECONDS instead drives a fixed rate (--soak-rate, half of the requests streaming) through the gateway for that
long and samples its RSS every --soak-interval seconds: first/last/peak and the growth.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TCK = os.sysconf("SC_CLK_TCK")
API_KEY = "sk-bench-local-only"
MODEL = "bench-model"
CHAT_PATH = "/v1/chat/completions"
STEP_MAX_S = 60  # bounded loads: no single step may run longer than this
SOAK_MAX_S = 3600


# ====================================================================================================================
# Load generator (runs as a subprocess pinned to the load CPUs: ``gateway_overhead.py _load ...``)
# ====================================================================================================================


def chat_body(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello in one short sentence."},
        ],
        "max_tokens": 50,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def raw_request(host: str, port: int, path: str, model: str, stream: bool) -> bytes:
    body = chat_body(model, stream)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def pct(sorted_vals: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, round(p / 100.0 * len(sorted_vals) + 0.5) - 1))
    return sorted_vals[k]


def summarize(vals: list[float], prefix: str = "") -> dict[str, float | None]:
    s = sorted(vals)
    out: dict[str, float | None] = {}
    for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        v = pct(s, p)
        out[f"{prefix}{name}_ms"] = None if v is None else round(v * 1e3, 3)
    out[f"{prefix}max_ms"] = round(s[-1] * 1e3, 3) if s else None
    out[f"{prefix}mean_ms"] = round(sum(s) / len(s) * 1e3, 3) if s else None
    return out


class _Exchange:
    __slots__ = ("done", "first_body", "issued", "measured", "sched", "status", "stream", "tail")

    def __init__(self, sched: float, issued: float, measured: bool, stream: bool) -> None:
        self.sched = sched
        self.issued = issued
        self.measured = measured
        self.stream = stream
        self.first_body: float | None = None
        self.done = 0.0
        self.status = 0
        self.tail = b""


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one exchange at a time; responses parsed by httptools."""

    def __init__(self, gen: _Generator) -> None:
        import httptools

        self._parser_cls = httptools.HttpResponseParser
        self._parser_error = httptools.HttpParserError
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.ex: _Exchange | None = None
        self.parser: Any = None
        self.now = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self, ex: _Exchange, payload: bytes) -> None:
        self.ex = ex
        self.parser = self._parser_cls(self)
        assert self.transport is not None
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        self.now = time.perf_counter()
        if self.ex is None:
            return
        try:
            self.parser.feed_data(data)
        except self._parser_error:
            self._fail("invalid")

    def on_headers_complete(self) -> None:
        if self.ex is not None:
            self.ex.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        ex = self.ex
        if ex is None:
            return
        if ex.first_body is None:
            ex.first_body = self.now
        ex.tail = (ex.tail + body)[-64:]

    def on_message_complete(self) -> None:
        ex = self.ex
        if ex is None:
            return
        ex.done = self.now
        self.ex = None
        keep = self.parser.should_keep_alive()
        if not keep and self.transport is not None:
            self.transport.close()
        self.gen.finished(ex, self if keep else None)

    def _fail(self, kind: str) -> None:
        ex, self.ex = self.ex, None
        if self.transport is not None:
            self.transport.close()
        if ex is not None:
            self.gen.failed(ex, kind)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.conn_lost(self)
        ex, self.ex = self.ex, None
        if ex is not None:
            self.gen.failed(ex, "closed")


class _Generator:
    """Open loop (``rate``: requests issued on a fixed schedule, whatever the responses do) or closed loop
    (``concurrency``: that many connections, each sending the next request as soon as the previous one ends)."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.loop = asyncio.get_running_loop()
        self.payloads = {s: raw_request(a.host, a.port, a.path, a.model, s) for s in (False, True)}
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.opening = 0
        self.opened = 0
        self.pending: deque[_Exchange] = deque()
        self.outstanding = 0
        self.max_outstanding = 0
        self.rec: list[tuple[float, float, float | None, float]] = []  # lat, co-lat, ttfb, sched lag
        self.completed_total = 0
        self.errors: dict[str, int] = {}
        self.first_error = ""
        self.all_done = asyncio.Event()
        self.sending = True
        self.closed_loop_until = 0.0
        self.closed_loop_measure_from = 0.0
        self.last_ok = 0.0

    # ---- connections --------------------------------------------------------------------------------------------
    def issue(self, ex: _Exchange) -> None:
        self.outstanding += 1
        self.max_outstanding = max(self.max_outstanding, self.outstanding)
        if self.idle:
            self.idle.pop().start(ex, self.payloads[ex.stream])
            return
        self.pending.append(ex)
        if len(self.conns) + self.opening < self.a.conns:
            self.opening += 1
            self.loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            _, conn = await self.loop.create_connection(lambda: _Conn(self), self.a.host, self.a.port)
        except OSError as e:
            self.opening -= 1
            if self.pending:
                self.failed(self.pending.popleft(), "connect", repr(e))
            return
        self.opening -= 1
        self.opened += 1
        self.conns.add(conn)
        self._give_conn(conn)

    def conn_lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    # ---- outcomes ----------------------------------------------------------------------------------------------
    def finished(self, ex: _Exchange, conn: _Conn | None) -> None:
        ok = ex.status == 200 and (b"[DONE]" in ex.tail if ex.stream else b"}" in ex.tail)
        if ok:
            self.completed_total += 1
            if ex.measured:
                ttfb = None if ex.first_body is None else ex.first_body - ex.issued
                self.rec.append((ex.done - ex.issued, ex.done - ex.sched, ttfb, ex.issued - ex.sched))
                self.last_ok = ex.done
        else:
            self._count_error("status" if ex.status != 200 else "invalid", f"HTTP {ex.status}")
        self._settle(conn)

    def failed(self, ex: _Exchange, kind: str, detail: str = "") -> None:
        self._count_error(kind, detail or kind)
        self._settle(None)

    def _count_error(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if not self.first_error:
            self.first_error = detail

    def _settle(self, conn: _Conn | None) -> None:
        self.outstanding -= 1
        if self.a.concurrency and time.perf_counter() < self.closed_loop_until:
            # closed loop: the next request right away (a fresh connection if this one closed)
            now = time.perf_counter()
            ex = _Exchange(now, now, now >= self.closed_loop_measure_from, self.a.stream)
            if conn is not None:
                self.outstanding += 1
                conn.start(ex, self.payloads[ex.stream])
            else:
                self.issue(ex)
            return
        if conn is not None:
            self._give_conn(conn)
        if not self.sending and self.outstanding == 0:
            self.all_done.set()

    def _give_conn(self, conn: _Conn) -> None:
        if self.pending:
            ex = self.pending.popleft()
            conn.start(ex, self.payloads[ex.stream])
        else:
            self.idle.append(conn)

    # ---- drivers -----------------------------------------------------------------------------------------------
    async def run_open_loop(self) -> tuple[float, float]:
        a = self.a
        n_warm = int(a.warmup * a.rate)
        total = n_warm + int(a.duration * a.rate)
        interval = 1.0 / a.rate
        start = time.perf_counter() + 0.05
        window = [0.0, 0.0]
        finished = asyncio.Event()
        every = a.stream_every

        def fire(i: int) -> None:
            now = time.perf_counter()
            measured = i >= n_warm
            if i == n_warm:
                window[0] = now
            stream = a.stream or (every > 0 and i % every == 0)
            self.issue(_Exchange(start + i * interval, now, measured, stream))
            if i + 1 < total:
                self.loop.call_later(max(0.0, start + (i + 1) * interval - time.perf_counter()), fire, i + 1)
            else:
                window[1] = time.perf_counter()
                finished.set()

        self.loop.call_later(0.05, fire, 0)
        await finished.wait()
        return window[0], window[1]

    async def run_closed_loop(self) -> tuple[float, float]:
        a = self.a
        t0 = time.perf_counter()
        self.closed_loop_measure_from = t0 + a.warmup
        self.closed_loop_until = t0 + a.warmup + a.duration
        for _ in range(a.concurrency):
            self.issue(_Exchange(t0, t0, a.warmup <= 0, a.stream))
        await asyncio.sleep(a.warmup + a.duration)
        return self.closed_loop_measure_from, self.closed_loop_until

    async def main(self) -> dict[str, Any]:
        a = self.a
        if a.concurrency:
            w0, w1 = await self.run_closed_loop()
        else:
            w0, w1 = await self.run_open_loop()
        self.sending = False
        if self.outstanding:
            try:
                await asyncio.wait_for(self.all_done.wait(), timeout=a.timeout)
            except TimeoutError:
                self._count_error("timeout", f"{self.outstanding} requests still open after {a.timeout} s")
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()
        lat = [r[0] for r in self.rec]
        end = max(w1, self.last_ok) if not a.concurrency else w1
        out: dict[str, Any] = {
            "tool": "closedloop" if a.concurrency else "openloop",
            "stream": bool(a.stream),
            "target_rps": a.rate or None,
            "ok": len(self.rec),
            "completed_total": self.completed_total,
            "rps": round(len(self.rec) / max(1e-9, end - w0), 1),
            "errors": sum(self.errors.values()),
            "error_kinds": self.errors,
            "max_outstanding": self.max_outstanding,
            "connections_opened": self.opened,
        }
        if self.first_error:
            out["first_error"] = self.first_error
        out.update(summarize(lat))
        co = summarize([r[1] for r in self.rec])
        out.update({"co_p50_ms": co["p50_ms"], "co_p99_ms": co["p99_ms"]})
        tt = summarize([r[2] for r in self.rec if r[2] is not None], "ttfb_")
        out.update({"ttfb_p50_ms": tt["ttfb_p50_ms"], "ttfb_p99_ms": tt["ttfb_p99_ms"]})
        lag = summarize([r[3] for r in self.rec])
        out.update({"sched_lag_p50_ms": lag["p50_ms"], "sched_lag_p99_ms": lag["p99_ms"]})
        return out


def load_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="gateway_overhead.py _load", description="internal load generator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default=CHAT_PATH)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--rate", type=float, default=0.0, help="open loop: requests per second")
    ap.add_argument("--concurrency", type=int, default=0, help="closed loop: connections (instead of --rate)")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--stream-every", type=int, default=0, help="open loop: every Nth request streams (mix)")
    ap.add_argument("--conns", type=int, default=256, help="open loop: connection limit")
    ap.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args(argv)
    if a.duration + a.warmup > SOAK_MAX_S + 60:
        sys.exit("refusing an unbounded load")
    if not a.rate and not a.concurrency:
        sys.exit("--rate or --concurrency is required")
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loopback only")
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass

    async def run() -> dict[str, Any]:
        return await _Generator(a).main()

    print("BENCH_JSON " + json.dumps(asyncio.run(run())), flush=True)


# ====================================================================================================================
# /proc accounting
# ====================================================================================================================


def proc_snapshot() -> dict[int, tuple[int, int, int, int, str]]:
    """pid -> (ppid, own ticks, reaped children's ticks, start time, comm) for every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read().decode(errors="replace")
        except OSError:
            continue
        r = s.rindex(")")
        comm = s[s.index("(") + 1 : r]
        v = s[r + 2 :].split()
        out[int(d)] = (int(v[1]), int(v[11]) + int(v[12]), int(v[13]) + int(v[14]), int(v[19]), comm)
    return out


def tree(snap: dict[int, tuple[int, int, int, int, str]], roots: list[int]) -> set[int]:
    kids: dict[int, list[int]] = {}
    for pid, row in snap.items():
        kids.setdefault(row[0], []).append(pid)
    seen: set[int] = set()
    stack = [r for r in roots if r in snap]
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(kids.get(p, []))
    return seen


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        return int(v[11]) + int(v[12])
    except OSError:
        return 0


def per_cpu_busy() -> dict[str, int]:
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]]
            out[name] = sum(v) - v[3] - v[4]
    return out


def mem_kb(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


class CpuWindow:
    """CPU used between ``start()`` and ``stop()``: by the gateway, by us (this script, the load generators it has
    reaped, the upstream), and by everything else ("foreign" = machine busy time from /proc/stat minus ours, so
    short-lived processes of other jobs count too). ``gw_core_other_cores`` is what ran on the gateway's CPUs besides
    the gateway: the interference that matters most. The top foreign processes are named for the log."""

    def __init__(self, gw_pid: int | None, ours: list[int], gw_cpus: set[int]) -> None:
        self.gw_pid = gw_pid
        self.ours = ours
        self.gw_cpus = gw_cpus

    def _ours_ticks(self) -> int:
        t = os.times()  # this process + its reaped children (wrk, the _load generator)
        me = round((t.user + t.system + t.children_user + t.children_system) * TCK)
        return me + sum(cpu_ticks(p) for p in self.ours)

    def start(self) -> None:
        self.t0 = time.monotonic()
        with open("/proc/uptime") as f:
            self.t0_ticks = float(f.read().split()[0]) * TCK
        self.snap0 = proc_snapshot()
        self.gw0 = cpu_ticks(self.gw_pid) if self.gw_pid else 0
        self.ours0 = self._ours_ticks()
        self.busy0 = per_cpu_busy()

    def stop(self) -> dict[str, Any]:
        busy1 = per_cpu_busy()
        ours1 = self._ours_ticks()
        gw = (cpu_ticks(self.gw_pid) - self.gw0) if self.gw_pid else 0
        el = max(time.monotonic() - self.t0, 1e-3)
        snap1 = proc_snapshot()
        busy = {k: busy1[k] - self.busy0.get(k, 0) for k in busy1}
        foreign = max(0, busy["cpu"] - (ours1 - self.ours0))
        gw_core = sum(busy.get(f"cpu{c}", 0) for c in self.gw_cpus)
        # names only: own CPU of the foreign processes alive at the end (processes that came and went are in the
        # total but not named)
        mine = tree(snap1, [*self.ours, os.getpid()]) | tree(snap1, [2])
        per: dict[str, int] = {}
        for pid, (_, cpu, _c, started, comm) in snap1.items():
            before = self.snap0.get(pid)
            base = before[1] if before is not None and before[3] == started else 0
            if pid in mine or cpu <= base or (before is None and started < self.t0_ticks):
                continue
            per[comm] = per.get(comm, 0) + cpu - base
        top = sorted(per.items(), key=lambda kv: -kv[1])[:3]
        return {
            "seconds": round(el, 3),
            "gw_cpu_s": round(gw / TCK, 3),
            "gw_cpu_cores": round(gw / TCK / el, 3),
            "foreign_cores": round(foreign / TCK / el, 3),
            "gw_core_other_cores": round(max(0, gw_core - gw) / TCK / el, 3) if self.gw_cpus else None,
            "foreign_top": {k: round(v / TCK / el, 3) for k, v in top},
            "machine_busy_cores": round(busy["cpu"] / TCK / el, 3),
            "cpu_busy_cores": {k: round(v / TCK / el, 3) for k, v in busy.items() if k != "cpu"},
        }


# ====================================================================================================================
# Processes: upstream and gateway
# ====================================================================================================================


def log(console: Any, msg: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}")


def parse_cpus(cpus: str) -> set[int]:
    """A taskset-style CPU list ("1", "0,2", "1-3") as a set."""
    out: set[int] = set()
    for part in cpus.split(","):
        lo, _, hi = part.strip().partition("-")
        if lo:
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def pin_prefix(cpus: str) -> list[str]:
    return ["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []


def port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def listeners(port: int) -> list[int]:
    """PIDs of the processes listening on 127.0.0.1:port (via ss)."""
    if not shutil.which("ss"):
        return []
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    pids = set()
    for tok in out.replace(",", " ").split():
        if tok.startswith("pid="):
            pids.add(int(tok[4:]))
    return sorted(pids)


def http(url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {API_KEY}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def sanity(base: str, model: str) -> str | None:
    """None if the endpoint answers a chat request properly, streaming and not; else what went wrong."""
    for stream in (False, True):
        status, data = http(base + CHAT_PATH, chat_body(model, stream), timeout=10)
        ok = status == 200 and ((b"[DONE]" in data) if stream else (b'"choices"' in data))
        if not ok:
            return f"stream={stream}: HTTP {status} {data[:200]!r}"
    return None


def wait_for(url: str, seconds: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status, _ = http(url, timeout=1)
        if status == 200:
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def llmops_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "llmops"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "llmops.cli"]


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class Upstream:
    kind: str  # nginx | simulate | external
    base: str
    port: int
    gwbench: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    started: bool = False
    pids: list[int] = field(default_factory=list)

    @classmethod
    def start(cls, a: argparse.Namespace, console: Any, tmp: Path) -> Upstream:
        port = a.upstream_port
        base = f"http://127.0.0.1:{port}"
        gwb = Path(a.gwbench)
        if port_busy(port):
            problem = sanity(base, a.model)
            if problem:
                sys.exit(f"port {port} is taken by something that is not a usable upstream: {problem}")
            log(console, f"[yellow]reusing the upstream already on :{port}[/yellow] (its CPU pinning is unknown)")
            return cls("external", base, port, pids=listeners(port))
        nginx_ok = (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()) and (gwb / "upstream.sh").exists()
        if a.upstream in ("auto", "nginx") and nginx_ok:
            env = dict(os.environ, UPSTREAM_PORT=str(port), UPSTREAM_CPUS=a.load_cpus)
            env.setdefault("UPSTREAM_STATIC_PORT", str(port + 1))
            r = subprocess.run([str(gwb / "upstream.sh"), "start"], env=env, capture_output=True, text=True)
            if r.returncode == 0 and wait_for(base + "/health", 10):
                up = cls("nginx", base, port, gwbench=gwb, started=True)
                up.pids = listeners(port)
                log(console, f"upstream: gwbench nginx on :{port} (pids {up.pids}, cpus {a.load_cpus or 'any'})")
                return up
            if a.upstream == "nginx":
                sys.exit(f"gwbench upstream.sh failed:\n{r.stdout}{r.stderr}")
            log(console, f"[yellow]nginx upstream failed ({r.stderr.strip()[-200:]}); falling back to simulate")
        elif a.upstream == "nginx":
            sys.exit(f"nginx or {gwb / 'upstream.sh'} not found (run {gwb / 'setup.sh'})")
        cmd = [
            *pin_prefix(a.load_cpus),
            *llmops_cmd(),
            "simulate",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ttft-ms",
            "0",
            "--tokens-per-second",
            "0",
            "--model",
            a.model,
            "--log-level",
            "warning",
        ]
        logf = open(tmp / "simulate.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_for(base + "/health", 30, proc):
            stop_process(proc)
            sys.exit(f"llmops simulate did not come up; see {tmp / 'simulate.log'}")
        log(console, f"upstream: llmops simulate on :{port} (pid {proc.pid}, cpus {a.load_cpus or 'any'})")
        return cls("simulate", base, port, proc=proc, started=True, pids=[proc.pid])

    def stop(self) -> None:
        if self.kind == "nginx" and self.started and self.gwbench is not None:
            env = dict(os.environ, UPSTREAM_PORT=str(self.port))
            subprocess.run([str(self.gwbench / "upstream.sh"), "stop"], env=env, capture_output=True)
        elif self.kind == "simulate":
            stop_process(self.proc)


class Gateway:
    def __init__(self, a: argparse.Namespace, upstream: Upstream, tmp: Path) -> None:
        self.a = a
        self.port = a.gw_port
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "gateway.yaml"
        self.config.write_text(
            "models:\n"
            f"  - name: {a.model}\n"
            "    deployments:\n"
            f"      - {{name: up, base_url: {upstream.base}/v1, model: {a.model}}}\n"
        )
        self.log_path = tmp / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        if port_busy(self.port):
            sys.exit(f"gateway port {self.port} is taken; pick another with --gw-port")
        cmd = [
            *pin_prefix(self.a.gw_cpus),
            *llmops_cmd(),
            "gateway",
            "--config",
            str(self.config),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        env = dict(os.environ)
        for kv in self.a.gateway_env:
            k, _, v = kv.partition("=")
            env[k] = v
        logf = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if not wait_for(self.base + "/ready", 30, self.proc):
            self.stop()
            sys.exit(f"the gateway did not become ready; see {self.log_path}:\n{self.log_path.read_text()[-2000:]}")
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc)


# ====================================================================================================================
# Steps
# ====================================================================================================================


@dataclass
class Step:
    target: str  # direct | gateway
    stream: bool
    load: str  # "max" or "rN"
    rate: float = 0.0
    conns: int = 0

    @property
    def mode(self) -> str:
        return "stream" if self.stream else "unary"

    @property
    def key(self) -> str:
        return f"{self.mode}/{self.load}"


class Runner:
    def __init__(self, a: argparse.Namespace, console: Any, upstream: Upstream, gw: Gateway, gw_pid: int) -> None:
        self.a = a
        self.console = console
        self.upstream = upstream
        self.gw = gw
        self.gw_pid = gw_pid
        self.ours = [gw_pid, *upstream.pids]
        self.gw_cpus = parse_cpus(a.gw_cpus) if a.gw_cpus else set()
        self.wrk = None if a.no_wrk else shutil.which(a.wrk)

    def base(self, target: str) -> str:
        return self.gw.base if target == "gateway" else self.upstream.base

    def load_cmd(self, step: Step, duration: float, warmup: float) -> tuple[list[str], dict[str, str]]:
        base = self.base(step.target)
        port = int(base.rsplit(":", 1)[1])
        env = dict(
            os.environ, BENCH_MODEL=self.a.model, BENCH_STREAM="1" if step.stream else "0", BENCH_API_KEY=API_KEY
        )
        pin = pin_prefix(self.a.load_cpus)
        if step.load == "max" and self.wrk:
            cmd = [self.wrk, "-t1", f"-c{step.conns}", f"-d{round(duration)}s", "--latency", "--timeout", "10s"]
            return [*pin, *cmd, "-s", str(HERE / "wrk_chat.lua"), base + CHAT_PATH], env
        cmd = [*pin, sys.executable, str(Path(__file__).resolve()), "_load", "--port", str(port)]
        cmd += ["--model", self.a.model, "--duration", str(duration), "--warmup", str(warmup)]
        cmd += ["--concurrency", str(step.conns)] if step.load == "max" else ["--rate", str(step.rate)]
        return [*cmd, *(["--stream"] if step.stream else [])], env

    def wait_quiet(self) -> dict[str, Any]:
        """Until the gateway is idle (backlog drained) and foreign CPU is under --noise-max, at most --quiet-wait s."""
        end = time.monotonic() + self.a.quiet_wait
        while True:
            w = CpuWindow(self.gw_pid, self.ours, self.gw_cpus)
            w.start()
            time.sleep(1.0)
            r = w.stop()
            if (r["foreign_cores"] <= self.a.noise_max and r["gw_cpu_cores"] <= 0.05) or time.monotonic() > end:
                r["quiet"] = r["foreign_cores"] <= self.a.noise_max
                return r

    def run_once(self, step: Step, progress: Any, task: Any) -> dict[str, Any]:
        before = self.wait_quiet()
        duration, warmup = self.a.duration, self.a.ol_warmup
        cmd, env = self.load_cmd(step, duration, warmup)
        span = duration + (0 if step.load == "max" and self.wrk else warmup)
        w = CpuWindow(self.gw_pid, self.ours, self.gw_cpus)
        w.start()
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        out, err = "", ""
        while True:
            try:
                out, err = p.communicate(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                progress.update(task, completed=min(time.monotonic() - t0, span))
        cpu = w.stop()
        progress.update(task, completed=span)
        res = None
        for line in out.splitlines():
            if line.startswith("BENCH_JSON "):
                res = json.loads(line[len("BENCH_JSON ") :])
        if res is None:
            raise RuntimeError(f"{step.target} {step.key}: no result (rc={p.returncode}):\n{out}\n{err}")
        if "err_status" in res:  # wrk
            res["tool"] = "wrk"
            res["errors"] = sum(v for k, v in res.items() if k.startswith("err_"))
            res["ok"] = res["requests"] - res["err_status"]
            res["completed_total"] = res["ok"]
        total = res.get("completed_total") or 0
        res.update(cpu)
        res["gw_cpu_ms_per_req"] = (
            round(cpu["gw_cpu_s"] * 1e3 / total, 4) if total and step.target == "gateway" else None
        )
        res["foreign_before"] = before["foreign_cores"]
        mem = mem_kb(self.gw_pid)
        res["gw_rss_kb"] = mem.get("VmRSS")
        res["gw_hwm_kb"] = mem.get("VmHWM")
        return res

    def run_step(self, step: Step, progress: Any) -> dict[str, Any]:
        label = f"{step.target:<7} {step.mode:<6} {step.load}"
        span = self.a.duration + (0 if step.load == "max" and self.wrk else self.a.ol_warmup)
        task = progress.add_task(label, total=span)
        best = self.run_once(step, progress, task)
        attempts = 1
        while best["foreign_cores"] > self.a.noise_max and attempts <= self.a.retries:
            log(
                self.console,
                f"[yellow]{label}: foreign CPU {best['foreign_cores']} cores {best['foreign_top']}, re-run",
            )
            progress.reset(task)
            r = self.run_once(step, progress, task)
            attempts += 1
            if r["foreign_cores"] < best["foreign_cores"]:
                best = r
        best["attempts"] = attempts
        best["noisy"] = best["foreign_cores"] > self.a.noise_max
        best.update(
            target=step.target, mode=step.mode, load=step.load, rate=step.rate or None, conns=step.conns or None
        )
        progress.update(task, description=label + "  " + short(best))
        return best

    def warm_up(self, seconds: float) -> None:
        """Closed-loop load through the gateway (both modes) so pools, caches and allocators are warm."""
        for stream in (False, True):
            step = Step("gateway", stream, "max", conns=16)
            cmd, env = self.load_cmd(step, max(1.0, seconds / 2), 0)
            subprocess.run(cmd, capture_output=True, env=env, timeout=STEP_MAX_S + 30)


def short(r: dict[str, Any]) -> str:
    s = f"{r['rps']:.0f} rps p50 {fmt(r.get('p50_ms'))} p99 {fmt(r.get('p99_ms'))} ms"
    if r.get("ttfb_p50_ms") is not None and r.get("mode") == "stream":
        s += f" ttfb {fmt(r['ttfb_p50_ms'])}/{fmt(r['ttfb_p99_ms'])}"
    if r.get("gw_cpu_ms_per_req") is not None:
        s += f" cpu {r['gw_cpu_ms_per_req']:.3f} ms/req"
    if r.get("errors"):
        s += f" [red]errors {r['errors']}[/red]"
    if r.get("noisy"):
        s += f" [yellow]noisy {r['foreign_cores']}[/yellow]"
    return s


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def compare(direct: dict[str, Any], gw: dict[str, Any]) -> dict[str, Any]:
    def diff(k: str) -> float | None:
        if direct.get(k) is None or gw.get(k) is None:
            return None
        return round(gw[k] - direct[k], 3)

    def ratio(k: str) -> float | None:
        if not direct.get(k) or gw.get(k) is None:
            return None
        return round(gw[k] / direct[k], 2)

    return {
        "added_p50_ms": diff("p50_ms"),
        "added_p99_ms": diff("p99_ms"),
        "ratio_p50": ratio("p50_ms"),
        "ratio_p99": ratio("p99_ms"),
        "added_ttfb_p50_ms": diff("ttfb_p50_ms") if gw["mode"] == "stream" else None,
        "added_ttfb_p99_ms": diff("ttfb_p99_ms") if gw["mode"] == "stream" else None,
        "rps_ratio": ratio("rps"),
    }


def results_table(steps: list[dict[str, Any]], comparisons: dict[str, dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title="Direct to upstream vs through the gateway (latency in ms; ratio = gateway / direct)")
    for col, just in (
        ("mode", "left"),
        ("load", "left"),
        ("target", "left"),
        ("rps", "right"),
        ("p50", "right"),
        ("p99", "right"),
        ("ttfb p50/p99", "right"),
        ("added p50/p99", "right"),
        ("ratio p50/p99", "right"),
        ("added ttfb p50/p99", "right"),
        ("gw CPU ms/req", "right"),
        ("gw cores", "right"),
        ("gw RSS MB", "right"),
        ("foreign (on gw CPU) cores", "right"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in steps:
        c = comparisons.get(f"{r['mode']}/{r['load']}", {}) if r["target"] == "gateway" else {}
        stream_ol = r["mode"] == "stream" and r.get("ttfb_p50_ms") is not None
        noisy = "[yellow]" if r.get("noisy") else ""
        t.add_row(
            r["mode"],
            r["load"] + (f" c{r['conns']}" if r["load"] == "max" else ""),
            r["target"],
            f"{r['rps']:.0f}" + (f" ({c['rps_ratio']:.2f}x)" if c.get("rps_ratio") and r["load"] == "max" else ""),
            fmt(r.get("p50_ms")),
            fmt(r.get("p99_ms")),
            f"{fmt(r.get('ttfb_p50_ms'))}/{fmt(r.get('ttfb_p99_ms'))}" if stream_ol else "",
            f"{fmt(c.get('added_p50_ms'))}/{fmt(c.get('added_p99_ms'))}" if c else "",
            f"{fmt(c.get('ratio_p50'))}/{fmt(c.get('ratio_p99'))}" if c else "",
            f"{fmt(c.get('added_ttfb_p50_ms'))}/{fmt(c.get('added_ttfb_p99_ms'))}" if c and stream_ol else "",
            f"{r['gw_cpu_ms_per_req']:.3f}" if r.get("gw_cpu_ms_per_req") is not None else "",
            f"{r['gw_cpu_cores']:.2f}" if r["target"] == "gateway" else "",
            f"{r['gw_rss_kb'] / 1024:.1f}" if r["target"] == "gateway" and r.get("gw_rss_kb") else "",
            f"{noisy}{r['foreign_cores']:.2f}"
            + (f" ({r['gw_core_other_cores']:.2f})" if r.get("gw_core_other_cores") is not None else "")
            + (f" x{r['attempts']}" if r.get("attempts", 1) > 1 else ""),
        )
    return t


def target_checks(steps: list[dict[str, Any]], comparisons: dict[str, dict[str, Any]], a: argparse.Namespace) -> list:
    """(name, measured, limit, ok) against the issue's targets."""
    checks: list[tuple[str, str, str, bool | None]] = []
    gw = {f"{r['mode']}/{r['load']}": r for r in steps if r["target"] == "gateway"}
    unary_max = gw.get("unary/max")
    if unary_max:
        cpu = unary_max.get("gw_cpu_ms_per_req")
        if cpu is not None:
            checks.append(("gateway CPU per request (unary, max load)", f"{cpu:.3f} ms", "<= 0.5 ms", cpu <= 0.5))
        checks.append(("max throughput, one worker (unary)", f"{unary_max['rps']:.0f} rps", ">= 1500", None))
        checks[-1] = (*checks[-1][:3], unary_max["rps"] >= 1500)
    for key, cmp_ in comparisons.items():
        mode, load = key.split("/")
        if load == "r300" and mode == "unary" and cmp_.get("added_p99_ms") is not None:
            v = cmp_["added_p99_ms"]
            checks.append(("added p99 at 300 rps (unary)", f"{v:.2f} ms", "<= 2 ms", v <= 2.0))
        if mode == "stream" and load != "max" and cmp_.get("added_ttfb_p50_ms") is not None:
            v = cmp_["added_ttfb_p50_ms"]
            checks.append((f"added time to first byte, p50 ({load}, stream)", f"{v:.2f} ms", "<= 1 ms", v <= 1.0))
    return checks


# ====================================================================================================================
# Main
# ====================================================================================================================


def machine_meta(a: argparse.Namespace, upstream: Upstream) -> dict[str, Any]:
    model_name = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model_name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for pkg in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "orjson", "prometheus_client"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:
            versions[pkg] = None
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host_cpus": os.cpu_count(),
        "cpu_model": model_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gw_cpus": a.gw_cpus,
        "load_cpus": a.load_cpus,
        "upstream": upstream.kind,
        "upstream_url": upstream.base,
        "wrk": shutil.which(a.wrk) if not a.no_wrk else None,
        "duration_s": a.duration,
        "open_loop_warmup_s": a.ol_warmup,
        "versions": versions,
    }


def plan(a: argparse.Namespace) -> list[Step]:
    steps = []
    modes = [False, True] if not a.no_stream else [False]
    if a.stream_only:
        modes = [True]
    for stream in modes:
        loads: list[tuple[str, float, int]] = [(f"r{r:g}", r, 0) for r in a.rates]
        loads += [("max", 0.0, c) for c in a.conns]
        for name, rate, conns in loads:
            if a.only and name not in a.only:
                continue
            for target in ("gateway",) if a.no_direct else ("direct", "gateway"):
                steps.append(Step(target, stream, name, rate, conns))
    return steps


def run_steps(a: argparse.Namespace, console: Any, runner: Runner) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    steps = plan(a)
    results: list[dict[str, Any]] = []
    log(console, f"warm-up: {a.warmup:g} s of closed-loop load through the gateway")
    runner.warm_up(a.warmup)
    rss_start = mem_kb(runner.gw_pid)
    with Progress(
        TextColumn("{task.description}"), BarColumn(bar_width=20), TimeElapsedColumn(), console=console
    ) as progress:
        for step in steps:
            results.append(runner.run_step(step, progress))
    comparisons = {}
    by_key = {(r["target"], f"{r['mode']}/{r['load']}"): r for r in results}
    for (target, key), r in by_key.items():
        if target == "gateway" and ("direct", key) in by_key:
            comparisons[key] = compare(by_key[("direct", key)], r)
    rss_end = mem_kb(runner.gw_pid)
    return {
        "steps": results,
        "comparisons": comparisons,
        "gw_rss_kb_after_warmup": rss_start.get("VmRSS"),
        "gw_rss_kb_end": rss_end.get("VmRSS"),
        "gw_peak_rss_kb": rss_end.get("VmHWM"),
    }


def run_soak(a: argparse.Namespace, console: Any, runner: Runner) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    log(console, f"warm-up: {a.warmup:g} s of closed-loop load through the gateway")
    runner.warm_up(a.warmup)
    cmd = [*pin_prefix(a.load_cpus), sys.executable, str(Path(__file__).resolve()), "_load"]
    cmd += ["--port", str(runner.gw.port), "--model", a.model, "--rate", str(a.soak_rate)]
    cmd += ["--duration", str(a.soak), "--warmup", "0", "--stream-every", str(a.soak_stream_every)]
    samples: list[tuple[float, int]] = []
    w = CpuWindow(runner.gw_pid, runner.ours, runner.gw_cpus)
    w.start()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    next_sample = t0
    out, err = "", ""
    with Progress(
        TextColumn("{task.description}"), BarColumn(bar_width=30), TimeElapsedColumn(), TimeRemainingColumn()
    ) as progress:
        task = progress.add_task("soak", total=a.soak)
        while True:
            now = time.monotonic()
            if now >= next_sample:
                rss = mem_kb(runner.gw_pid).get("VmRSS", 0)
                samples.append((round(now - t0, 1), rss))
                next_sample += a.soak_interval
                progress.update(task, description=f"soak {a.soak_rate:g} rps, gateway RSS {rss / 1024:.1f} MB")
            try:
                out, err = p.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                progress.update(task, completed=min(time.monotonic() - t0, a.soak))
    cpu = w.stop()
    samples.append((round(time.monotonic() - t0, 1), mem_kb(runner.gw_pid).get("VmRSS", 0)))
    load = next((json.loads(x[11:]) for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if load is None:
        raise RuntimeError(f"soak: no result from the load generator:\n{out}\n{err}")
    # "first" = the first sample after 10% of the run (imports, pools and allocator arenas settle first)
    settled = [s for s in samples if s[0] >= max(a.soak * 0.1, a.soak_interval)] or samples
    first, last = settled[0][1], samples[-1][1]
    peak = max(s[1] for s in samples)
    half = [s for s in samples if s[0] >= a.soak / 2]
    slope = _slope(half) * 60 / 1024 if len(half) >= 3 else None  # MB per minute over the second half
    growth_2nd_half = last - half[0][1] if half else None  # a leak keeps growing; a bounded cache levels off
    total = load.get("completed_total") or 0
    return {
        "duration_s": a.soak,
        "rate": a.soak_rate,
        "stream_every": a.soak_stream_every,
        "soak_interval": a.soak_interval,
        "load": load,
        "cpu": cpu,
        "gw_cpu_ms_per_req": round(cpu["gw_cpu_s"] * 1e3 / total, 4) if total else None,
        "rss_samples_kb": samples,
        "rss_first_kb": first,
        "rss_first_at_s": settled[0][0],
        "rss_last_kb": last,
        "rss_peak_kb": peak,
        "vm_hwm_kb": mem_kb(runner.gw_pid).get("VmHWM"),
        "rss_growth_kb": last - first,
        "rss_growth_2nd_half_kb": growth_2nd_half,
        "rss_slope_mb_per_min_2nd_half": None if slope is None else round(slope, 3),
    }


def _slope(points: list[tuple[float, int]]) -> float:
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den if den else 0.0


def print_soak(console: Any, s: dict[str, Any]) -> None:
    from rich.table import Table

    ld = s["load"]
    t = Table(title=f"Soak: {s['duration_s']:g} s at {s['rate']:g} rps through the gateway")
    t.add_column("metric")
    t.add_column("value", justify="right")
    flat = s["rss_growth_kb"] <= max(1024, 0.02 * s["rss_first_kb"])
    g2 = s["rss_growth_2nd_half_kb"]
    flat2 = g2 is not None and g2 <= max(1024, 0.02 * s["rss_last_kb"])
    rows = [
        ("requests ok / errors", f"{ld['ok']} / {ld['errors']}"),
        ("achieved rps", f"{ld['rps']:.0f}"),
        ("latency p50 / p99 ms", f"{fmt(ld['p50_ms'])} / {fmt(ld['p99_ms'])}"),
        ("gateway CPU ms/req", fmt(s["gw_cpu_ms_per_req"], 3)),
        ("foreign CPU (cores)", f"{s['cpu']['foreign_cores']:.2f}"),
        (f"RSS first (at {s['rss_first_at_s']:g} s) MB", f"{s['rss_first_kb'] / 1024:.1f}"),
        ("RSS last MB", f"{s['rss_last_kb'] / 1024:.1f}"),
        ("RSS peak MB (sampled / VmHWM)", f"{s['rss_peak_kb'] / 1024:.1f} / {(s['vm_hwm_kb'] or 0) / 1024:.1f}"),
        ("RSS growth first -> last MB", f"{s['rss_growth_kb'] / 1024:+.2f}"),
        ("RSS slope, 2nd half, MB/min", fmt(s["rss_slope_mb_per_min_2nd_half"], 3)),
        ("RSS growth over the 2nd half MB", "-" if g2 is None else f"{g2 / 1024:+.2f}"),
        ("flat from first sample (growth <= max(1 MB, 2%))", "[green]yes[/green]" if flat else "[red]NO[/red]"),
        ("flat over the 2nd half (same rule)", "[green]yes[/green]" if flat2 else "[red]NO[/red]"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    step = max(1, round(60 / max(s["soak_interval"], 1e-3)))
    series = s["rss_samples_kb"][::step] + ([s["rss_samples_kb"][-1]] if len(s["rss_samples_kb"]) % step != 1 else [])
    console.print("  RSS over time: " + ", ".join(f"{t:g} s {kb / 1024:.1f} MB" for t, kb in series))


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="gateway_overhead.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=15.0, help="measured seconds per step (default 15, max 60)")
    ap.add_argument("--ol-warmup", type=float, default=2.0, help="open-loop warm-up seconds per step, not measured")
    ap.add_argument("--warmup", type=float, default=4.0, help="closed-loop warm-up through the gateway at start")
    ap.add_argument("--rates", default="100,300", help="fixed rates, requests/s, comma-separated")
    ap.add_argument("--conns", default="16", help="wrk connections for the max-throughput steps, comma-separated")
    ap.add_argument("--only", default="", help="only these loads, e.g. 'r300,max'")
    ap.add_argument("--no-stream", action="store_true", help="non-streaming steps only")
    ap.add_argument("--no-direct", action="store_true", help="gateway steps only (no baseline: for A/B of builds)")
    ap.add_argument("--stream-only", action="store_true", help="streaming steps only")
    ap.add_argument("--soak", type=float, default=0.0, metavar="SECONDS", help="soak mode: RSS over a long run")
    ap.add_argument("--soak-rate", type=float, default=1000.0, help="soak: requests/s (default 1000)")
    ap.add_argument("--soak-stream-every", type=int, default=2, help="soak: every Nth request streams (default 2)")
    ap.add_argument("--soak-interval", type=float, default=5.0, help="soak: seconds between RSS samples")
    ap.add_argument("--gw-cpus", default="0", help="taskset CPU list for the gateway ('' = no pinning)")
    ap.add_argument("--load-cpus", default="1", help="CPU list for this script, the load and the upstream")
    ap.add_argument("--gw-port", type=int, default=18080)
    ap.add_argument("--upstream", choices=("auto", "nginx", "simulate"), default="auto")
    ap.add_argument("--upstream-port", type=int, default=18000)
    ap.add_argument("--gwbench", default=str(REPO.parent / "shared" / "gwbench"), help="gwbench folder (nginx)")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--gateway-env", action="append", default=[], metavar="K=V", help="extra env for the gateway")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--no-wrk", action="store_true", help="max throughput with our closed-loop generator")
    ap.add_argument("--noise-max", type=float, default=0.15, help="foreign CPU (cores) that makes a step noisy")
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a noisy step (the quietest attempt is kept)")
    ap.add_argument("--quiet-wait", type=float, default=20.0, help="max seconds to wait for a quiet box per step")
    ap.add_argument("--json", metavar="OUT", help="write every number to this JSON file")
    a = ap.parse_args(argv)
    a.rates = [float(x) for x in a.rates.split(",") if x.strip()]
    a.conns = [int(x) for x in a.conns.split(",") if x.strip()]
    a.only = {x.strip() for x in a.only.split(",") if x.strip()}
    if not 0 < a.duration <= STEP_MAX_S or a.ol_warmup > 10 or a.warmup > 30:
        ap.error(f"bounded loads only: --duration <= {STEP_MAX_S}, --ol-warmup <= 10, --warmup <= 30")
    if a.soak < 0 or a.soak > SOAK_MAX_S:
        ap.error(f"--soak must be <= {SOAK_MAX_S} s")
    return a


def main(argv: list[str]) -> int:
    if argv[:1] == ["_load"]:
        load_main(argv[1:])
        return 0
    a = parse_args(argv)
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 200)
    if a.load_cpus:
        # this script (progress display, /proc sampling) stays off the gateway's CPU
        with contextlib.suppress(OSError, ValueError):
            os.sched_setaffinity(0, parse_cpus(a.load_cpus))
    tmp = Path(tempfile.mkdtemp(prefix="gw-overhead-"))
    upstream: Upstream | None = None
    gw: Gateway | None = None

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        upstream = Upstream.start(a, console, tmp)
        problem = sanity(upstream.base, a.model)
        if problem:
            sys.exit(f"the upstream does not answer properly: {problem}")
        gw = Gateway(a, upstream, tmp)
        gw_pid = gw.start()
        problem = sanity(gw.base, a.model)
        if problem:
            sys.exit(f"the gateway does not answer properly: {problem}")
        log(console, f"gateway: pid {gw_pid} on :{gw.port}, cpus {a.gw_cpus or 'any'}; load on cpus {a.load_cpus}")
        runner = Runner(a, console, upstream, gw, gw_pid)
        result: dict[str, Any] = {"meta": machine_meta(a, upstream)}
        if a.soak:
            result["soak"] = run_soak(a, console, runner)
            print_soak(console, result["soak"])
        else:
            result.update(run_steps(a, console, runner))
            console.print(results_table(result["steps"], result["comparisons"]))
            checks = target_checks(result["steps"], result["comparisons"], a)
            result["targets"] = [dict(zip(("name", "measured", "target", "ok"), c, strict=True)) for c in checks]
            for name, measured, limit, ok in checks:
                mark = "[green]ok[/green]" if ok else "[red]MISSED[/red]"
                console.print(f"  {mark}  {name}: {measured} (target {limit})")
            console.print(
                f"  gateway RSS: {(result['gw_rss_kb_after_warmup'] or 0) / 1024:.1f} MB after warm-up, "
                f"{(result['gw_rss_kb_end'] or 0) / 1024:.1f} MB at the end, peak (VmHWM) "
                f"{(result['gw_peak_rss_kb'] or 0) / 1024:.1f} MB"
            )
            noisy = [f"{r['target']} {r['mode']} {r['load']}" for r in result["steps"] if r.get("noisy")]
            if noisy:
                console.print(f"  [yellow]noisy steps (foreign CPU > {a.noise_max} cores): {', '.join(noisy)}")
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=1))
            log(console, f"results written to {a.json}")
    except KeyboardInterrupt:
        console.print("[red]interrupted")
        return 130
    finally:
        if gw is not None:
            gw.stop()
        if upstream is not None:
            upstream.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
