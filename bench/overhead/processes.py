"""Process control: the fake upstream (gwbench's nginx, or ``llmops simulate``) and gateway processes, pinned to
CPUs with taskset, plus the small HTTP helpers that check they answer."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import one_write
from .configs import config_yaml
from .load import API_KEY, CHAT_PATH, chat_body


def log(console: Any, msg: str) -> None:
    """A timestamped line on the rich console."""
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
    """The taskset prefix that pins a command to ``cpus`` (none without taskset or without a list)."""
    return ["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []


def port_busy(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
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
    """GET (or POST ``body``) with the bench's API key: (status, body); status 0 when nothing answered."""
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
    """Poll ``url`` until it answers 200 (True), ``seconds`` pass or ``proc`` exits (False)."""
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
    """The ``llmops`` CLI of this interpreter's environment."""
    exe = Path(sys.executable).parent / "llmops"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "llmops.cli"]


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
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
    """The fake upstream: started here (nginx or simulate) or found already answering on the port (external)."""

    kind: str  # nginx | nginx-one-write | simulate | external
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
        gwb = Path(a.gwbench) if a.gwbench else None
        if port_busy(port):
            problem = sanity(base, a.model)
            if problem:
                sys.exit(f"port {port} is taken by something that is not a usable upstream: {problem}")
            log(console, f"[yellow]reusing the upstream already on :{port}[/yellow] (its CPU pinning is unknown)")
            return cls("external", base, port, pids=listeners(port))
        if a.upstream == "nginx-one-write":
            problem = one_write.missing(gwb)
            if problem or gwb is None:
                sys.exit(f"--upstream nginx-one-write: {problem}")
            proc = one_write.start(gwb, port, tmp, pin_prefix(a.load_cpus))
            if not wait_for(base + "/health", 10, proc):
                stop_process(proc)
                sys.exit(f"the one-write nginx did not come up; see {tmp / 'nginx-one-write'}")
            up = cls("nginx-one-write", base, port, proc=proc, started=True)
            up.pids = listeners(port)
            log(console, f"upstream: nginx, one write per stream, on :{port} (pids {up.pids}, cpus {a.load_cpus})")
            return up
        nginx_ok = (
            gwb is not None
            and (shutil.which("nginx") or Path("/usr/sbin/nginx").exists())
            and (gwb / "upstream.sh").exists()
        )
        if a.upstream in ("auto", "nginx") and nginx_ok and gwb is not None:
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
            sys.exit("--upstream nginx needs nginx and gwbench's upstream.sh (set GWBENCH_DIR; run its setup.sh)")
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

    @classmethod
    def running(cls, a: argparse.Namespace, console: Any, tmp: Path, stack: contextlib.ExitStack) -> Upstream:
        """:meth:`start`, stopped when ``stack`` closes, and checked to answer a chat request (or exit with why)."""
        upstream = cls.start(a, console, tmp)
        stack.callback(upstream.stop)
        problem = sanity(upstream.base, a.model)
        if problem:
            sys.exit(f"the upstream does not answer properly: {problem}")
        return upstream

    def stop(self) -> None:
        if self.kind == "nginx" and self.started and self.gwbench is not None:
            env = dict(os.environ, UPSTREAM_PORT=str(self.port))
            subprocess.run([str(self.gwbench / "upstream.sh"), "stop"], env=env, capture_output=True)
        elif self.kind in ("simulate", "nginx-one-write"):
            stop_process(self.proc)


class Gateway:
    """One ``llmops gateway`` process (one uvicorn worker) routing ``--model`` to the upstream. ``source``: a checkout
    whose code it runs (first on its PYTHONPATH, and its working directory: the A/B mode); ``name`` names its files;
    ``config``: ``bare`` or ``production`` (with ``redis_url``)."""

    def __init__(
        self,
        a: argparse.Namespace,
        upstream: Upstream,
        tmp: Path,
        port: int | None = None,
        source: Path | None = None,
        name: str = "gateway",
        config: str = "bare",
        redis_url: str | None = None,
    ) -> None:
        self.a = a
        self.port = a.gw_port if port is None else port
        self.port_flag = "--gw-port" if port is None else "--baseline-port"
        self.source = source
        self.base = f"http://127.0.0.1:{self.port}"
        self.kind = config  # bare | production (configs.py)
        self.config = tmp / f"{name}.yaml"
        self.config.write_text(config_yaml(config, a.model, upstream.base, redis_url))
        self.log_path = tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for kv in self.a.gateway_env:
            k, _, v = kv.partition("=")
            env[k] = v
        if self.source is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.source), env.get("PYTHONPATH", "")) if p)
        return env

    def command(self) -> list[str]:
        """The gateway's command line (the caller pins it)."""
        return [
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

    def start(self) -> int:
        if port_busy(self.port):
            sys.exit(f"gateway port {self.port} is taken; pick another with {self.port_flag}")
        cmd = [*pin_prefix(self.a.gw_cpus), *self.command()]
        logf = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(  # cwd: where ``python -m llmops.cli`` (no llmops script) imports from
            cmd, stdout=logf, stderr=subprocess.STDOUT, env=self.env(), cwd=self.source, start_new_session=True
        )
        if not wait_for(self.base + "/ready", 30, self.proc):
            self.stop()
            sys.exit(f"the gateway did not become ready; see {self.log_path}:\n{self.log_path.read_text()[-2000:]}")
        return self.proc.pid

    def launch(self, console: Any, what: str) -> int:
        """Start, check that it answers a chat request (exit if not), log it; its pid."""
        pid = self.start()
        problem = sanity(self.base, self.a.model)
        if problem:
            sys.exit(f"the gateway does not answer properly: {problem}")
        cpus = self.a.gw_cpus or "any"
        log(console, f"{what}: pid {pid} on :{self.port}, cpus {cpus}; load on cpus {self.a.load_cpus}")
        return pid

    def stop(self) -> None:
        stop_process(self.proc)


class BenchRedis:
    """A private redis-server (no persistence) pinned to the load CPUs, for the production configuration."""

    def __init__(self, port: int, cpus: str, tmp: Path) -> None:
        self.port = port
        binary = shutil.which("redis-server") or "/usr/sbin/redis-server"
        if not Path(binary).exists():
            sys.exit("--configs production needs redis-server (apt-get install redis-server)")
        if port_busy(port):
            sys.exit(f"port {port} is taken; pick another with --redis-port")
        cmd = [*pin_prefix(cpus), binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        cmd += ["--appendonly", "no", "--databases", "4"]
        logf = open(tmp / "redis.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + 10
        while not port_busy(port):
            if self.proc.poll() is not None or time.monotonic() > end:
                stop_process(self.proc)
                sys.exit(f"redis-server did not start; see {tmp / 'redis.log'}")
            time.sleep(0.05)

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        stop_process(self.proc)
