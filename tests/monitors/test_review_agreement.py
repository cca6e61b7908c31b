"""Judges checked against people: agreement with and without ties, Cohen's kappa, position bias and Spearman's rho
equal hand-computed values on a fixed set, through the real vote script and a real Redis, over the whole set and over
a window of the latest items (older items stop counting; figures the window no longer defines are removed); and the
queues' rules (each item shown to a reviewer once, at most N reviewers, one vote each)."""

from __future__ import annotations

import asyncio
import math

import pytest

from llmops.config_review import ReviewConfig
from monitors.metrics import MonitorMetrics
from monitors.review import pages
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


# The window: 10 items. Ten old pairs on which the judge and both reviewers said "a", then six new ones.
OLD = [("a", True, {"alice": "a", "bob": "a"})] * 10
NEW = [
    ("a", True, {"alice": "b", "bob": "b"}),
    ("b", False, {"alice": "a"}),
    ("tie", False, {"alice": "tie", "bob": "a"}),
    ("a", True, {"alice": "a", "bob": "bothbad"}),
    ("b", True, {"alice": "b"}),
    ("a", False, {"alice": "b", "bob": "b"}),
]
# Twelve graded answers: two old ones the judge got backwards, then ten in nearly the reviewers' order.
OLD_SINGLES = [(9, 1), (1, 10)]
NEW_SINGLES = [(1, 2), (2, 1), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8), (9, 10), (10, 9)]


async def vote_all(review: ReviewStore, items: list[tuple[ReviewItem, dict[str, str]]]) -> None:
    for item, votes in items:
        assert await review.enqueue(item, 1000)
        for reviewer, vote in votes.items():
            assert await review.vote(item, reviewer, vote, {"reviewer": reviewer}, 3) == 1


async def test_agreement_over_the_window_only(store: SampleStore) -> None:
    review = ReviewStore(store.redis)
    pairs = []
    for i, (judge, consistent, votes) in enumerate(OLD + NEW):
        item = pair(i, judge, consistent)
        item.created = 1000.0 + i  # when the judge ran: the window's order
        pairs.append((item, votes))
    singles = []
    for i, (rating, grade) in enumerate(OLD_SINGLES + NEW_SINGLES):
        item = single(i, rating)
        item.created = 1000.0 + i
        singles.append((item, {"alice": str(grade)}))
    # votes come in any order: the window follows when the items were judged, not when they were voted on
    await vote_all(review, pairs[::-1] + singles[::-1])

    metrics = MonitorMetrics()
    settings = ReviewConfig(enabled=True, reviewers=reviewers(), agreement_window_items=10, agreement_min_items=5)
    board = Scoreboard(store.redis, metrics, settings)
    await board.refresh_all()
    app = board.latest["app"].judges["pairwise"]
    # the window: old items 7-10 (8 comparisons, all (a, a)) and the six new ones (10 comparisons)
    assert app.pair_items == 10 and app.pair is not None and app.pair.comparisons == 18
    # equal: (a, a) x 8 + 1, (b, b) x 1, (tie, tie) x 1
    assert app.pair.with_ties == pytest.approx(11 / 18)
    # without ties (neither side tie; both bad is a tie): 15 comparisons, 10 of them (a, a) or (b, b)
    assert app.pair.comparisons_without_ties == 15 and app.pair.without_ties == pytest.approx(2 / 3)
    # judge a 14, b 2, tie 2; reviewers a 11, b 5, tie 2: p_e = 168/324, p_o = 198/324
    assert app.pair.kappa == pytest.approx((198 - 168) / (324 - 168)) == pytest.approx(5 / 26)
    assert app.position_bias == pytest.approx(3 / 10)  # new items 2, 3 and 6 changed with the order
    # reviewer vs reviewer: the latest 10 items two reviewed: old 5-10 (agree), new 1 and 6 (agree), 3 and 4 (not)
    humans = board.latest["app"].reviewers
    assert humans is not None and humans.comparisons == 10
    assert humans.with_ties == pytest.approx(8 / 10) and humans.without_ties == pytest.approx(8 / 8)
    # Spearman over the ten new grades only: d^2 = 4, rho = 1 - 6 * 4 / (10 * 99)
    chat = board.latest["chat"].judges["llm_single"]
    assert chat.single_items == 10 and chat.single_comparisons == 10
    assert chat.spearman == pytest.approx(1 - 24 / 990)
    # all time, kept for the page: every item
    ever = board.latest["app"].all_time
    assert ever is not None and ever.judges["pairwise"].pair_items == 16
    assert ever.judges["pairwise"].pair is not None and ever.judges["pairwise"].pair.with_ties == pytest.approx(23 / 30)
    assert ever.judges["pairwise"].position_bias == pytest.approx(3 / 16)
    [app_board] = [b for b in pages.leaderboard({}, board.latest) if b["name"] == "app"]
    assert app_board["judges"][0] | {"kappa": None} == {
        "name": "pairwise",
        "items": 10,
        "agreement": "61% / 67%",
        "kappa": None,
        "bias": "30%",
        "spearman": "–",
        "all_items": 16,
        "all_agreement": "77% / 81%",  # 23 of 30 with ties; without: 20 old + 2 new of 20 + 7
        "all_spearman": "–",
    }
    html = pages.page("leaderboard.html", models=[app_board], window=10, reviewer="alice", csrf="t")
    assert "latest 10 reviewed items" in html and "All time" in html and "80% / 100%" in html

    text = metrics.render().decode()
    assert 'llm_judge_human_agreement_ratio{judge="pairwise",model="app",ties="excluded"} 0.6666' in text
    assert 'llm_judge_human_agreement_ratio{judge="pairwise",model="app",ties="included"} 0.6111' in text
    assert 'llm_judge_human_kappa{judge="pairwise",model="app"} 0.1923' in text
    assert 'llm_judge_human_position_bias_ratio{judge="pairwise",model="app"} 0.3' in text
    assert 'llm_judge_human_items{judge="pairwise",model="app"} 10.0' in text
    assert 'llm_judge_human_comparisons{judge="pairwise",model="app"} 18.0' in text
    assert 'llm_judge_human_items{judge="llm_single",model="chat"} 10.0' in text
    assert 'llm_judge_human_spearman{judge="llm_single",model="chat"} 0.9757' in text
    assert 'llm_review_inter_reviewer_agreement_ratio{model="app",ties="excluded"} 1.0' in text
    assert "llm_judge_human_agreement_window_items 10.0" in text

    # ten more items, all ties: the decisive ones leave the window and agreement without ties is no longer defined
    # (its series goes, rather than keep its last value); a larger window takes the older items back at once
    ties = []
    for i in range(20, 30):
        item = pair(i, "tie", True)
        item.created = 2000.0 + i
        ties.append((item, {"alice": "tie"}))
    await vote_all(review, ties)
    await board.refresh("app")
    app = board.latest["app"].judges["pairwise"]
    assert app.pair is not None and app.pair.with_ties == 1.0 and app.pair.without_ties is None
    text = metrics.render().decode()
    assert 'llm_judge_human_agreement_ratio{judge="pairwise",model="app",ties="included"} 1.0' in text
    assert 'judge="pairwise",model="app",ties="excluded"' not in text
    assert 'llm_judge_human_kappa{judge="pairwise",model="app"}' not in text  # all ties: chance agreement is 1
    wide = ReviewConfig(agreement_window_items=26, agreement_min_items=5)
    assert (await Scoreboard(store.redis, MonitorMetrics(), wide).refresh("app")).judges["pairwise"].pair_items == 26


def test_the_window_holds_the_alerts_minimum() -> None:
    with pytest.raises(ValueError, match=r"agreement_min_items \(50\) exceeds agreement_window_items \(20\)"):
        ReviewConfig(agreement_window_items=20, agreement_min_items=50)
