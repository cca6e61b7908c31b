#!/usr/bin/env python3
"""The gateway's HTTP server: uvicorn as ``gateway/server.py`` runs it, against other ASGI servers, on the same app
(``Gateway(config).asgi``), the same config and the same upstream. Not part of the test suite.

    .venv/bin/python bench/asgi_servers.py                          # uvicorn vs granian, ~6 min on a quiet box
    .venv/bin/python bench/asgi_servers.py --servers uvicorn,granian,granian-cli,hypercorn --json /tmp/servers.json
    .venv/bin/python bench/asgi_servers.py _serve --server granian --config gw.yaml --port 8080   # one server

Servers (each one process, but granian-cli's supervisor, and one event loop: uvloop):
  * ``uvicorn``: ``gateway.server.serve`` itself (httptools, the limits of ``gateway/http_protocol.py``, the drain
    hook of ``GatewayServer``): what ``llmops gateway`` runs;
  * ``granian``: granian's embedded server (``granian.server.embed.Server``: its Rust HTTP stack, hyper, on a Rust
    thread of the same process; the app on this process's loop), HTTP/1 only, with the config's limits that granian
    has an option for (header time, header buffer, requests in progress); SIGTERM starts the gateway's drain clock
    and stops the server;
  * ``granian-rust``: the same with granian's Rust task implementation (``task_impl=rust``);
  * ``granian-cli``: granian's own command line, one worker (``serve_str``), the same limits; its worker is measured;
  * ``hypercorn``: ``hypercorn.asyncio.serve`` (h11), keep-alive, header size and graceful timeout from the config.
  granian and hypercorn are not dependencies of the project: ``pip install granian hypercorn`` into the venv.
  Which behaviours each keeps: ``asgi_probes.py``. Results and the decision: bench/README.md, "ASGI servers".

What a run does, with bench/overhead's pieces (everything on 127.0.0.1, every step bounded):
  * starts the upstream as ``gateway_overhead.py`` does (gwbench's nginx with GWBENCH_DIR, else ``llmops simulate
    --ttft-ms 0 --tokens-per-second 0``), pinned to --upstream-cpus (default: --load-cpus);
  * starts one gateway per server, each on its own port, all pinned to --gw-cpus (CPU 0), with the same config;
  * warms each up, then for --rounds rounds runs every step (unary and stream; each --rates fixed rate, open loop,
    and max throughput, closed loop with --conns connections) against every server, one right after the other, the
    order rotating each round; the CPU meter and the noise re-runs are the overhead bench's;
  * prints per server and step: CPU ms per request pooled over the rounds (and per round), rps, the gateway CPU's
    utilisation, rps per gateway core (the throughput one core would give: when the upstream and the load share a
    core, max throughput may be theirs, not the server's), p50/p99 and the ratios to uvicorn.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from overhead.cli import run_session
from overhead.load import MODEL, REPO, STEP_MAX_S
from overhead.processes import Gateway, Upstream, log, pin_prefix, port_busy, wait_for
from overhead.report import fmt, machine_meta
from overhead.runner import Runner, plan, progress_bar

SERVERS = ("uvicorn", "granian", "granian-rust", "granian-cli", "hypercorn")
CONFIG_ENV = "ASGI_SERVERS_CONFIG"  # granian-cli: the config its worker loads (cli_app)
ENTRY = Path(__file__).resolve()


# ---- the servers (the ``_serve`` subcommand: one process) ------------------------------------------------------------
def _gateway_app(config_path: str, log_level: str) -> Any:
    from gateway.app import Gateway as App
    from llmops.config import load_config

    config = load_config(config_path)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return App(config)


def serve_uvicorn(config_path: str, host: str, port: int, log_level: str) -> None:
    """Exactly what ``llmops gateway`` runs."""
    from gateway.server import serve

    serve(config_path, host, port, log_level)


def serve_granian(config_path: str, host: str, port: int, log_level: str, task_impl: str = "asyncio") -> None:
    """granian's embedded server in this process, on a uvloop loop."""
    import uvloop
    from granian.constants import HTTPModes, Interfaces, TaskImpl
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server.embed import Server

    app = _gateway_app(config_path, log_level)
    limits = app.config.server
    server = Server(
        app.asgi,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        backlog=1024,
        backpressure=limits.max_connections,  # requests in progress (more wait; uvicorn answers 503)
        http1_settings=HTTP1Settings(
            header_read_timeout=max(1, round(limits.header_timeout_seconds * 1000)),
            keep_alive=True,
            max_buffer_size=max(8192, limits.max_header_bytes),  # hyper's read buffer: the headers must fit
        ),
        log_level=LogLevels(log_level.lower()),
        task_impl=TaskImpl(task_impl),
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            app.drain.begin(limits.drain_seconds)
            server.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        await server.serve()

    uvloop.run(main())


def cli_app() -> Any:
    """granian-cli's app factory (in its worker process): the gateway of the config in ``$ASGI_SERVERS_CONFIG``."""
    return _gateway_app(os.environ[CONFIG_ENV], "warning").asgi


def serve_granian_cli(config_path: str, host: str, port: int, log_level: str) -> None:
    """granian's own command line (a supervisor process and one worker process, where the Rust runtime serves on
    its own thread: ``serve_str``), on uvloop, with the same limits as :func:`serve_granian`. This process becomes
    the supervisor; SIGTERM stops the worker after its requests end, without the gateway's drain deadline."""
    from llmops.config import load_config

    limits = load_config(config_path).server
    os.environ[CONFIG_ENV] = str(Path(config_path).resolve())
    argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", host, "--port", str(port)]
    argv += ["--workers", "1", "--loop", "uvloop", "--http", "1", "--no-ws", "--log-level", log_level]
    argv += ["--backpressure", str(limits.max_connections), "--backlog", "1024"]
    argv += ["--http1-header-read-timeout", str(max(1, round(limits.header_timeout_seconds * 1000)))]
    argv += ["--http1-buffer-size", str(max(8192, limits.max_header_bytes))]
    argv += ["--working-dir", str(ENTRY.parent), "asgi_servers:cli_app"]
    os.execv(sys.executable, argv)


def serve_hypercorn(config_path: str, host: str, port: int, log_level: str) -> None:
    """``hypercorn.asyncio.serve`` in this process, on a uvloop loop."""
    import uvloop
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    app = _gateway_app(config_path, log_level)
    limits = app.config.server
    hc = Config()
    hc.bind = [f"{host}:{port}"]
    hc.accesslog = None
    hc.loglevel = log_level.upper()
    hc.keep_alive_timeout = limits.keep_alive_seconds
    hc.h11_max_incomplete_size = limits.max_header_bytes
    hc.graceful_timeout = math.ceil(limits.drain_seconds) + 2
    hc.backlog = 1024

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()

        def stop() -> None:
            app.drain.begin(limits.drain_seconds)
            stopping.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        await serve(app.asgi, hc, shutdown_trigger=stopping.wait, mode="asgi")

    uvloop.run(main())


def serve_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="asgi_servers.py _serve", description="serve the gateway with one ASGI server")
    ap.add_argument("--server", choices=SERVERS, required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log-level", default="warning")
    a = ap.parse_args(argv)
    if a.server == "uvicorn":
        serve_uvicorn(a.config, a.host, a.port, a.log_level)
    elif a.server in ("granian", "granian-rust"):
        serve_granian(a.config, a.host, a.port, a.log_level, "rust" if a.server == "granian-rust" else "asyncio")
    elif a.server == "granian-cli":
        serve_granian_cli(a.config, a.host, a.port, a.log_level)
    else:
        serve_hypercorn(a.config, a.host, a.port, a.log_level)


# ---- the benchmark ---------------------------------------------------------------------------------------------------
class _Worker:
    """A supervisor's Popen with the pid of the worker process that serves (what the CPU meter reads)."""

    def __init__(self, proc: subprocess.Popen[bytes], pid: int) -> None:
        self._proc = proc
        self.pid = pid

    def __getattr__(self, name: str) -> Any:
        return getattr(self._proc, name)


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{d}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
    return out


class ServerGateway(Gateway):
    """One gateway process served by ``server`` (this file's ``_serve``), running this checkout's code."""

    def __init__(self, a: argparse.Namespace, upstream: Upstream, tmp: Path, server: str, port: int) -> None:
        super().__init__(a, upstream, tmp, port=port, source=REPO, name=server)
        self.server = server
        self.port_flag = "--gw-port"

    def start(self) -> int:
        if port_busy(self.port):
            sys.exit(f"port {self.port} ({self.server}) is taken; pick others with --gw-port")
        cmd = [*pin_prefix(self.a.gw_cpus), sys.executable, str(ENTRY), "_serve", "--server", self.server]
        cmd += ["--config", str(self.config), "--port", str(self.port), "--log-level", "warning"]
        logf = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, env=self.env(), cwd=self.source, start_new_session=True
        )
        if not wait_for(self.base + "/ready", 30, self.proc):
            self.stop()
            sys.exit(f"{self.server} did not become ready; see {self.log_path}:\n{self.log_path.read_text()[-2000:]}")
        if self.server == "granian-cli":  # measure its worker (the supervisor idles)
            workers = _children(self.proc.pid)
            if len(workers) != 1:
                self.stop()
                sys.exit(f"granian-cli: expected one worker process, found {workers}")
            self.proc = _Worker(self.proc, workers[0])  # type: ignore[assignment]
        return self.proc.pid


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="asgi_servers.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--servers", default="uvicorn,granian", help=f"the first is the baseline; of {', '.join(SERVERS)}")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, the servers' order rotating (default 3)")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per step (default 10, max 60)")
    ap.add_argument("--ol-warmup", type=float, default=2.0, help="open-loop warm-up seconds per step, not measured")
    ap.add_argument("--warmup", type=float, default=4.0, help="closed-loop warm-up through each gateway at start")
    ap.add_argument("--rates", default="300", help="fixed rates, requests/s, comma-separated")
    ap.add_argument("--conns", default="16", help="connections of the max-throughput steps, comma-separated")
    ap.add_argument("--only", default="", help="only these loads, e.g. 'max' or 'r300'")
    ap.add_argument("--no-stream", action="store_true", help="non-streaming steps only")
    ap.add_argument("--stream-only", action="store_true", help="streaming steps only")
    ap.add_argument("--gw-cpus", default="0", help="taskset CPU list for every server ('' = no pinning)")
    ap.add_argument("--load-cpus", default="1", help="CPU list for this script and the load generators")
    ap.add_argument("--upstream-cpus", default="", help="CPU list for the upstream (default: --load-cpus)")
    ap.add_argument("--gw-port", type=int, default=18280, help="the first server's port; the next ones follow")
    ap.add_argument("--upstream", choices=("auto", "nginx", "simulate"), default="auto")
    ap.add_argument("--upstream-port", type=int, default=18200)
    ap.add_argument("--gwbench", default=os.environ.get("GWBENCH_DIR"), help="gwbench's folder (nginx upstream)")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--no-wrk", action="store_true", help="max throughput with our closed-loop generator")
    ap.add_argument("--noise-max", type=float, default=0.15, help="foreign CPU (cores) that makes a step noisy")
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a noisy step (the quietest attempt is kept)")
    ap.add_argument("--quiet-wait", type=float, default=20.0, help="max seconds to wait for a quiet box per step")
    ap.add_argument("--json", metavar="OUT", help="write every number to this JSON file")
    a = ap.parse_args(argv)
    a.servers = [x.strip() for x in a.servers.split(",") if x.strip()]
    if not a.servers or set(a.servers) - set(SERVERS) or len(set(a.servers)) != len(a.servers):
        ap.error(f"--servers: distinct names of {', '.join(SERVERS)}")
    a.rates = [float(x) for x in a.rates.split(",") if x.strip()]
    a.conns = [int(x) for x in a.conns.split(",") if x.strip()]
    a.only = {x.strip() for x in a.only.split(",") if x.strip()}
    if not 0 < a.duration <= STEP_MAX_S or a.ol_warmup > 10 or a.warmup > 30 or not 1 <= a.rounds <= 20:
        ap.error(f"bounded loads only: --duration <= {STEP_MAX_S}, --ol-warmup <= 10, --warmup <= 30, --rounds 1-20")
    a.no_direct = True  # what the runner's plan and gateways read
    a.gateway_env = []
    return a


def _pooled(rs: list[dict[str, Any]]) -> float | None:
    total = sum(r.get("completed_total") or 0 for r in rs)
    return round(sum(r["gw_cpu_s"] for r in rs) * 1e3 / total, 4) if total else None


def _median(rs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rs if r.get(key) is not None]
    return round(statistics.median(vals), 3) if vals else None


def summarize(results: list[dict[str, Any]], servers: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per step (``mode/load``) and server: CPU ms/req pooled and per round, medians of rps, the gateway CPU's
    utilisation, p50/p99 (and ttfb); for the other servers the ratios to the first (the baseline)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key in dict.fromkeys(f"{r['mode']}/{r['load']}" for r in results):
        out[key] = {}
        for server in servers:
            rs = [r for r in results if r["target"] == server and f"{r['mode']}/{r['load']}" == key]
            s: dict[str, Any] = {
                "cpu_ms_per_req": _pooled(rs),
                "cpu_ms_per_req_rounds": [r["gw_cpu_ms_per_req"] for r in rs],
                "rps": _median(rs, "rps"),
                "gw_cores": _median(rs, "gw_cpu_cores"),
                "p50_ms": _median(rs, "p50_ms"),
                "p99_ms": _median(rs, "p99_ms"),
                "ttfb_p50_ms": _median(rs, "ttfb_p50_ms") if key.startswith("stream") else None,
                "errors": sum(r.get("errors") or 0 for r in rs),
                "noisy": sum(1 for r in rs if r.get("noisy")),
                "rss_mb": max((r.get("gw_rss_kb") or 0) for r in rs) / 1024 if rs else None,
            }
            if s["cpu_ms_per_req"]:
                s["rps_per_core"] = round(1000 / s["cpu_ms_per_req"])  # what one fully used core would serve
            base = out[key].get(servers[0])
            if base is not None and server != servers[0]:
                if s["cpu_ms_per_req"] and base["cpu_ms_per_req"]:
                    s["cpu_ratio"] = round(s["cpu_ms_per_req"] / base["cpu_ms_per_req"], 3)
                    pairs = zip(s["cpu_ms_per_req_rounds"], base["cpu_ms_per_req_rounds"], strict=False)
                    s["cpu_ratio_rounds"] = [round(x / y, 3) for x, y in pairs if x and y]
                if s["rps"] and base["rps"]:
                    s["rps_ratio"] = round(s["rps"] / base["rps"], 3)
            out[key][server] = s
    return out


def verdicts(summary: dict[str, dict[str, dict[str, Any]]], servers: list[str]) -> dict[str, dict[str, Any]]:
    """The decision rule's numbers: a server wins clearly when at max load, unary and stream, it needs >= 15 % less
    CPU per request and serves >= 15 % more requests per second than the baseline (measured rps, and per core)."""
    out = {}
    for server in servers[1:]:
        rows = {k: v[server] for k, v in summary.items() if k.endswith("/max") and server in v}
        base = {k: summary[k][servers[0]] for k in rows}
        cpu_ok = bool(rows) and all((r.get("cpu_ratio") or 9) <= 0.85 for r in rows.values())
        rps_ok = bool(rows) and all((r.get("rps_ratio") or 0) >= 1.15 for r in rows.values())
        per_core_ok = bool(rows) and all(
            r.get("rps_per_core") and b.get("rps_per_core") and r["rps_per_core"] >= 1.15 * b["rps_per_core"]
            for r, b in zip(rows.values(), base.values(), strict=True)
        )
        out[server] = {"cpu_per_req_15pct": cpu_ok, "max_rps_15pct": rps_ok, "rps_per_core_15pct": per_core_ok}
    return out


def print_summary(console: Any, summary: dict[str, dict[str, dict[str, Any]]], servers: list[str]) -> None:
    from rich.table import Table

    t = Table(title=f"ASGI servers, same gateway app and config (ratios: server / {servers[0]})")
    cols = ("step", "server", "CPU ms/req (rounds)", "CPU ratio (rounds)", "rps", "rps ratio", "gw cores")
    cols += ("rps per core", "p50 / p99 ms", "ttfb p50", "RSS MB", "errors")
    for col in cols:
        t.add_column(col, justify="left" if col in ("step", "server") else "right")
    for key, per in summary.items():
        for server, s in per.items():
            rounds = ", ".join(fmt(x, 3) for x in s["cpu_ms_per_req_rounds"])
            ratio = ""
            if s.get("cpu_ratio") is not None:
                ratio = f"{s['cpu_ratio']:.3f} ({', '.join(fmt(x, 3) for x in s.get('cpu_ratio_rounds', []))})"
            t.add_row(
                key + (f" [yellow]({s['noisy']} noisy)" if s["noisy"] else ""),
                server,
                f"{fmt(s['cpu_ms_per_req'], 3)} ({rounds})",
                ratio,
                fmt(s["rps"]),
                fmt(s.get("rps_ratio"), 3),
                fmt(s["gw_cores"]),
                fmt(s.get("rps_per_core")),
                f"{fmt(s['p50_ms'])} / {fmt(s['p99_ms'])}",
                fmt(s["ttfb_p50_ms"]),
                fmt(s["rss_mb"]),
                str(s["errors"]),
            )
    console.print(t)
    console.print(
        "  rps per core = 1000 / CPU ms per request. At max load, gw cores < ~0.95 means the server's CPU was not the "
        "limit (the upstream and the load generator were): read its max rps from rps per core."
    )


def run(a: argparse.Namespace, console: Any, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    up_args = argparse.Namespace(**{**vars(a), "load_cpus": a.upstream_cpus or a.load_cpus})
    upstream = Upstream.running(up_args, console, tmp, stack)
    gateways: dict[str, Gateway] = {}
    for i, server in enumerate(a.servers):
        gw = ServerGateway(a, upstream, tmp, server, a.gw_port + i)
        stack.callback(gw.stop)
        gw.launch(console, server)
        gateways[server] = gw
    runner = Runner(a, console, upstream, gateways)
    for server in a.servers:
        log(console, f"warm-up ({server}): {a.warmup:g} s of closed-loop load")
        runner.warm_up(a.warmup, server)
    steps = plan(a, targets=("gateway",))
    results: list[dict[str, Any]] = []
    with progress_bar(console) as progress:
        for rnd in range(a.rounds):
            order = a.servers[rnd % len(a.servers) :] + a.servers[: rnd % len(a.servers)]
            for step in steps:
                for server in order:
                    r = runner.run_step(dataclasses.replace(step, target=server), progress)
                    r["round"] = rnd + 1
                    results.append(r)
    summary = summarize(results, a.servers)
    print_summary(console, summary, a.servers)
    decided = verdicts(summary, a.servers)
    for server, v in decided.items():
        console.print(f"  {server} vs {a.servers[0]} at max load (unary and stream): " + ", ".join(
            f"{k} {'yes' if ok else 'no'}" for k, ok in v.items()))  # fmt: skip
    meta = machine_meta(a, upstream)
    for pkg in ("granian", "hypercorn"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            meta["versions"][pkg] = version(pkg)
    meta.update(servers=a.servers, rounds=a.rounds, upstream_cpus=a.upstream_cpus or a.load_cpus)
    return {"meta": meta, "steps": results, "summary": summary, "verdicts": decided}


def main(argv: list[str]) -> int:
    if argv[:1] == ["_serve"]:
        serve_main(argv[1:])
        return 0
    return run_session(parse_args(argv), run, "asgi-servers-", width=220)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
