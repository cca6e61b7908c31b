"""The demo's child processes: started in order, each ready before the next, all stopped however the demo ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DemoProcess:
    """One part of the demo: an ``llmops`` command run as a child process in its own session, logging to a file."""

    name: str
    args: list[str]
    ready_url: str
    log_path: Path
    popen: subprocess.Popen | None = None
    log_file: object = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        """Start ``llmops ARGS``, its output going to the log file."""
        self.log_file = self.log_path.open("w")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "llmops.cli", *self.args],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until ``ready_url`` answers 200; raises (with the log) when the process exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.popen.returncode}; its log:\n{self.log_path.read_text()}"
                )
            with contextlib.suppress(OSError), urllib.request.urlopen(self.ready_url, timeout=1) as response:
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready at {self.ready_url} within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop it with SIGINT (killed after 10 s) and close its log."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.log_file is not None:
            self.log_file.close()  # type: ignore[attr-defined]


@contextlib.contextmanager
def run_processes(processes: list[DemoProcess]) -> Iterator[None]:
    """Start ``processes`` in order; stop them all in reverse order however the block ends (Ctrl-C, SIGTERM or
    SIGHUP included; a second Ctrl-C while stopping does not leave any running)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        for process in processes:
            process.start(env)
            process.wait_ready()
        yield
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread() else None
        try:
            for process in reversed(processes):
                process.stop()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)


def in_main_thread() -> bool:
    """Whether this is the main thread (only it may set signal handlers)."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP end the demo as Ctrl-C does (its children run in their own sessions: nobody else stops
    them)."""
    if not in_main_thread():
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
