"""Evidently HTML reports (what ``/reports/<model>`` serves) and the drift series shared by several workers."""

from __future__ import annotations

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from llmops.config import DriftConfig
from llmops.testing.drift_traffic import Traffic, feed, generate
from monitors.drift import FEATURES
from monitors.drift.detector import detect, evidently_stattests
from monitors.drift.features import extract, to_columns
from monitors.drift.monitor import DriftMonitor
from monitors.drift.reports import _report_thresholds, report_file, report_path

pytestmark = pytest.mark.filterwarnings(
    "ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning", "ignore::DeprecationWarning"
)
SETTINGS = DriftConfig(window=200, every=100, every_seconds=None, min_samples=100, report_every_seconds=3600)


async def test_report_written_after_a_run_names_its_reference(redis, tmp_path) -> None:
    monitor = DriftMonitor(redis, SETTINGS, CollectorRegistry(), tmp_path)
    await feed(monitor, generate(Traffic(), 200, seed=21))  # reference = first full window, run, report
    path = report_path(tmp_path, "m")
    assert path is not None and path == await monitor.report("m")
    page = path.read_text(encoding="utf-8")
    reference = await monitor.windows.reference_info("m")
    assert reference is not None
    assert reference.hash[:16] in page and "auto-first-window" in page and "Drift report: m" in page
    assert "no drift" in page and "drawDashboard" in page  # the banner, then Evidently's own report
    first = path.stat().st_mtime_ns
    await feed(monitor, generate(Traffic(prompt_words=120), 100, seed=22))  # the verdict changes: a new report
    page = path.read_text(encoding="utf-8")
    assert path.stat().st_mtime_ns > first and "drift in" in page and "prompt_chars" in page


async def test_report_on_request_and_unknown_models(redis, tmp_path) -> None:
    worker_a = DriftMonitor(redis, SETTINGS, CollectorRegistry(), tmp_path / "a", auto_reports=False)
    await feed(worker_a, generate(Traffic(), 250, seed=23))
    assert report_path(tmp_path / "a", "m") is None
    worker_b = DriftMonitor(redis, SETTINGS, CollectorRegistry(), tmp_path / "b", auto_reports=False)
    path = await worker_b.report("m")  # this worker has none: built now, from the windows in Redis
    assert path is not None and path.parent == tmp_path / "b"
    assert await worker_b.report("../../etc/passwd") is None
    assert b"passwd" not in generate_latest(worker_b.metrics.registry)


def test_report_paths_stay_in_the_directory(tmp_path) -> None:
    assert report_file(tmp_path, "meta-llama/Llama-3").parent == tmp_path
    assert report_file(tmp_path, "../x").name == "..%2Fx.html"
    assert report_path(tmp_path, "../x") is None


def test_report_thresholds_reproduce_the_runs_verdicts() -> None:
    ref = to_columns([extract(s, x) for s, x in generate(Traffic(), 300, seed=24)])
    cur = to_columns([extract(s, x) for s, x in generate(Traffic(prompt_words=60, quality=6.5), 300, seed=25)])
    result = detect("m", ref, cur, SETTINGS)
    get, column_type = evidently_stattests()
    thresholds = _report_thresholds(result)
    for f in result.tested:
        kind = column_type.Numerical if FEATURES[f.feature].kind == "numerical" else column_type.Categorical
        a, b = pd.Series(ref[f.feature]).dropna(), pd.Series(cur[f.feature]).dropna()
        assert bool(get(f.stattest, kind)(a, b, kind, thresholds[f.feature]).drifted) == f.drifted, f.feature


async def test_every_worker_exports_the_latest_result(redis, tmp_path) -> None:
    worker_a = DriftMonitor(redis, SETTINGS, CollectorRegistry(), tmp_path, auto_reports=False)
    worker_b = DriftMonitor(redis, SETTINGS, CollectorRegistry(), tmp_path, auto_reports=False)
    samples = generate(Traffic(), 201, seed=26)
    await feed(worker_a, samples[:200])  # worker a took the reference and ran
    assert "llm_drift_share{" not in generate_latest(worker_b.metrics.registry).decode()
    await feed(worker_b, samples[200:])  # one sample through worker b: it exports a's result
    a, b = (generate_latest(w.metrics.registry).decode() for w in (worker_a, worker_b))
    pick = [line for line in a.splitlines() if line.startswith(("llm_drift_score{", "llm_drift_last_run"))]
    assert pick and all(line in b.splitlines() for line in pick)
    assert 'llm_drift_runs_total{model="m",outcome="ok"} 1.0' in a and "llm_drift_runs_total{" not in b


def test_report_of_columns_of_other_lengths() -> None:
    """A judge score's window (and the feedback) is not the samples' rows: the report pads the shorter columns."""
    from monitors.drift.reports import render_report

    ref = to_columns([extract(s, x) for s, x in generate(Traffic(), 200, seed=27)])
    cur = to_columns([extract(s, x) for s, x in generate(Traffic(), 200, seed=28)])
    cur["llm_single:overall"] = cur["llm_single:overall"][:120]  # the score's own window: 120 values
    result = detect("m", ref, cur, SETTINGS)
    score = result.feature("llm_single:overall")
    assert score is not None and score.n_current == 120 and score.skipped is None
    page = render_report(ref, cur, result)
    assert "Drift report: m" in page and "llm_single:overall" in page
