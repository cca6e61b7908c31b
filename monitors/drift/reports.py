"""Evidently HTML drift reports for people: one file per model, served by the worker at ``/reports/<model>``.

A full Evidently ``Report`` takes seconds over 5,000-row windows (it draws every distribution), so the runs use the
stat tests directly and the report is built less often (``DriftMonitor`` decides when: first run, verdict changed, or
older than ``report_every_seconds``; or on request when a worker has none). The report uses the same pinned stat tests
and per-column thresholds set so that its verdicts match the run's, and opens with a banner that says which reference
it used (content hash, created_at, source) and the run's decision. Evidently is imported on first use.
"""

from __future__ import annotations

import html
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from llmops.config import DriftConfig
from monitors.drift import FEATURES, STATTESTS
from monitors.drift.detector import Columns, DriftResult, evidently_stattests


def default_reports_dir(settings: DriftConfig) -> Path:
    return Path(settings.reports_dir) if settings.reports_dir else Path(tempfile.gettempdir()) / "llmops-drift"


def report_file(reports_dir: str | Path, model: str) -> Path:
    """Where ``model``'s report lives (the name is percent-encoded: no separators, no traversal)."""
    return Path(reports_dir) / f"{quote(model, safe='-_.@')}.html"


def report_path(reports_dir: str | Path, model: str) -> Path | None:
    """The path of ``model``'s latest report, or None when there is none (what ``/reports/<model>`` serves)."""
    path = report_file(reports_dir, model)
    return path if path.is_file() and path.parent == Path(reports_dir) else None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _report_thresholds(result: DriftResult) -> dict[str, float]:
    """Per-column thresholds under which Evidently's verdicts equal the run's (Holm's, for the p-value tests)."""
    thresholds: dict[str, float] = {}
    for f in result.tested:
        if f.feature not in FEATURES:  # embedding drift: not a column of Evidently's report
            continue
        assert f.score is not None and f.threshold is not None and f.stattest is not None
        if STATTESTS[f.stattest][0] == "distance":
            thresholds[f.feature] = f.threshold
        elif f.drifted:
            thresholds[f.feature] = max(f.threshold, f.score * 1.000001)
        else:
            thresholds[f.feature] = min(f.threshold, f.score / 2)
    return thresholds


def banner(result: DriftResult) -> str:
    """The HTML block that opens a report: model, reference, decision, per-feature table."""
    ref = result.reference
    reference = (
        f"reference <code>{html.escape(ref.hash[:16])}</code> ({html.escape(ref.source)}, created "
        f"{_iso(ref.created_at)}, {ref.rows} rows)"
        if ref
        else "no reference"
    )
    rows = []
    for f in result.features:
        score = "" if f.score is None else f"{f.score:.4g}"
        threshold = "" if f.threshold is None else f"{f.threshold:.4g}"
        verdict = f"skipped: {f.skipped}" if f.skipped else ("drifted" if f.drifted else "ok")
        colour = "#c62828" if f.drifted else ("#777" if f.skipped else "#2e7d32")
        rows.append(
            f"<tr><td>{html.escape(f.feature)}</td><td>{f.group}</td><td>{f.stattest or ''}</td><td>{score}</td>"
            f"<td>{threshold}</td><td style='color:{colour}'>{verdict}</td><td>{html.escape(f.detail)}</td></tr>"
        )
    return (
        "<div style='font-family:sans-serif;margin:16px;padding:12px;border:1px solid #ccc;border-radius:6px'>"
        f"<h2 style='margin:0 0 8px 0'>Drift report: {html.escape(result.model)}</h2>"
        f"<p>Run at {_iso(result.started_at)}: {result.n_current} current samples against {reference}.</p>"
        f"<p><b>{html.escape(result.summary())}</b> (Holm at family-wise significance {result.significance:g}; "
        f"drift when at least one feature drifted and the drifted share reaches {result.drift_share_threshold:g}).</p>"
        "<table style='border-collapse:collapse' cellpadding='3' border='1'><tr><th>feature</th><th>group</th>"
        "<th>stat test</th><th>score</th><th>threshold</th><th>verdict</th><th></th></tr>"
        + "".join(rows)
        + "</table><p style='color:#777'>Scores: p-values (drift when below the threshold) or distances (drift when "
        "at or above it). Below: Evidently's report with the same tests and thresholds.</p></div>"
    )


def _frame(columns: Columns, names: list[str]):  # -> pandas.DataFrame (missing values: NaN or None)
    """The columns as one frame. A judge score's window and the feedback are not the samples' rows: columns of other
    lengths are padded with missing values (Evidently leaves them out)."""
    import pandas as pd

    return pd.DataFrame({n: pd.Series(columns[n]) for n in names})


def render_report(reference: Columns, current: Columns, result: DriftResult) -> str:
    """The whole HTML page: banner, then Evidently's ``DataDriftPreset`` report over the tested features."""
    names = [f.feature for f in result.tested if f.feature in FEATURES]  # embedding drift: in the banner only
    evidently_html = "<p>No feature could be tested: no Evidently report.</p>"
    if names:
        evidently_stattests()  # registers chi2_contingency
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        definition = DataDefinition(
            numerical_columns=[n for n in names if FEATURES[n].kind == "numerical"],
            categorical_columns=[n for n in names if FEATURES[n].kind == "categorical"],
        )
        preset = DataDriftPreset(
            columns=names,
            per_column_method={n: f.stattest for f in result.tested if f.stattest and (n := f.feature) in names},
            per_column_threshold=_report_thresholds(result),
            drift_share=max(result.drift_share_threshold, 1 / len(names)),
        )
        snapshot = Report([preset], include_tests=True).run(
            Dataset.from_pandas(_frame(current, names), data_definition=definition),
            Dataset.from_pandas(_frame(reference, names), data_definition=definition),
            timestamp=datetime.fromtimestamp(result.started_at),
        )
        evidently_html = snapshot.get_html_str(as_iframe=False)
    page = evidently_html if "<body>" in evidently_html else f"<html><body>{evidently_html}</body></html>"
    title = f"<title>Drift report: {html.escape(result.model)}</title>"
    page = page.replace("<head>", "<head>" + title, 1) if "<head>" in page else page
    return page.replace("<body>", "<body>" + banner(result), 1)


def write_report(reports_dir: str | Path, reference: Columns, current: Columns, result: DriftResult) -> Path:
    """Render and write ``result.model``'s report atomically; returns its path."""
    directory = Path(reports_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = report_file(directory, result.model)
    page = render_report(reference, current, result)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".report-", suffix=".html")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(page)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
