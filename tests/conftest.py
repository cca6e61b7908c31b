"""Shared fixtures.

This module imports nothing beyond pytest at collection time, so that ``tests/gpu/test_gpu_real.py`` runs on a bare GPU
host that has only pytest, prometheus_client, nvidia-ml-py and torch (``tests/gpu/test_gpu_standalone.py`` checks it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from llmops.simulator.background import BackgroundSimulator
    from monitors.store import SampleStore

# -- simulator ---------------------------------------------------------------------------------------------------

SimulatorFactory = Callable[..., "BackgroundSimulator"]


@pytest.fixture
def simulator_factory() -> Iterator[SimulatorFactory]:
    """Start in-process simulators (a thread each, on a free port) with settings overrides; stopped at teardown.

    Defaults differ from the command line's for speed: ``ttft_ms=0`` and ``tokens_per_second=0``.
    """
    from llmops.simulator.background import BackgroundSimulator
    from llmops.simulator.settings import build_settings

    started: list[BackgroundSimulator] = []

    def start(**overrides: Any) -> BackgroundSimulator:
        values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "ttft_ms": 0, "tokens_per_second": 0}
        values.update(overrides)
        simulator = BackgroundSimulator(build_settings(**values)).start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


@pytest.fixture
def simulator_echo(simulator_factory: SimulatorFactory) -> BackgroundSimulator:
    """A fast simulator in echo mode (answers with the last user message)."""
    return simulator_factory(echo=True)


# -- redis ---------------------------------------------------------------------------------------------------------


@pytest.fixture()
def redis_url() -> Iterator[str]:
    """A private ``redis-server`` on a free port for one test (killable by it); its URL."""
    from tests.support import redis_server

    with redis_server() as url:
        yield url


@pytest.fixture()
async def store(redis_url: str) -> AsyncIterator[SampleStore]:
    """The monitors' view of that Redis (consumer ``first`` of group ``llmops-monitors``), its group created."""
    from monitors.store import SampleStore

    sample_store = SampleStore.connect(redis_url, "llmops-monitors", "first")
    await sample_store.ensure_group()
    yield sample_store
    await sample_store.close()
