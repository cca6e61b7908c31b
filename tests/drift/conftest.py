"""Fixtures of the drift tests: one private Redis per module, emptied for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from llmops.testing.processes import redis_server


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private redis-server for the module."""
    with redis_server() as url:
        yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on an emptied database."""
    client = aioredis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()
