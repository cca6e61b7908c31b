"""The request, and our load generator: open loop (a fixed rate) or closed loop (N connections), on raw keep-alive
HTTP/1.1 connections (asyncio + uvloop + httptools). It runs as a subprocess pinned to the load CPUs
(``gateway_overhead.py _load ...``) and prints one ``BENCH_JSON {...}`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from .stats import summarize

API_KEY = "sk-bench-local-only"
MODEL = "bench-model"
CHAT_PATH = "/v1/chat/completions"
STEP_MAX_S = 60  # bounded loads: no single step may run longer than this
SOAK_MAX_S = 3600
ENTRY = Path(__file__).resolve().parent.parent / "gateway_overhead.py"  # runs this generator as ``... _load``
REPO = ENTRY.parent.parent


def chat_body(model: str, stream: bool) -> bytes:
    """A small chat completion request (50 tokens at most)."""
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
    """The whole HTTP/1.1 request, ready to write on a keep-alive connection."""
    body = chat_body(model, stream)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def load_command(port: int, model: str, *args: str) -> list[str]:
    """The command line that runs this generator against 127.0.0.1:port (the caller adds the CPU pinning)."""
    return [sys.executable, str(ENTRY), "_load", "--port", str(port), "--model", model, *args]


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
    """The ``_load`` subcommand: one bounded load against 127.0.0.1, the result as a ``BENCH_JSON`` line."""
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
