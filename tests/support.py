"""Helpers for tests that run the real processes (simulator, gateway) on free local ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from llmops.testing.processes import free_port, redis_server  # noqa: F401  (re-exported for the tests)

REPO = Path(__file__).resolve().parents[1]
LLMOPS = [sys.executable, "-m", "llmops.cli"]


def wait_http(
    url: str, timeout: float = 20.0, process: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Wait until ``url`` answers 200 (fail early if ``process`` died); errors show the process's output, or the
    tail of ``log`` when it writes to a file."""

    def output() -> str:
        if log is not None:
            return log.read_text()[-4000:]
        return process.stdout.read() if process is not None and process.stdout else ""

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before {url} answered:\n{output()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as error:
            last = error
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s: {last}\n{output()}")


@contextmanager
def running(
    args: list[str], ready_url: str, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen]:
    """Run ``llmops ARGS`` until the block ends; ready once ``ready_url`` answers 200. With ``log``, its output goes
    to that file (for tests that read what it logged)."""
    output = log.open("w") if log is not None else None
    process = subprocess.Popen(
        [*LLMOPS, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=output if output is not None else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_http(ready_url, process=process, log=log)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()
        if output is not None:
            output.close()


@contextmanager
def simulator(*extra: str, port: int | None = None) -> Iterator[str]:
    """A running ``llmops simulate``; yields its base URL (``http://127.0.0.1:PORT``)."""
    port = port or free_port()
    with running(["simulate", "--port", str(port), *extra], f"http://127.0.0.1:{port}/health"):
        yield f"http://127.0.0.1:{port}"


def gateway_config(path: Path, models: list[dict[str, Any]], **sections: Any) -> Path:
    """Write a gateway config with ``models`` (and other top-level sections) to ``path``."""
    path.write_text(yaml.safe_dump({"models": models, **sections}, sort_keys=False))
    return path


@contextmanager
def gateway(
    config: Path, env: dict[str, str] | None = None, port: int | None = None, log: Path | None = None
) -> Iterator[str]:
    """A running ``llmops gateway``; yields its base URL (its log in ``log``, when given)."""
    port = port or free_port()
    args = ["gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with running(args, f"http://127.0.0.1:{port}/ready", env=env, log=log):
        yield f"http://127.0.0.1:{port}"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``GET url/metrics`` as ``{(sample name, sorted labels): value}``."""
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    total = 0.0
    for (sample_name, sample_labels), value in samples.items():
        if sample_name == name and all((k, v) in sample_labels for k, v in labels.items()):
            total += value
    return total


class ThreadServer:
    """A real aiohttp server in a thread of its own, for tests that call it from synchronous code (and from
    subprocesses): :meth:`routes` adds the handlers; a context manager that starts and stops it."""

    def __init__(self) -> None:
        import threading

        self.port = free_port()
        self._ready = threading.Event()
        self._stop: Any = None
        self._loop: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def routes(self, app: Any) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        import asyncio

        from aiohttp import web

        async def main() -> None:
            app = web.Application()
            self.routes(app)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

        asyncio.run(main())

    def __enter__(self) -> Any:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class ScriptedUpstream(ThreadServer):
    """A real HTTP server (aiohttp, in a thread) that records what the gateway sends and answers as scripted.

    ``reply`` is ``(status, headers, body_bytes)``, or a list of ``bytes`` chunks sent as a stream with a pause
    between them. Used where the test must see the exact upstream request, or an upstream misbehaving in ways the
    simulator does not (spaced JSON, legacy error shapes, auth failures).
    """

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []
        self.reply: Any = (200, {"Content-Type": "application/json"}, b"{}")

    def routes(self, app: Any) -> None:
        import asyncio

        from aiohttp import web

        async def handle(request: web.Request) -> web.StreamResponse:
            import orjson

            raw = await request.read()
            self.received.append(
                {
                    "path": request.path,
                    "headers": {k.lower(): v for k, v in request.headers.items()},
                    "body": orjson.loads(raw),
                }
            )
            reply = self.reply
            if isinstance(reply, list):
                response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await response.prepare(request)
                for chunk in reply:
                    await response.write(chunk)
                    await asyncio.sleep(0.01)
                return response
            status, headers, body = reply
            return web.Response(status=status, headers=headers, body=body)

        app.router.add_route("POST", "/{tail:.*}", handle)

    def __enter__(self) -> ScriptedUpstream:
        return super().__enter__()


@contextmanager
def monitors(config: Path, port: int | None = None) -> Iterator[str]:
    """A running ``llmops monitors`` worker; yields the base URL of its /metrics endpoint."""
    port = port or free_port()
    with running(["monitors", "--config", str(config), "--metrics-port", str(port)], f"http://127.0.0.1:{port}/health"):
        yield f"http://127.0.0.1:{port}"


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; returns that, or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


@asynccontextmanager
async def serve_post(path: str, handler: Callable[[Any], Awaitable[Any]]) -> AsyncIterator[str]:
    """An aiohttp server in this event loop answering ``POST path`` with ``handler``, on a free port; yields its
    base URL (``http://127.0.0.1:PORT``)."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
