"""Sign-in attempts rate limited in Redis (a real aiohttp server, a real Redis): the (N+1)-th failure from an address
is refused (429, Retry-After, a clear page), a correct key from that address too until the window passes, other
addresses are unaffected, the overall limit holds across addresses, X-Forwarded-For is believed only from a trusted
proxy, the counter moves, the key is never logged; and a Redis outage answers 503 (never a crash) and locks nobody out
once Redis is back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from llmops.config_review import ReviewConfig
from llmops.testing.processes import PersistentRedis
from monitors.metrics import MonitorMetrics
from monitors.review.site import ReviewSite
from monitors.review.store import ReviewStore
from monitors.review.throttle import ADDRESS, SignInLimits
from monitors.store import REPLY_TIMEOUT_SECONDS, redis_client
from tests.monitors.review_support import REVIEWER_KEYS, reviewers
from tests.monitors.test_review_site import token

ALICE = REVIEWER_KEYS["alice"]
WRONG = "rk-wrong-guess-1234"


def config(**limits: Any) -> ReviewConfig:
    return ReviewConfig(enabled=True, reviewers=reviewers(), **limits)


@asynccontextmanager
async def page(
    redis_url: str, settings: ReviewConfig, reply_timeout: float = REPLY_TIMEOUT_SECONDS
) -> AsyncIterator[tuple[TestClient, MonitorMetrics]]:
    """The review page over HTTP on its own Redis client (a worker's), with its metrics."""
    client = redis_client(redis_url, reply_timeout)
    metrics = MonitorMetrics()
    app = web.Application()
    ReviewSite(settings, ReviewStore(client), metrics).add_routes(app)
    try:
        async with TestClient(TestServer(app)) as http:
            yield http, metrics
    finally:
        await client.aclose()


async def sign_in(http: TestClient, key: str, address: str | None = None) -> Any:
    """One sign-in attempt (the form's token first), from ``address`` as a proxy in front would forward it."""
    form = await http.get("/review/login")
    assert form.status == 200
    headers = {"X-Forwarded-For": address} if address else {}
    return await http.post(
        "/review/login", data={"csrf": token(await form.text()), "key": key}, headers=headers, allow_redirects=False
    )


def sign_ins(metrics: MonitorMetrics) -> dict[str, float]:
    return {
        s.labels["outcome"]: s.value
        for family in metrics.sign_ins.collect()
        for s in family.samples
        if s.name.endswith("_total")
    }


async def test_failures_per_address_are_limited(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="llmops.monitors.review")
    settings = config(login_failures_per_address=3, login_failure_window_seconds=3, trusted_proxies=["127.0.0.1"])
    async with page(redis_url, settings) as (http, metrics):
        attacker, other = "203.0.113.7", "198.51.100.9"
        for _ in range(3):
            failed = await sign_in(http, WRONG, attacker)
            assert failed.status == 401 and "Unknown reviewer key" in await failed.text()
        started = time.monotonic()
        limited = await sign_in(http, WRONG, attacker)  # the 4th failure: refused before the key is looked at
        text = await limited.text()
        assert limited.status == 429 and "Too many failed sign-ins from your address" in text
        assert "로그인 실패가 너무 많습니다" in text and 'name="key"' in text  # the form again, with the reason
        retry = int(limited.headers["Retry-After"])
        assert 1 <= retry <= 3
        assert "default-src 'none'" in limited.headers["Content-Security-Policy"]
        # the right key from the limited address is refused too (else the limit would not slow guessing down)
        right = await sign_in(http, ALICE, attacker)
        assert right.status == 429 and "llmops_review=" not in right.headers.get("Set-Cookie", "")
        # another address is unaffected
        elsewhere = await sign_in(http, ALICE, other)
        assert elsewhere.status == 303 and "llmops_review=" in elsewhere.headers["Set-Cookie"]
        assert sign_ins(metrics) == {
            "ok": 1,
            "unknown_key": 3,
            "limited_address": 2,
            "limited_overall": 0,
            "unavailable": 0,
        }
        rendered = metrics.render().decode()
        assert 'llm_review_sign_ins_total{outcome="limited_address"} 2.0' in rendered
        assert attacker not in rendered and ALICE not in rendered  # bounded labels: the outcome only
        # the counter expires with its window (shared in Redis, with an expiry)
        raw = aioredis.from_url(redis_url)
        assert 0 < await raw.pttl(ADDRESS + attacker) <= 3000
        assert int(await raw.get(ADDRESS + attacker)) == 3  # refused attempts do not extend the count
        assert int(await raw.get(ADDRESS + other) or 0) == 0  # a good key gives its attempt back
        await raw.aclose()
        await asyncio.sleep(max(0.0, retry - (time.monotonic() - started)) + 0.2)
        after = await sign_in(http, ALICE, attacker)
        assert after.status == 303 and "llmops_review=" in after.headers["Set-Cookie"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"unknown key from {attacker} (failure 3 of 3" in logged
    assert f"review sign-ins from {attacker} refused" in logged
    assert WRONG not in logged and ALICE not in logged  # keys are never logged


async def test_forwarded_for_is_believed_from_trusted_proxies_only(redis_url: str) -> None:
    async with page(redis_url, config(login_failures_per_address=2)) as (http, metrics):
        # no trusted proxy: a client cannot step out of its limit by claiming another address
        for address in ("203.0.113.1", "203.0.113.2"):
            assert (await sign_in(http, WRONG, address)).status == 401
        assert (await sign_in(http, ALICE, "203.0.113.3")).status == 429
        assert sign_ins(metrics)["limited_address"] == 1

    limits = SignInLimits(aioredis.from_url(redis_url), config(trusted_proxies=["10.0.0.0/8", "127.0.0.1/32"]))

    def seen(peer: str, forwarded: str | None) -> str:
        headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
        return limits.client_address(make_mocked_request("POST", "/review/login", headers=headers).clone(remote=peer))

    assert seen("10.1.2.3", "192.0.2.5") == "192.0.2.5"
    assert seen("10.1.2.3", "6.6.6.6, 192.0.2.5, 10.9.9.9") == "192.0.2.5"  # the client wrote 6.6.6.6
    assert seen("10.1.2.3", "not-an-ip, 10.9.9.9") == "10.9.9.9"  # garbage: the last trusted hop
    assert seen("10.1.2.3", None) == "10.1.2.3"
    assert seen("192.0.2.77", "192.0.2.5") == "192.0.2.77"  # not a trusted proxy: its header is ignored
    assert seen("10.1.2.3", "2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"  # IPv6 counts per /64
    assert seen("::ffff:192.0.2.8", None) == "192.0.2.8"


async def test_the_overall_limit_covers_every_address(redis_url: str) -> None:
    if time.time() % 60 > 55:  # the overall count is per clock minute: keep the test inside one
        await asyncio.sleep(61 - time.time() % 60)
    settings = config(login_failures_per_minute=4, trusted_proxies=["127.0.0.1/32"])
    async with page(redis_url, settings) as (http, metrics):
        for i in range(4):
            assert (await sign_in(http, WRONG, f"192.0.2.{i}")).status == 401
        refused = await sign_in(http, ALICE, "192.0.2.200")
        assert refused.status == 429 and "Too many failed sign-ins on this page right now" in await refused.text()
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert sign_ins(metrics)["limited_overall"] == 1 and sign_ins(metrics)["ok"] == 0


async def test_a_redis_outage_answers_503_and_locks_nobody_out() -> None:
    server = PersistentRedis()
    settings = config(login_failures_per_address=2, login_failure_window_seconds=600)
    try:
        server.start()
        async with page(server.url, settings) as (http, metrics):
            assert (await sign_in(http, ALICE)).status == 303
            home = await http.get("/review")
            assert home.status == 200
            for _ in range(2):
                assert (await sign_in(http, WRONG)).status == 401
            server.stop()
            down = await http.get("/review", allow_redirects=False)
            assert down.status == 503 and down.headers["Retry-After"] == "5"
            assert "cannot be reached" in await down.text()
            assert "default-src 'none'" in down.headers["Content-Security-Policy"]
            refused = await sign_in(http, ALICE)
            assert refused.status == 503 and refused.headers["Retry-After"] == "5"
            assert "cannot be reached" in await refused.text() and 'name="key"' in await refused.text()
            assert sign_ins(metrics)["unavailable"] == 1
            server.start()  # the same data (append-only file): the address is still over its limit, for its window
            assert (await sign_in(http, ALICE)).status == 429
            raw = aioredis.from_url(server.url)
            wait = await raw.pttl(ADDRESS + "127.0.0.1")
            assert 0 < wait <= 600_000  # it ends: nothing is kept without an expiry
            await raw.pexpire(ADDRESS + "127.0.0.1", 1)  # the window passes
            await asyncio.sleep(0.05)
            await raw.aclose()
            assert (await sign_in(http, ALICE)).status == 303
            assert (await http.get("/review")).status == 200
    finally:
        server.__exit__(None, None, None)


async def test_a_hung_redis_answers_503_within_the_reply_timeout() -> None:
    """A Redis that accepts connections but never answers (frozen) costs a page its reply timeout, not for ever."""
    server = PersistentRedis()
    try:
        server.start()
        async with page(server.url, config(), reply_timeout=0.5) as (http, metrics):
            assert (await sign_in(http, ALICE)).status == 303
            server.pause()
            began = time.monotonic()
            hung = await asyncio.wait_for(http.get("/review", allow_redirects=False), 10)
            assert hung.status == 503 and "cannot be reached" in await hung.text()
            refused = await asyncio.wait_for(sign_in(http, ALICE), 10)
            assert refused.status == 503 and sign_ins(metrics)["unavailable"] == 1
            assert time.monotonic() - began < 5, "each request waited about the reply timeout"
            server.resume()
            assert (await sign_in(http, ALICE)).status == 303  # answers again: nothing was locked
            assert (await http.get("/review")).status == 200
    finally:
        server.resume()
        server.__exit__(None, None, None)


def test_limits_need_sane_settings() -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"trusted_proxies": ["10.0.0.0/33"]}, "not an IP address or network"),
        ({"login_failures_per_address": 0}, "login_failures_per_address"),
        ({"login_failure_window_seconds": 0.5}, "login_failure_window_seconds"),
    ]
    for fields, message in bad:
        with pytest.raises(ValueError, match=message):
            config(**fields)
    assert config(trusted_proxies=["10.0.0.0/8", "::1"]).trusted_proxies == ["10.0.0.0/8", "::1"]
