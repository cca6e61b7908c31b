"""The review page over HTTP (a real aiohttp server and a real Redis): sign-in with reviewer keys, cookies, CSRF
refusals, one vote per reviewer, identities only after the vote; the queues fed from committed samples (random,
low score, negative feedback, variant pairs with the judge's verdict); and ``llmops monitors show`` with votes."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from llmops.config import MonitorsConfig
from llmops.config_review import ReviewConfig
from llmops.contract import FEEDBACK_STREAM, sampling_key
from monitors.metrics import MonitorMetrics
from monitors.review.feed import ReviewFeed
from monitors.review.items import Answer, ReviewItem
from monitors.review.site import ReviewSite
from monitors.review.store import ReviewStore
from monitors.store import SampleStore
from tests.monitors.review_support import REVIEWER_KEYS, chat_sample, reviewers
from tests.support import LLMOPS, REPO

QUEUES = [
    {"name": "ab", "mode": "pair"},
    {"name": "low", "mode": "single", "models": ["chat"], "when": "low_score", "max_score": 0.4},
    {"name": "thumbs", "mode": "single", "models": ["chat"], "when": "negative_feedback"},
    {"name": "random", "mode": "single", "models": ["other"], "rate": 1.0},
]


def settings(**review: Any) -> MonitorsConfig:
    return MonitorsConfig(review=ReviewConfig(enabled=True, reviewers=reviewers(), queues=QUEUES, **review))


def a_pair(i: int = 0) -> ReviewItem:
    answers = [
        Answer("alpha", "app", "alpha", f"req-{i}-a", "answer A"),
        Answer("beta", "app", "beta", f"req-{i}-b", "B"),
    ]
    return ReviewItem(f"item{i}", "pair", "ab", "app", "variants", [{"role": "user", "content": "질문"}], answers)


@pytest.fixture
async def site(store: SampleStore) -> AsyncIterator[tuple[TestClient, ReviewStore]]:
    review = ReviewStore(store.redis)
    app = web.Application()
    ReviewSite(settings().review, review, MonitorMetrics()).add_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client, review


def token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def sign_in(client: TestClient, name: str = "alice") -> str:
    """Sign in; returns the session's CSRF token."""
    page = await client.get("/review/login")
    response = await client.post("/review/login", data={"csrf": token(await page.text()), "key": REVIEWER_KEYS[name]})
    assert response.status == 200 and response.url.path == "/review"
    return token(await response.text())


async def test_sign_in_cookies_and_csrf(site: tuple[TestClient, ReviewStore]) -> None:
    client, _ = site
    first = await client.get("/review", allow_redirects=False)
    assert first.status == 303 and first.headers["Location"] == "/review/login"
    assert "default-src 'none'" in first.headers["Content-Security-Policy"]
    page = await client.get("/review/login")
    login_cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in login_cookie and "SameSite=Strict" in login_cookie and "Path=/review" in login_cookie
    form = token(await page.text())
    # the sign-in form without its token, with a foreign origin, or with a wrong key
    assert (await client.post("/review/login", data={"key": REVIEWER_KEYS["alice"]})).status == 403
    foreign = {"Origin": "https://evil.example"}
    data = {"csrf": form, "key": REVIEWER_KEYS["alice"]}
    assert (await client.post("/review/login", data=data, headers=foreign)).status == 403
    wrong = await client.post("/review/login", data={"csrf": form, "key": "nope"})
    assert wrong.status == 401 and "Unknown reviewer key" in await wrong.text()
    signed = await client.post("/review/login", data=data, allow_redirects=False)
    cookie = signed.headers["Set-Cookie"]
    assert signed.status == 303 and "llmops_review=" in cookie and "SameSite=Strict" in cookie and "HttpOnly" in cookie
    home = await client.get("/review")
    assert home.status == 200 and ">alice<" in await home.text()
    assert home.headers["Content-Type"] == "text/html; charset=utf-8" and home.headers["Cache-Control"] == "no-store"
    session = token(await home.text())
    # a sign-out without the session's token is refused; with it, the session ends
    assert (await client.post("/review/logout", data={"csrf": form})).status == 403
    out = await client.post("/review/logout", data={"csrf": session}, allow_redirects=False)
    assert out.status == 303
    assert (await client.get("/review", allow_redirects=False)).status == 303


async def test_votes_need_the_token_count_once_and_reveal_after(site: tuple[TestClient, ReviewStore]) -> None:
    client, review = site
    await review.enqueue(a_pair(), 100)
    csrf = await sign_in(client)
    shown = await client.get("/review/q/ab")
    html = await shown.text()
    assert "answer A" in html and "alpha" not in html and "beta" not in html and "질문" in html
    swapped = await review.shown("alice", "item0")
    assert swapped is not None
    # identities are not revealed before a vote
    early = await client.get("/review/q/ab/item0/reveal", allow_redirects=False)
    assert early.status == 303
    url = "/review/q/ab/item0/vote"
    assert (await client.post(url, data={"choice": "left"})).status == 403
    assert (await client.post(url, data={"choice": "left", "csrf": "forged"})).status == 403
    assert (await client.post(url, data={"choice": "sideways", "csrf": csrf})).status == 400
    voted = await client.post(url, data={"choice": "left", "csrf": csrf})
    assert voted.status == 200 and voted.url.path == "/review/q/ab/item0/reveal"
    text = await voted.text()
    assert "alpha" in text and "beta" in text
    left = "beta" if swapped else "alpha"
    assert re.search(r'id="reveal-left">\s*<h2>Left · 왼쪽: <span class="identity">' + left, text)
    again = await client.post(url, data={"choice": "right", "csrf": csrf})
    assert again.status == 200  # shown the reveal again; the second vote is not counted
    assert await review.vote_of("item0", "alice") == ("b" if swapped else "a")
    votes = await review.votes_of_request("req-0-a")
    assert [v["winner"] for v in votes.values()] == [left]
    # another reviewer's item was never shown to bob: no vote on it
    bob = TestClient(TestServer(client.app))
    await bob.start_server()
    try:
        bob_csrf = await sign_in(bob, "bob")
        assert (await bob.post(url, data={"choice": "left", "csrf": bob_csrf})).status == 403
    finally:
        await bob.close()
    assert (await client.get("/review/q/nope")).status == 404
    static = await client.get("/review/static/review.js")
    assert static.status == 200 and "data-key" in await static.text()
    assert (await client.get("/review/static/../site.py")).status == 404


async def test_the_queues_are_fed_from_committed_samples(store: SampleStore) -> None:
    review = ReviewStore(store.redis)
    metrics = MonitorMetrics()
    feed = ReviewFeed(settings(), review, store, metrics, sampling_key("test-secret"))
    q = [{"role": "user", "content": "What is 2+2?"}]
    low = chat_sample("low-1", q, "5", model="chat")
    good = chat_sample("good-1", q, "4", model="chat")
    assert await feed.observe(low, {"llm_single:overall": {"score": 0.2, "details": {"rating": 2.8}}}) == 1
    assert await feed.observe(good, {"llm_single:overall": {"score": 0.9, "details": {"rating": 9.1}}}) == 0
    assert await feed.observe(chat_sample("r-1", q, "4", model="other"), {}) == 1  # random, rate 1
    [item_id] = [m.decode() for m in await store.redis.zrange("llmops:review:queue:low", 0, -1)]
    item = await review.item(item_id)
    assert item is not None and (item.judge, item.judge_outcome, item.source) == ("llm_single", "2.8", "low_score")
    # negative feedback: the samples wait; a thumbs down on one queues it
    await feed.feedback_once()  # first run: starts from the stream's end
    await store.redis.xadd(FEEDBACK_STREAM, {"request_id": "good-1", "model": "chat", "rating": "negative"})
    await store.redis.xadd(FEEDBACK_STREAM, {"request_id": "low-1", "model": "chat", "rating": "positive"})
    assert await feed.feedback_once() == 1
    assert await feed.feedback_once() == 0  # read once
    [thumbs] = [m.decode() for m in await store.redis.zrange("llmops:review:queue:thumbs", 0, -1)]
    held = await review.item(thumbs)
    assert held is not None and held.answers[0].request_id == "good-1" and held.judge_outcome == "9.1"
    # variants answering the same conversation become a pair, with the pairwise judge's verdict on it
    alpha = chat_sample("v-a", q, "four", variant="alpha")
    beta = chat_sample("v-b", q, "4", variant="beta")
    assert await feed.observe(alpha, {}) == 0
    verdict = {"winner": "b", "against": "v-a", "details": {"consistent": True}}
    assert await feed.observe(beta, {"pairwise:alpha:beta": verdict}) == 1
    [pair_id] = [m.decode() for m in await store.redis.zrange("llmops:review:queue:ab", 0, -1)]
    pair = await review.item(pair_id)
    assert pair is not None and [a.contestant for a in pair.answers] == ["alpha", "beta"]
    assert (pair.judge, pair.judge_outcome, pair.judge_consistent) == ("pairwise", "b", True)
    assert 'llm_review_items_queued_total{queue="ab",source="variants"} 1.0' in metrics.render().decode()


async def test_monitors_show_prints_the_votes(store: SampleStore, redis_url: str) -> None:
    review = ReviewStore(store.redis)
    item = a_pair(3)
    await review.enqueue(item, 100)
    vote = {"reviewer": "alice", "kind": "pair", "item": item.id, "queue": "ab", "a": "alpha", "b": "beta"}
    await review.vote(item, "alice", "a", vote | {"winner": "alpha", "ts": 1.0}, 3)
    shown = await asyncio.to_thread(
        subprocess.run,
        [*LLMOPS, "monitors", "show", "req-3-b", "--redis-url", redis_url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "reviewer votes" in shown.stdout and "alice" in shown.stdout and "alpha vs beta: alpha" in shown.stdout
