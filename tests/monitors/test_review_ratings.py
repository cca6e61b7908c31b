"""Ratings with uncertainty (Chatbot Arena's method): the maximum-likelihood Bradley–Terry fit on the 400·log10 scale
anchored at 1000, with 95% intervals from bootstrap resamples of the battles; human votes, judge verdicts and both
rated apart and exported per source."""

from __future__ import annotations

import random

import pytest

from monitors.bradley_terry import bradley_terry, rate_with_intervals
from monitors.metrics import MonitorMetrics
from monitors.ratings import Ratings
from monitors.store import SampleStore
from tests.support import metric

TRUE = {"small": 900.0, "medium": 1000.0, "large": 1150.0, "huge": 1250.0}


def simulate(n: int, seed: int, tie_share: float = 0.0) -> dict[tuple[str, str, float], int]:
    """``n`` battles between random pairs of the TRUE contestants: a wins with the Bradley–Terry probability on the
    Elo scale; with ``tie_share``, that share of the battles (chosen regardless of strength) ends in a tie."""
    rng = random.Random(seed)
    battles: dict[tuple[str, str, float], int] = {}
    names = sorted(TRUE)
    for _ in range(n):
        a, b = rng.sample(names, 2)
        if rng.random() < tie_share:
            score = 0.5
        else:
            score = 1.0 if rng.random() < 1 / (1 + 10 ** ((TRUE[b] - TRUE[a]) / 400)) else 0.0
        battles[(a, b, score)] = battles.get((a, b, score), 0) + 1
    return battles


def centred(values: dict[str, float]) -> dict[str, float]:
    mean = sum(values.values()) / len(values)
    return {k: v - mean + 1000 for k, v in values.items()}


def test_ratings_recover_known_strengths_and_intervals_narrow() -> None:
    truth = centred(TRUE)
    widths = []
    for n in (200, 1000, 5000):
        standings = rate_with_intervals(simulate(n, seed=n), rounds=300, seed=1)
        widths.append(sum(s.upper - s.lower for s in standings.values()) / len(standings))
        if n == 5000:
            assert sorted(standings, key=lambda k: standings[k].rating) == ["small", "medium", "large", "huge"]
            for name, standing in standings.items():
                assert standing.rating == pytest.approx(truth[name], abs=25)
                assert standing.lower < truth[name] < standing.upper
                assert standing.lower <= standing.rating <= standing.upper
            assert sum(s.battles for s in standings.values()) == 2 * 5000
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < widths[0] / 3  # about 1/sqrt(n): 5 times wider at 1/25 of the votes


def test_ties_regardless_of_strength_pull_ratings_together_but_keep_the_order() -> None:
    """A tie is half a win each (Chatbot Arena): ties that say nothing about strength shrink the gaps."""
    plain = rate_with_intervals(simulate(5000, seed=7), rounds=0)
    tied = rate_with_intervals(simulate(5000, seed=7, tie_share=0.3), rounds=0)
    assert sorted(tied, key=lambda k: tied[k].rating) == ["small", "medium", "large", "huge"]
    assert tied["huge"].rating - tied["small"].rating < plain["huge"].rating - plain["small"].rating


def test_intervals_cover_the_truth_about_95_percent_of_the_time() -> None:
    truth = centred(TRUE)
    covered = total = 0
    for seed in range(30):
        standings = rate_with_intervals(simulate(600, seed=100 + seed), rounds=200, seed=seed)
        for name, standing in standings.items():
            covered += standing.lower <= truth[name] <= standing.upper
            total += 1
    assert 0.85 <= covered / total <= 1.0


def test_the_fit_is_the_same_maximum_as_the_mm_fit_and_one_sided_records_stay_finite() -> None:
    battles = {("a", "b", 1.0): 10, ("a", "b", 0.0): 4, ("a", "b", 0.5): 3, ("b", "c", 1.0): 7, ("a", "c", 1.0): 5}
    outcomes = [(a, b, s) for (a, b, s), n in battles.items() for _ in range(n)]
    fitted = rate_with_intervals(battles, rounds=0)
    for name, value in bradley_terry(outcomes).items():
        assert fitted[name].rating == pytest.approx(value, abs=1e-4)  # MM stops at a relative change of 1e-10
    one_sided = rate_with_intervals({("x", "y", 1.0): 50}, rounds=50)
    assert 1000 < one_sided["x"].rating < 2000 and one_sided["y"].rating < 1000
    feedback = rate_with_intervals({}, feedback={"x": (10, 2), "y": (3, 9)}, rounds=50)
    assert feedback["x"].rating == pytest.approx(bradley_terry([], feedback={"x": (10, 2), "y": (3, 9)})["x"])
    assert rate_with_intervals({}) == {}
    with pytest.raises(ValueError):
        rate_with_intervals({("x", "x", 1.0): 1})
    with pytest.raises(ValueError):
        rate_with_intervals({("x", "y", 1.0): 1}, prior=0)


async def test_each_source_is_exported_with_its_interval(store: SampleStore) -> None:
    """Reviewers' votes, the judge's verdicts and both together: one rating, interval and battle count per source."""
    redis = store.redis
    await redis.hset("llmops:pairwise:app", mapping={"a|b|a": 30, "a|b|b": 10, "a|b|inconsistent": 5})
    await redis.hset("llmops:human:app", mapping={"a|b|b": 12, "a|b|a": 4, "a|b|bothbad": 2, "a|b|tie": 2})
    metrics = MonitorMetrics()
    ratings = Ratings(redis, metrics, ["app"], rounds=100)
    await ratings.refresh("app")
    exported = metrics.render().decode()
    samples = {}
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exported):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(name: str, variant: str, source: str) -> float:
        return metric(samples, name, model="app", variant=variant, source=source)

    assert get("llm_judge_variant_rating", "a", "pairwise") > 1000 > get("llm_judge_variant_rating", "b", "pairwise")
    assert get("llm_judge_variant_rating", "b", "human") > 1000 > get("llm_judge_variant_rating", "a", "human")
    for source, battles in (("pairwise", 45), ("human", 20), ("human_and_pairwise", 65)):
        for variant in ("a", "b"):
            low, mid, high = (get(f"llm_judge_variant_rating{s}", variant, source) for s in ("_lower", "", "_upper"))
            assert low < mid < high
            assert get("llm_judge_variant_battles", variant, source) == battles
    # both together sit between the two sources
    both = get("llm_judge_variant_rating", "a", "human_and_pairwise")
    assert get("llm_judge_variant_rating", "a", "human") < both < get("llm_judge_variant_rating", "a", "pairwise")
    assert set(ratings.latest["app"]) == {"pairwise", "human", "human_and_pairwise"}
    assert "app" in await ratings.rated_models()
