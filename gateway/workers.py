"""``llmops gateway --workers N`` (``server.workers``): one supervisor process and N worker processes on one port.

With one worker (the default) the gateway is one process, as it always was (:mod:`gateway.server`). With more, this
supervisor:

- checks that the port is free (binding it without ``SO_REUSEPORT``, which fails while anything listens there, a
  gateway's workers included), then starts the workers (``python -m gateway.worker``, :mod:`gateway.worker`). Each
  binds its own socket with ``SO_REUSEPORT``, and the kernel spreads new connections over them (docs/runbook.md says
  why not one inherited socket);
- makes a private temporary directory per start for prometheus_client's multiprocess files
  (``PROMETHEUS_MULTIPROC_DIR``, given to the workers only), so two gateways on one host never share one and a
  restart never inherits stale files; the workers read the config from a copy kept there, so a replaced worker runs
  the config the others run even when the file changed; the directory is removed at exit;
- replaces a worker that dies (one log line), after calling ``mark_process_dead`` for its live gauges; its counters
  and histograms stay in the directory, so ``/metrics`` loses none of what it counted;
- gives up, exiting 1 with one line, when workers keep dying within :data:`STARTUP_GRACE_SECONDS` of their start
  (:data:`MAX_START_FAILURES` in a row), with a growing pause between tries;
- on SIGTERM or SIGINT sends SIGTERM to every worker, each draining as one process does (``server.drain_seconds``),
  waits for them (killing any still there well past the drain), removes the directory and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

from prometheus_client.multiprocess import mark_process_dead

from llmops.config import Config, ConfigError, config_from_text, read_config_text
from llmops.config_server import parse_workers, resolve_workers

log = logging.getLogger("llmops.gateway.workers")
_mark_dead: Callable[[int, str], None] = mark_process_dead  # (prometheus_client leaves it untyped)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: A worker that dies sooner than this after its start failed to start.
STARTUP_GRACE_SECONDS = 10.0
#: Failed starts in a row (no worker lasting the grace period in between) after which the supervisor gives up.
MAX_START_FAILURES = 5
BACKOFF_SECONDS = 0.5  # the pause before the replacement of a worker that failed to start, doubling ...
BACKOFF_MAX_SECONDS = 8.0  # ... up to this
POLL_SECONDS = 0.1
#: Shutdown: what a worker may take besides server.drain_seconds and redis.flush_seconds before it is killed.
STOP_MARGIN_SECONDS = 10.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)  # where this code was imported from

Spawn = Callable[[int, bool], "subprocess.Popen[bytes]"]


def run_gateway(
    config_path: str,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "info",
    workers: int | Literal["auto"] | None = None,
    supervised: bool = False,
) -> int:
    """``llmops gateway``: one process, or a supervisor and its workers (``workers``, else ``server.workers``);
    ``supervised``: a supervisor even for one worker (``python -m gateway.workers``: what bench/workers.py runs to
    measure the multiprocess metrics against one plain process)."""
    text = read_config_text(config_path)
    config = config_from_text(text, config_path)
    chosen = workers if workers is not None else config.server.workers
    count = resolve_workers(chosen)
    host = host or config.server.host
    port = port or config.server.port
    if count == 1 and not supervised:
        from gateway.server import serve_config

        serve_config(config, host, port, log_level)
        return 0
    check_workers(config, count, port)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    why = " (auto: one per CPU this process may use)" if chosen == "auto" else ""
    return supervise(text, config, host, port, log_level, count, why)


def check_workers(config: Config, count: int, port: int) -> None:
    """What several workers need that one process does not (``ConfigError`` otherwise)."""
    if port == 0:
        raise ConfigError(f"{count} workers need a fixed port: each binds it itself (not 0)")
    gpu = [m.name for m in config.models if m.pricing is not None and m.pricing.gpu_hour_usd is not None]
    if gpu and config.redis is None:
        raise ConfigError(
            f"{count} workers with GPU-priced models ({', '.join(gpu)}) need redis: without it each worker "
            f"divides the GPU's cost by the tokens it served itself, about 1/{count} of them, and prices tokens "
            f"{count} times too high (configure redis, or run one worker)"
        )


def port_taken(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (anything listening there, with or without ``SO_REUSEPORT``), or
    None when it is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return str(error.strerror or error).lower()
    return None


def supervise(text: str, config: Config, host: str, port: int, log_level: str, count: int, why: str = "") -> int:
    """Run ``count`` workers on ``host:port`` until SIGTERM or SIGINT (0), or until they fail to start (1)."""
    taken = port_taken(host, port)
    if taken is not None:
        print(f"llmops gateway: cannot listen on {host}:{port}: {taken}", file=sys.stderr)
        return 1
    run_dir = tempfile.mkdtemp(prefix="llmops-gateway-")  # private (0700): the config copy and the metrics files
    try:
        metrics_dir = os.path.join(run_dir, "metrics")
        os.mkdir(metrics_dir, 0o700)
        config_copy = os.path.join(run_dir, "config.yaml")
        with open(os.open(config_copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as out:
            out.write(text)
        env = {**os.environ, MULTIPROC_ENV: metrics_dir}
        env["PYTHONPATH"] = worker_pythonpath(os.environ.get("PYTHONPATH"))
        me = os.getpid()
        cpus = worker_cpus(count) if config.server.pin_workers else []

        def spawn(index: int, replacement: bool) -> subprocess.Popen[bytes]:
            args = ["--config", config_copy, "--host", host, "--port", str(port), "--log-level", log_level]
            args += ["--supervisor", str(me)]
            args += ["--cpu", str(cpus[index])] if cpus else []
            args += ["--replacement"] if replacement else ["--announce"] if index == 0 else []
            # its own process group: a terminal's Ctrl+C reaches the supervisor only, which stops the workers
            return subprocess.Popen(
                [sys.executable, "-m", "gateway.worker", *args], env=env, stdin=subprocess.DEVNULL, process_group=0
            )

        drain = config.server.drain_seconds
        flush = config.redis.flush_seconds if config.redis is not None else 0.0
        log.info(
            "starting %d workers%s on %s:%d, each with its own socket (SO_REUSEPORT); /metrics merges their series "
            "(%s)",
            count,
            why,
            host,
            port,
            metrics_dir,
        )
        if cpus:
            shared = " (more workers than CPUs: some share one)" if len(set(cpus)) < count else ""
            log.info("each worker on one CPU (server.pin_workers): %s%s", ", ".join(map(str, cpus)), shared)
        supervisor = Supervisor(spawn, count, metrics_dir, drain, stop_seconds=drain + flush + STOP_MARGIN_SECONDS)
        status, message = supervisor.run()
        if message:
            print(f"llmops gateway: {message}", file=sys.stderr)
        return status
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def worker_cpus(count: int) -> list[int]:
    """``server.pin_workers``: the CPU of each of ``count`` workers, in turn over the CPUs this process may run on
    (its affinity: a container's or taskset's set), so a replaced worker takes its slot's CPU again."""
    available = sorted(os.sched_getaffinity(0))
    return [available[index % len(available)] for index in range(count)]


def worker_pythonpath(current: str | None) -> str:
    """The workers' ``PYTHONPATH``: they import the code the supervisor runs. A source checkout goes first; an
    installed package is found as it was (a site directory on ``PYTHONPATH`` would come before the standard
    library)."""
    sites = {os.path.realpath(p) for p in (*site.getsitepackages(), site.getusersitepackages())}
    first = () if os.path.realpath(_PACKAGE_ROOT) in sites else (_PACKAGE_ROOT,)
    return os.pathsep.join(p for p in (*first, current) if p)


def how_it_ended(returncode: int) -> str:
    """``exited with status 1``, ``killed by SIGKILL``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


@dataclass
class _Slot:
    """One of the N workers: the process now in it, or the time its replacement is due."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    due: float | None = None  # dead: when its replacement starts
    ended: str = ""  # dead: how, for the replacement's log line


class Supervisor:
    """Keeps ``count`` workers running (``spawn(index, replacement)`` starts one) until a signal, then stops them."""

    def __init__(
        self,
        spawn: Spawn,
        count: int,
        metrics_dir: str,
        drain_seconds: float,
        stop_seconds: float,
        grace_seconds: float = STARTUP_GRACE_SECONDS,
        max_failures: int = MAX_START_FAILURES,
        backoff_seconds: float = BACKOFF_SECONDS,
    ) -> None:
        self.spawn = spawn
        self.slots = [_Slot(index) for index in range(count)]
        self.metrics_dir = metrics_dir
        self.drain_seconds = drain_seconds
        self.stop_seconds = stop_seconds
        self.grace_seconds = grace_seconds
        self.max_failures = max_failures
        self.backoff_seconds = backoff_seconds
        self.failures = 0  # workers in a row that died within the grace period of their start
        self._failed_at = float("-inf")  # when the last one did
        self.signals: list[int] = []
        self._wake = threading.Event()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)
        self._wake.set()

    def _sleep(self) -> None:
        self._wake.wait(POLL_SECONDS)
        self._wake.clear()

    def run(self) -> tuple[int, str | None]:
        """Until a signal (0, None) or a crash loop (1, its one-line message); the workers are stopped either way."""
        handled = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            for slot in self.slots:
                self._start(slot, replacement=False)
            status, message = 0, None
            while not self.signals:
                message = self._watch()
                if message is not None:
                    status = 1
                    break
                self._sleep()
            self._stop()
            return status, message
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start(self, slot: _Slot, replacement: bool) -> None:
        slot.due = None
        slot.started = time.monotonic()
        try:
            slot.process = self.spawn(slot.index, replacement)
        except OSError as error:  # cannot even start a process: counts as a failed start
            slot.process = None
            self._failed(slot, f"worker could not be started ({error})", quick=True)
            return
        if replacement:
            log.warning("%s: started worker %d in its place", slot.ended, slot.process.pid)

    def _failed(self, slot: _Slot, ended: str, quick: bool) -> None:
        self.failures = self.failures + 1 if quick else 0
        self._failed_at = time.monotonic()
        slot.ended = ended
        pause = min(self.backoff_seconds * 2 ** (self.failures - 1), BACKOFF_MAX_SECONDS) if quick else 0.0
        slot.due = time.monotonic() + pause

    def _watch(self) -> str | None:
        """Reap dead workers and start due replacements; a message when the workers crash-loop at start."""
        now = time.monotonic()
        for slot in self.slots:
            process = slot.process
            if process is None:
                if slot.due is not None and now >= slot.due:
                    self._start(slot, replacement=True)
                continue
            returncode = process.poll()
            age = now - slot.started
            if returncode is None:
                if self.failures and age >= self.grace_seconds and slot.started > self._failed_at:
                    self.failures = 0  # a worker started after them lasted: the failures were not a loop
                continue
            # its live gauges go; its counters and histograms stay, summed into /metrics
            _mark_dead(process.pid, self.metrics_dir)
            slot.process = None
            self._failed(
                slot, f"worker {process.pid} {how_it_ended(returncode)} after {age:.1f} s", age < self.grace_seconds
            )
            if self.failures >= self.max_failures:
                return (
                    f"workers keep failing at start ({self.failures} in a row within {self.grace_seconds:g} s of "
                    f"starting; the last: {slot.ended}); giving up (their messages are above)"
                )
        return None

    def _stop(self) -> None:
        """SIGTERM to every worker, then wait for their drain; a second SIGINT is passed on (uvicorn stops at once)."""
        alive = [slot.process for slot in self.slots if slot.process is not None and slot.process.poll() is None]
        if alive:
            log.info(
                "stopping %d workers: running requests get up to %g s (server.drain_seconds)",
                len(alive),
                self.drain_seconds,
            )
        for process in alive:
            _send(process, signal.SIGTERM)
        seen = len(self.signals)
        deadline = time.monotonic() + self.stop_seconds
        while any(process.poll() is None for process in alive) and time.monotonic() < deadline:
            if signal.SIGINT in self.signals[seen:]:
                for process in alive:
                    _send(process, signal.SIGINT)
            seen = len(self.signals)
            self._sleep()
        for process in alive:
            if process.poll() is None:
                log.warning("worker %d did not stop within %g s: killed", process.pid, self.stop_seconds)
                process.kill()
                process.wait()
            _mark_dead(process.pid, self.metrics_dir)
        if alive:
            log.info("all workers stopped")


def _send(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
        process.send_signal(signum)


def main(argv: list[str] | None = None) -> int:
    """``python -m gateway.workers``: the supervisor, even for one worker (for measurements; ``llmops gateway``
    is the command to run)."""
    parser = argparse.ArgumentParser(prog="python -m gateway.workers", description=main.__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=parse_workers, default=None)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    try:
        return run_gateway(args.config, args.host, args.port, args.log_level, args.workers, supervised=True)
    except ConfigError as error:
        print(f"python -m gateway.workers: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
