"""Drift detection acceptance (issue 5), on seeded synthetic traffic and a private redis-server: no false alarms on a
stable stream, shifts detected within one window with the right feature named, a restarted worker resumes, and
Evidently failures are counted skips."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmops.config import DriftConfig
from llmops.testing.drift_traffic import Traffic, feed, generate
from monitors.drift.monitor import DriftMonitor
from tests.support import free_port

pytestmark = pytest.mark.filterwarnings(
    "ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning", "ignore::DeprecationWarning"
)

SETTINGS = DriftConfig(window=300, every=100, every_seconds=None, min_samples=100, significance=0.05)


def monitor(client: aioredis.Redis, tmp_path, settings: DriftConfig = SETTINGS) -> DriftMonitor:
    return DriftMonitor(client, settings, CollectorRegistry(), tmp_path / "reports", auto_reports=False)


def series(m: DriftMonitor, name: str, **labels: str) -> float | None:
    """The value of one series of the monitor's registry (None when absent)."""
    text = generate_latest(m.metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


async def test_stable_stream_raises_no_false_alarm(redis, tmp_path) -> None:
    settings = SETTINGS.model_copy(update={"every": 300})  # non-overlapping windows: 20 independent runs
    m = monitor(redis, tmp_path, settings)
    results = await feed(m, generate(Traffic(), 300 * 21, seed=101))
    assert results[0].n_current == 300 and results[0].reference is not None
    assert results[0].reference.source == "auto-first-window"
    runs = results[1:]  # the first run compares the first full window (the reference) with itself
    assert len(runs) == 20
    alarms = [r.summary() for r in runs if r.drift]
    assert len(alarms) / len(runs) <= settings.significance, alarms
    assert alarms == []
    assert all(len(r.tested) >= 15 for r in runs)


SHIFTS = [
    pytest.param(Traffic(), Traffic(prompt_words=100), "prompt_chars", "input", "quality", id="prompt-length"),
    pytest.param(Traffic(korean=0.0), Traffic(korean=0.5), "prompt_script", "input", "quality", id="en-to-ko"),
    pytest.param(Traffic(), Traffic(response_words=300), "response_chars", "output", "input", id="response-length"),
    pytest.param(Traffic(), Traffic(quality=5.0), "llm_single:overall", "quality", "input", id="answers-worse"),
]


@pytest.mark.parametrize(("before", "after", "feature", "group", "quiet_group"), SHIFTS)
async def test_shift_detected_within_one_window(
    redis,
    tmp_path,
    before: Traffic,
    after: Traffic,
    feature: str,
    group: str,
    quiet_group: str,
) -> None:
    m = monitor(redis, tmp_path)
    stable = await feed(m, generate(before, 600, seed=202))
    assert [r.drift for r in stable] == [False] * 4  # runs at 300 (reference = window), 400, 500, 600
    shifted = await feed(m, generate(after, SETTINGS.window, seed=303))
    assert len(shifted) == 3  # runs at 700, 800, 900: the window is fully shifted at the last one
    first = next((r for r in shifted if r.drift), None)
    assert first is not None, [r.summary() for r in shifted]
    assert feature in first.drifted_features, first.summary()
    assert first.groups[group] and not first.groups[quiet_group], first.summary()
    final = shifted[-1]
    assert final.drift and feature in final.drifted_features
    assert series(m, "llm_drift_detected", model="m", feature=feature) == 1.0
    assert series(m, "llm_drift_group_detected", model="m", group="all") == 1.0
    assert series(m, "llm_drift_share", model="m") == pytest.approx(final.drift_share)


async def test_restarted_worker_resumes_reference_and_window(redis_url, tmp_path) -> None:
    samples = generate(Traffic(), 500, seed=404)
    first = aioredis.from_url(redis_url)
    await first.flushdb()
    a = monitor(first, tmp_path)
    await feed(a, samples[:450])
    reference = await a.windows.reference_info("m")
    window = await a.windows.current("m")
    before = await a.run("m")
    await a.close()
    await first.aclose()

    second = aioredis.from_url(redis_url)
    b = monitor(second, tmp_path)
    assert await b.windows.reference_info("m") == reference
    assert await b.windows.current("m") == window
    assert len(window) == SETTINGS.window
    after = await b.run("m")
    assert after.reference == reference
    assert [(f.feature, f.score, f.drifted) for f in after.features] == [
        (f.feature, f.score, f.drifted) for f in before.features
    ]
    # the sample count lives in Redis too: the next count-triggered run comes at sample 500, not 100 samples later
    assert await feed(b, samples[450:499]) == []
    assert len(await feed(b, samples[499:])) == 1
    assert int(await second.get("llmops:drift:m:count")) == 500
    await b.close()
    await second.aclose()


async def test_too_few_samples_is_a_counted_skip(redis, tmp_path) -> None:
    m = monitor(redis, tmp_path)
    assert (await m.run("m")).outcome == "skipped"  # no reference yet
    from monitors.drift.features import extract

    rows = [extract(s, x) for s, x in generate(Traffic(), 200, seed=1)]
    await m.windows.set_reference("m", rows, "file:test")
    await feed(m, generate(Traffic(), 20, seed=2))
    result = await m.run("m")
    assert result.outcome == "skipped" and "20 current" in result.reason
    assert series(m, "llm_drift_runs_total", model="m", outcome="skipped") == 2
    assert series(m, "llm_drift_last_run_timestamp_seconds", model="m") is None


VERDICT = ("llm_drift_detected", "llm_drift_score", "llm_drift_share", "llm_drift_group_detected")


def verdict_series(m: DriftMonitor, model: str = "m") -> list[str]:
    """The names of the model's verdict series the monitor exports (one entry per series)."""
    text = generate_latest(m.metrics.registry).decode()
    return [
        sample.name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in VERDICT and sample.labels.get("model") == model
    ]


async def test_a_run_without_a_verdict_withdraws_the_previous_one(redis, tmp_path, monkeypatch) -> None:
    """A skipped or failed run (here: a re-pinned reference under min_samples, then an error) removes the model's
    verdict series in every worker, so an old drift verdict cannot keep LLMDriftDetected firing; the start of the
    latest ok run (llm_drift_last_run_timestamp_seconds) stays, for the alert's freshness check."""
    import monitors.drift.monitor as monitor_module
    from monitors.drift.features import extract

    a, b = monitor(redis, tmp_path), monitor(redis, tmp_path)
    await feed(a, generate(Traffic(), 300, seed=601))  # reference = the first window
    shifted = await feed(a, generate(Traffic(prompt_words=100), 300, seed=602))
    assert shifted[-1].drift
    await feed(b, generate(Traffic(prompt_words=100), 1, seed=603))  # b exports a's stored result
    started = shifted[-1].started_at
    for worker in (a, b):
        assert series(worker, "llm_drift_group_detected", model="m", group="all") == 1.0
        assert len(verdict_series(worker)) > 20
        assert series(worker, "llm_drift_last_run_timestamp_seconds", model="m") == started

    small = [extract(s, x) for s, x in generate(Traffic(prompt_words=100), 50, seed=604)]
    await a.windows.set_reference("m", small, "file:small")  # every run is skipped against it
    skipped = await a.run("m")
    assert skipped.outcome == "skipped" and "50 reference" in skipped.reason
    assert verdict_series(a) == []
    await feed(b, generate(Traffic(prompt_words=100), 1, seed=605))  # b syncs the skipped result
    assert verdict_series(b) == []
    for worker in (a, b):
        assert series(worker, "llm_drift_last_run_timestamp_seconds", model="m") == started
    assert series(a, "llm_drift_runs_total", model="m", outcome="skipped") == 1

    rows = [extract(s, x) for s, x in generate(Traffic(), 200, seed=606)]
    await a.windows.set_reference("m", rows, "file:ok")
    assert (await a.run("m")).drift  # an ok run gives a verdict again
    await feed(b, generate(Traffic(prompt_words=100), 1, seed=607))
    for worker in (a, b):
        assert series(worker, "llm_drift_group_detected", model="m", group="all") == 1.0

    def broken(*args, **kwargs):
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(monitor_module, "detect", broken)
    assert (await a.run("m")).outcome == "error"
    assert verdict_series(a) == []
    await feed(b, generate(Traffic(prompt_words=100), 1, seed=608))
    assert verdict_series(b) == []


async def test_constant_column_and_failing_stat_test_are_counted_skips(redis, tmp_path, monkeypatch) -> None:
    import monitors.drift.detector as detector

    getter, column_type = detector.evidently_stattests()

    def failing_getter(name, feature_type):
        test = getter(name, feature_type)
        if name == "chi2_contingency":

            def boom(*args, **kwargs):
                raise ValueError("synthetic Evidently failure")

            return boom
        return test

    monkeypatch.setattr(detector, "evidently_stattests", lambda: (failing_getter, column_type))
    m = monitor(redis, tmp_path)
    results = await feed(m, generate(Traffic(), 400, seed=5))
    last = results[-1]
    assert last.outcome == "ok"
    assert last.feature("rules:empty_answer").skipped == "constant"  # always 1 in this traffic
    assert last.feature("finish_reason").skipped == "error"
    assert "synthetic Evidently failure" in last.feature("finish_reason").detail
    assert series(m, "llm_drift_feature_skips_total", model="m", feature="rules:empty_answer", reason="constant") == 2
    assert series(m, "llm_drift_feature_skips_total", model="m", feature="finish_reason", reason="error") == 2
    assert series(m, "llm_drift_detected", model="m", feature="finish_reason") == 0


async def test_a_failing_run_is_counted_and_never_raises(redis, tmp_path, monkeypatch) -> None:
    import monitors.drift.monitor as monitor_module

    def broken(*args, **kwargs):
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(monitor_module, "detect", broken)
    m = monitor(redis, tmp_path)
    await feed(m, generate(Traffic(), 400, seed=6))  # runs at 300 and 400 both fail
    assert series(m, "llm_drift_runs_total", model="m", outcome="error") == 2
    assert (await m.run("m")).outcome == "error"


async def test_redis_away_never_raises(tmp_path) -> None:
    client = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    m = monitor(client, tmp_path)
    for sample, scores in generate(Traffic(), 3, seed=7):
        await m.observe(sample, scores)  # logged (once a minute), not raised
    assert (await m.run("m")).outcome == "error"
    await client.aclose()


async def test_feedback_rate_drift_is_quality_drift(redis, tmp_path) -> None:
    """User feedback (the gateway's llmops:feedback stream) given during each window's time span is compared."""
    rng = np.random.default_rng(8)

    async def give(n: int, positive: float, first: float, last: float) -> None:
        pipe = redis.pipeline(transaction=False)
        for i, ts in enumerate(np.linspace(first, last, n)):
            rating = "positive" if rng.random() < positive else "negative"
            entry = {"request_id": f"r{i}", "model": "m", "variant": "", "rating": rating, "ts": f"{ts:.3f}"}
            pipe.xadd("llmops:feedback", entry, id=f"{int(ts * 1000)}-{i}")
        await pipe.execute()

    m = monitor(redis, tmp_path)
    start = time.time() - 100
    await give(200, 0.8, start, start + 2.9)  # feedback while the reference's samples were answered
    await feed(m, generate(Traffic(), 300, seed=501, start_ts=start))
    reference = await m.windows.reference_info("m")
    assert reference is not None and reference.start == start and reference.end == pytest.approx(start + 2.99)
    await give(200, 0.4, start + 50, start + 52.9)  # later: far fewer thumbs up, same inputs and answers
    results = await feed(m, generate(Traffic(), 300, seed=502, start_ts=start + 50))
    last = results[-1]
    feedback = last.feature("feedback:rating")
    assert feedback is not None and feedback.stattest == "z" and feedback.n_reference == 200 and feedback.drifted
    assert last.groups["quality"] and not last.groups["input"] and last.drifted_features == ["feedback:rating"]


def judged_at(samples: list, rate_every: int, offset: int = 0) -> list:
    """The samples with the LLM judge's score kept on every ``rate_every``-th one only (a judge at rate 1/n)."""
    return [
        (sample, {k: v for k, v in scores.items() if k != "llm_single:overall" or (offset + i) % rate_every == 0})
        for i, (sample, scores) in enumerate(samples)
    ]


async def test_judge_scores_sampled_at_10_percent_are_tested_at_the_defaults(redis, tmp_path) -> None:
    """At the default window (500) and min_samples (100), an LLM judge on 10% of the samples gives 50 scores per
    window of samples: it used to be skipped for good (few_samples). Each judge score has its own window of its last
    500 values (about 5,000 samples at 10%), and an auto reference takes the score's first full window, so the score is
    tested (500 against 500) and a drop found, in the quality group alone."""
    settings = DriftConfig()
    assert (settings.window, settings.min_samples, settings.every) == (500, 100, 100)
    m = monitor(redis, tmp_path, settings)
    results = await feed(m, judged_at(generate(Traffic(), 5100, seed=505), 10))
    before = results[0].feature("llm_single:overall")  # the run at 600: the reference's rows hold 50 scores
    assert before is not None and before.skipped == "few_samples" and before.n_reference == 50
    fields = await redis.hkeys("llmops:drift:m:reference")
    assert b"scores:llm_single:overall" in fields and b"scores:rules:truncated" in fields  # taken once full
    assert await redis.llen("llmops:drift:m:scores:llm_single:overall") == 500
    last = results[-1].feature("llm_single:overall")  # the run at 5,100
    assert last is not None and last.skipped is None and last.stattest == "t_test"
    assert (last.n_reference, last.n_current) == (500, 500) and not results[-1].drift
    worse = await feed(m, judged_at(generate(Traffic(quality=6.0), 2000, seed=506), 10))
    final = worse[-1]  # 200 of the score window's 500 values after the drop
    score = final.feature("llm_single:overall")
    assert score is not None and score.drifted and final.groups["quality"] and not final.groups["input"]
    assert score.n_reference == 500 and score.n_current == 500


async def test_a_new_reference_drops_the_judge_score_windows_of_the_old_one(redis, tmp_path) -> None:
    settings = SETTINGS.model_copy(update={"window": 100, "min_samples": 50})
    m = monitor(redis, tmp_path, settings)
    await feed(m, generate(Traffic(), 150, seed=606))
    assert b"scores:llm_single:overall" in await redis.hkeys("llmops:drift:m:reference")
    from monitors.drift.features import extract

    await m.windows.set_reference("m", [extract(s, x) for s, x in generate(Traffic(), 60, seed=607)], "file:x")
    assert sorted(await redis.hkeys("llmops:drift:m:reference")) == [b"meta", b"rows"]
    await feed(m, generate(Traffic(), 100, seed=608))  # full score windows: a pinned reference is left as pinned
    assert sorted(await redis.hkeys("llmops:drift:m:reference")) == [b"meta", b"rows"]
    result = await m.run("m")
    score = result.feature("llm_single:overall")
    assert score is not None and score.n_reference == 60 and score.n_current == 100  # the file's rows, the window
