"""Run a simulator inside the current process, in a thread with its own event loop (tests, demo, benchmarks).

with BackgroundSimulator(SimulatorSettings(port=0, echo=True)) as sim:
    client = openai.OpenAI(base_url=sim.base_url, api_key="unused")
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Self

from aiohttp import web

from llmops.simulator.server import SIMULATOR_KEY, Simulator, create_app, new_event_loop
from llmops.simulator.settings import SimulatorSettings


class BackgroundApp:
    """An aiohttp app served from a daemon thread with its own event loop; port 0 picks a free port."""

    thread_name = "llmops-background-app"

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: what a client's or a gateway deployment's ``base_url`` is."""
        return self.url + "/v1"

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving; returns once the port listens (raises what stopped it otherwise)."""
        self._thread = threading.Thread(target=self._main, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"{self.thread_name} did not start within {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread to end."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _main(self) -> None:
        loop = new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as error:  # reported to start() when it happens before ready
            self._error = error
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()


class BackgroundSimulator(BackgroundApp):
    """The vLLM-like simulator served from a daemon thread; ``port=0`` in the settings picks a free port."""

    thread_name = "llmops-simulator"

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        super().__init__(create_app(settings), settings.host, settings.port)

    @property
    def simulator(self) -> Simulator:
        """The app's state: engine, faults and settings (touch it only from the simulator's loop, or read it)."""
        return self.app[SIMULATOR_KEY]
