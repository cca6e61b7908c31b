"""Judges checked against people: agreement with and without ties, Cohen's kappa, position bias and Spearman's rho
equal hand-computed values on a fixed set, through the real vote script and a real Redis; and the queues' rules
(each item shown to a reviewer once, at most N reviewers, one vote each)."""

from __future__ import annotations

import asyncio
import math

import pytest

from llmops.config_review import ReviewConfig
from monitors.metrics import MonitorMetrics
from monitors.review.agreement import cohen_kappa, pair_agreement, position_bias, spearman
from monitors.review.items import Answer, ReviewItem
from monitors.review.scoreboard import Scoreboard
from monitors.review.store import ReviewStore
from monitors.store import SampleStore
from tests.monitors.review_support import reviewers

# (judge outcome, orders agreed, {reviewer: vote})
PAIRS = [
    ("a", True, {"alice": "a", "bob": "a"}),
    ("a", True, {"alice": "b", "bob": "a"}),
    ("b", True, {"alice": "b", "bob": "bothbad"}),
    ("tie", False, {"alice": "a", "bob": "tie"}),
    ("b", True, {"alice": "b"}),
    ("tie", False, {"alice": "tie", "bob": "tie"}),
]
# (judge rating, {reviewer: grade})
SINGLES = [(2, {"alice": 3, "bob": 1}), (5, {"alice": 4}), (7, {"alice": 8}), (9, {"alice": 9})]


def pair(i: int, judge: str | None, consistent: bool | None) -> ReviewItem:
    answers = [Answer("a", "app", "a", f"p{i}-a", "A"), Answer("b", "app", "b", f"p{i}-b", "B")]
    item = ReviewItem(f"pair{i}", "pair", "ab", "app", "variants", [{"role": "user", "content": "q"}], answers)
    item.judge, item.judge_outcome, item.judge_consistent = ("pairwise", judge, consistent) if judge else (None,) * 3
    return item


def single(i: int, rating: float) -> ReviewItem:
    answers = [Answer("chat", "chat", None, f"s{i}", "answer")]
    item = ReviewItem(f"single{i}", "single", "graded", "chat", "random", [{"role": "user", "content": "q"}], answers)
    item.judge, item.judge_outcome = "llm_single", f"{rating:g}"
    return item


def test_hand_computed_agreement_kappa_bias_and_rho() -> None:
    table: dict[tuple[str, str], float] = {}
    for judge, _, votes in PAIRS:
        for vote in votes.values():
            table[(judge, vote)] = table.get((judge, vote), 0) + 1
    found = pair_agreement(table)
    # 11 comparisons; equal outcomes (both bad = tie): 3 x (a, a), 2 x (b, b), 3 x (tie, tie)
    assert found.comparisons == 11 and found.with_ties == pytest.approx(8 / 11)
    # without ties: (a, a) x3, (a, b), (b, b) x2
    assert found.comparisons_without_ties == 6 and found.without_ties == pytest.approx(5 / 6)
    # marginals: judge a 4, b 3, tie 4; reviewers a 4, b 3, tie 4: p_e = 41/121, p_o = 88/121
    assert found.kappa == pytest.approx((88 / 121 - 41 / 121) / (1 - 41 / 121)) == pytest.approx(47 / 80)
    assert position_bias(consistent=4, inconsistent=2) == pytest.approx(1 / 3)
    pairs = [(2, 3), (2, 1), (5, 4), (7, 8), (9, 9)]
    assert spearman(pairs) == pytest.approx(9.5 / math.sqrt(9.5 * 10))  # ranks (1.5,1.5,3,4,5) vs (3,1,2,4,5)
    assert spearman(pairs[:2]) is None and position_bias(0, 0) is None
    assert cohen_kappa({("a", "a"): 5}) is None  # chance agreement is 1: undefined
    assert cohen_kappa({("a", "a"): 5, ("b", "b"): 5}) == 1.0


async def test_votes_feed_the_agreement_series(store: SampleStore) -> None:
    review = ReviewStore(store.redis)
    for i, (judge, consistent, votes) in enumerate(PAIRS):
        item = pair(i, judge, consistent)
        assert await review.enqueue(item, 100)
        for reviewer, vote in votes.items():
            assert await review.vote(item, reviewer, vote, {"reviewer": reviewer}, 3) == 1
    unjudged = pair(99, None, None)  # no judge verdict: rated, never compared
    await review.enqueue(unjudged, 100)
    await review.vote(unjudged, "alice", "a", {}, 3)
    for i, (rating, grades) in enumerate(SINGLES):
        item = single(i, rating)
        await review.enqueue(item, 100)
        for reviewer, grade in grades.items():
            await review.vote(item, reviewer, str(grade), {"reviewer": reviewer, "grade": grade}, 3)

    metrics = MonitorMetrics()
    board = Scoreboard(store.redis, metrics, ReviewConfig(enabled=True, reviewers=reviewers(), agreement_floor=0.6))
    await board.refresh_all()
    app = board.latest["app"].judges["pairwise"]
    assert app.pair is not None and app.pair.comparisons == 11
    assert app.pair.with_ties == pytest.approx(8 / 11) and app.pair.without_ties == pytest.approx(5 / 6)
    assert app.pair.kappa == pytest.approx(47 / 80)
    assert app.position_bias == pytest.approx(2 / 6) and app.pair_items == 6
    reviewers_agree = board.latest["app"].reviewers
    assert reviewers_agree is not None
    assert reviewers_agree.with_ties == pytest.approx(2 / 5)  # items 1 and 6 of the five both reviewed
    assert reviewers_agree.without_ties == pytest.approx(1 / 2)  # items 1 and 2
    chat = board.latest["chat"].judges["llm_single"]
    assert chat.single_items == 4 and chat.single_comparisons == 5
    assert chat.spearman == pytest.approx(9.5 / math.sqrt(95))

    text = metrics.render().decode()
    assert 'llm_judge_human_agreement_ratio{judge="pairwise",model="app",ties="excluded"} 0.8333' in text
    assert 'llm_judge_human_kappa{judge="pairwise",model="app"} 0.5875' in text
    assert 'llm_judge_human_items{judge="llm_single",model="chat"} 4.0' in text
    assert "llm_judge_human_agreement_floor_ratio 0.6" in text
    assert 'llm_review_inter_reviewer_agreement_ratio{model="app",ties="included"} 0.4' in text
    tally = {k.decode(): int(v) for k, v in (await store.redis.hgetall("llmops:human:app")).items()}
    assert tally == {"a|b|a": 5, "a|b|b": 3, "a|b|tie": 3, "a|b|bothbad": 1}  # the unjudged item's vote too


async def test_each_item_once_per_reviewer_at_most_n_reviewers_one_vote_each(store: SampleStore) -> None:
    review = ReviewStore(store.redis)
    for i in range(3):
        await review.enqueue(pair(i, "a", True), 100)
    assert not await review.enqueue(pair(0, "a", True), 100)  # the same answers again: no second item

    async def next_for(reviewer: str, lease: float = 60) -> str | None:
        found = await review.next_item("ab", reviewer, max_reviewers=2, lease_seconds=lease, swap=False)
        return found[0].id if found else None

    assert await next_for("alice") == "pair0"
    assert await next_for("alice") == "pair0"  # still in hand (a reload): the same item, never a second one
    item = await review.item("pair0")
    assert item is not None
    assert await review.vote(item, "alice", "a", {}, 2) == 1
    assert await review.vote(item, "alice", "b", {}, 2) == 0  # one vote per reviewer per item
    assert await review.vote_of("pair0", "alice") == "a"
    assert await next_for("alice") == "pair1"
    await review.skip((await review.item("pair1")), "alice")  # type: ignore[arg-type]
    assert await next_for("alice") == "pair2"  # skipped items are not shown again
    assert await next_for("bob") == "pair0"
    assert await next_for("carol") == "pair1"  # pair0 has one vote and bob's hold: full at 2
    await review.vote(await review.item("pair0"), "bob", "a", {}, 2)  # type: ignore[arg-type]
    assert "pair0" not in [m.decode() for m in await store.redis.zrange("llmops:review:queue:ab", 0, -1)]
    assert await review.waiting(["ab"]) == {"ab": 2}
    # a hold ends: another reviewer may take the item
    lone = pair(7, "a", True)
    lone.queue = "solo"
    await review.enqueue(lone, 100)
    found = await review.next_item("solo", "dave", max_reviewers=1, lease_seconds=0.2, swap=True)
    assert found is not None and found[0].id == "pair7" and found[1] is True  # shown swapped, as decided
    assert await review.shown("dave", "pair7") is True
    assert await review.next_item("solo", "erin", max_reviewers=1, lease_seconds=60, swap=False) is None
    await asyncio.sleep(0.3)
    found = await review.next_item("solo", "erin", max_reviewers=1, lease_seconds=60, swap=False)
    assert found is not None and found[0].id == "pair7" and found[1] is False


async def test_full_queues_drop_their_oldest_unreviewed_items(store: SampleStore) -> None:
    review = ReviewStore(store.redis)
    first = pair(0, "a", True)
    first.created = 1.0
    await review.enqueue(first, 10)
    await review.vote(first, "alice", "a", {}, 3)
    for i in range(1, 12):
        item = pair(i, None, None)
        item.created = 1.0 + i
        await review.enqueue(item, 10)
    assert await store.redis.zcard("llmops:review:queue:ab") == 10
    assert await review.item("pair0") is not None  # dropped from the queue, kept: it has a vote
    assert await review.item("pair1") is None  # dropped unreviewed
