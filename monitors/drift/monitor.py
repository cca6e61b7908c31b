"""What the monitors worker calls: ``DriftMonitor.observe(sample, scores)`` after each committed sample.

``observe`` computes the sample's features (tens of µs) and appends them to the model's window in Redis (one atomic
script). When a run is due (every ``every`` samples, or ``every_seconds`` after the last run) it starts one in the
background, at most one per model at a time in this process; the stat tests run in a thread
(``asyncio.to_thread``), so the worker's event loop never waits for Evidently. Results go to Prometheus and to Redis,
from where every worker exports the latest one (whichever worker ran it). Failures are logged and counted
(``llm_drift_runs_total{outcome="skipped"|"error"}``), never raised to the worker; such a run has no verdict, so it
removes the model's verdict series (a drift found earlier no longer holds), and
``llm_drift_last_run_timestamp_seconds`` keeps the start of the latest ``ok`` run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge

from llmops.config import DriftConfig
from llmops.sample import Sample
from monitors.drift import GROUPS
from monitors.drift.detector import Columns, DriftResult, detect
from monitors.drift.features import extract, prompt_text, to_columns
from monitors.drift.reports import default_reports_dir, report_path, write_report
from monitors.drift.windows import DriftWindows, ReferenceInfo

log = logging.getLogger("llmops.monitors.drift")


class DriftMetrics:
    """The ``llm_drift_*`` series (docs/metrics.md), on the worker's registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.detected = Gauge(
            "llm_drift_detected",
            "1 when the feature drifted in the model's latest drift run.",
            ["model", "feature"],
            registry=r,
        )
        self.score = Gauge(
            "llm_drift_score",
            "Score of the feature's stat test in the latest run: a p-value (drift when low: ks, t_test, z, "
            "chi2_contingency) or a distance (drift when high: wasserstein, jensenshannon, psi, ...).",
            ["model", "feature", "stattest"],
            registry=r,
        )
        self.share = Gauge(
            "llm_drift_share", "Share of the tested features that drifted in the latest run.", ["model"], registry=r
        )
        self.last_run = Gauge(
            "llm_drift_last_run_timestamp_seconds",
            "When the model's latest completed (ok) drift run started; runs that end skipped or error leave it.",
            ["model"],
            registry=r,
        )
        self.group = Gauge(
            "llm_drift_group_detected",
            "1 when the latest run found drift: group=all is the model's verdict; input, output, performance and "
            "quality say where (inputs changed vs answers got worse).",
            ["model", "group"],
            registry=r,
        )
        self.duration = Gauge(
            "llm_drift_run_duration_seconds",
            "Time the latest drift run took (loading the windows and the stat tests).",
            ["model"],
            registry=r,
        )
        self.runs = Counter(
            "llm_drift_runs",
            "Drift runs by outcome: ok, skipped (too few samples, no reference), error.",
            ["model", "outcome"],
            registry=r,
        )
        self.feature_skips = Counter(
            "llm_drift_feature_skips",
            "Features a drift run could not test: few_samples, constant (one value in both windows), error.",
            ["model", "feature", "reason"],
            registry=r,
        )
        self._scores: dict[str, set[tuple[str, str]]] = {}  # model -> (feature, stattest) series exported
        self._features: dict[str, set[str]] = {}

    def export(self, result: DriftResult) -> None:
        """Set the gauges from one run: an ok run sets the verdict (series of features no longer tested are
        removed); a skipped or failed run has none and clears the model's verdict (see ``clear``)."""
        model = result.model
        if result.outcome != "ok":
            self.clear(model)
            return
        scores = {(f.feature, f.stattest) for f in result.tested if f.stattest}
        for feature, stattest in self._scores.get(model, set()) - scores:
            self.score.remove(model, feature, stattest)
        features = {f.feature for f in result.features}
        for feature in self._features.get(model, set()) - features:
            self.detected.remove(model, feature)
        for f in result.features:
            self.detected.labels(model, f.feature).set(1 if f.drifted else 0)
            if f.skipped is None and f.stattest and f.score is not None:
                self.score.labels(model, f.feature, f.stattest).set(f.score)
        self._scores[model], self._features[model] = scores, features
        self.share.labels(model).set(result.drift_share)
        self.group.labels(model, "all").set(1 if result.drift else 0)
        for group in GROUPS:
            self.group.labels(model, group).set(1 if result.groups.get(group) else 0)
        self.last_run.labels(model).set(result.started_at)
        self.duration.labels(model).set(result.duration_seconds)

    def clear(self, model: str) -> None:
        """Remove ``model``'s verdict series (``llm_drift_detected``, ``_score``, ``_share``, ``_group_detected``),
        so that an old verdict does not outlive the run that found it. The latest ok run's timestamp, its duration
        and the counters stay."""
        for feature, stattest in self._scores.pop(model, set()):
            self.score.remove(model, feature, stattest)
        for feature in self._features.pop(model, set()):
            self.detected.remove(model, feature)
        self.share.remove(model)
        for group in ("all", *GROUPS):
            self.group.remove(model, group)


class DriftMonitor:
    """Drift detection for every model the worker sees."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: DriftConfig,
        registry: CollectorRegistry | None = None,
        reports_dir: str | Path | None = None,
        *,
        auto_reports: bool = True,
    ) -> None:
        self.settings = settings
        self.auto_reports = auto_reports  # False: reports only on request (``report``)
        self.windows = DriftWindows(redis, settings)
        self.metrics = DriftMetrics(registry)
        self.reports_dir = Path(reports_dir) if reports_dir else default_reports_dir(settings)
        self.last: dict[str, DriftResult] = {}  # latest result of a run in this process, per model
        self._tasks: set[asyncio.Task] = set()
        self._running: set[str] = set()
        self._syncing: set[str] = set()
        self._reporting: set[str] = set()
        self._exported: dict[str, int] = {}  # model -> version of the result exported
        self._reference: dict[str, tuple[tuple[str, int], Columns]] = {}  # model -> ((content hash, fields), columns)
        self._reported: dict[str, tuple[float, frozenset[str]]] = {}  # model -> (when, drifted features)
        self._last_warning = 0.0
        self.embedder: Any = None  # monitors.drift.embeddings.Embedder when drift.embeddings.enabled
        self._reference_texts: dict[str, tuple[str, dict[str, list[str]]]] = {}  # model -> (hash, texts)
        if settings.enabled and settings.embeddings.enabled:
            from monitors.drift import embeddings  # the optional extra: imported only when enabled

            problem = embeddings.missing_extra(settings.embeddings.model_path)
            if problem:
                from llmops.config import ConfigError

                raise ConfigError(problem)
            self.embedder = embeddings.Embedder(settings.embeddings)

    async def warm_up(self) -> None:
        """Import Evidently in a thread now (3-5 s) rather than at the first run; optional."""
        from monitors.drift.detector import evidently_stattests

        await asyncio.to_thread(evidently_stattests)
        if self.embedder is not None:
            await asyncio.to_thread(self.embedder.load)

    # ---- the worker's entry point ---------------------------------------------------------------------------------
    async def observe(self, sample: Sample, scores: Mapping[str, float] | None = None) -> None:
        """Add one committed sample (and its judge scores, ``{"judge:criterion": score}``) to its model's window;
        start a run in the background when one is due. Never raises."""
        if not self.settings.enabled or sample.status != 200:
            return  # failed requests have no answer: error rates are the gateway's metrics
        model = sample.model
        row = extract(sample, scores)
        if self.embedder is not None:
            from monitors.drift.embeddings import texts

            answer = None if sample.endpoint == "embeddings" else sample.answer
            row.update(texts(prompt_text(sample), answer, self.settings.embeddings.max_chars))
        try:
            appended = await self.windows.append(model, row)
        except Exception as error:
            self._warn(f"drift: cannot add a sample of {model} to its window: {type(error).__name__}: {error}")
            return
        if appended.version > self._exported.get(model, 0) and not ({model} & (self._syncing | self._running)):
            self._syncing.add(model)
            self._spawn(self._sync(model), lambda: self._syncing.discard(model))
        wants_reference = not appended.has_reference and (
            appended.length >= self.settings.window or bool(self.settings.window_minutes)
        )
        if not (wants_reference or (appended.due and appended.has_reference)):
            return
        if model in self._running:
            log.debug("drift: a run for %s is still in flight; this trigger is dropped", model)
            return
        self._running.add(model)
        self._spawn(self._background(model, wants_reference, bool(appended.due)), lambda: self._running.discard(model))

    async def _background(self, model: str, wants_reference: bool, due: bool) -> None:
        if wants_reference:
            length = await self.windows.redis.llen(self.windows.key(model, "window"))
            if not await self.windows.is_full(model, length):
                return
            info = await self.windows.auto_reference(model)
            if info is not None:
                log.info("drift: %s reference = the first full window (%d rows, %s)", model, info.rows, info.hash[:12])
        if due:
            await self._run(model)

    # ---- runs -----------------------------------------------------------------------------------------------------
    async def run(self, model: str) -> DriftResult:
        """Run drift detection for ``model`` now (exported, stored, counted); never raises."""
        return await self._run(model)

    async def _run(self, model: str, report: bool | None = None) -> DriftResult:
        started = time.time()
        t0 = time.perf_counter()
        reference_columns: Columns = {}
        current_columns: Columns = {}
        try:
            info, fields = await self.windows.reference_state(model)
            if info is None:
                result = DriftResult(model, "skipped", "no reference yet (pin one, or wait for the first full window)")
            else:
                raw_window = await self.windows.redis.lrange(self.windows.key(model, "window"), 0, -1)
                raw_scores = await self.windows.scores_raw(model)
                cached = self._reference.get(model)
                fresh = cached is not None and cached[0] == (info.hash, fields)
                raw_reference = None
                if not fresh:
                    rows = await self.windows.reference_rows_raw(model)
                    raw_reference = (rows, await self.windows.reference_scores_raw(model), fields)
                feedback = await self._feedback(model, info, raw_window)
                result, reference_columns, current_columns = await asyncio.to_thread(
                    self._detect, model, info, raw_reference, raw_window, feedback, raw_scores
                )
        except Exception as error:
            log.warning("drift: run for %s failed: %s: %s", model, type(error).__name__, error, exc_info=True)
            result = DriftResult(model, "error", f"{type(error).__name__}: {error}")
        result.started_at = started
        result.duration_seconds = time.perf_counter() - t0
        self._record(result)
        try:  # skipped and failed runs too: the other workers then drop the verdict they export
            self._exported[model] = await self.windows.store_result(model, result.to_dict())
        except Exception as error:
            self._warn(f"drift: cannot store the result for {model}: {type(error).__name__}: {error}")
        if result.outcome == "ok" and (report or (report is None and self.auto_reports and self._report_due(result))):
            await self._report(result, reference_columns, current_columns, wait=bool(report))
        return result

    async def _feedback(
        self, model: str, info: ReferenceInfo, raw_window: list[bytes | str]
    ) -> tuple[list, list] | None:
        """User feedback given during the reference's and the current window's time spans (gateway's stream)."""
        if info.start is None or info.end is None or not raw_window:
            return None
        start = orjson.loads(raw_window[0]).get("ts")
        if not isinstance(start, int | float):
            return None
        if self.settings.window_minutes:
            start = max(start, time.time() - self.settings.window_minutes * 60)
        try:
            reference = await self.windows.feedback(model, info.start, info.end)
            current = await self.windows.feedback(model, start, time.time())
        except Exception as error:  # no stream yet is an empty range, not an error; anything else: skip feedback
            self._warn(f"drift: cannot read the feedback of {model}: {type(error).__name__}: {error}")
            return None
        return (reference, current) if reference or current else None

    def _detect(
        self,
        model: str,
        info: ReferenceInfo,
        raw_reference: tuple[bytes | str | None, dict[str, bytes], int] | None,
        raw_window: list[bytes | str],
        feedback: tuple[list, list] | None = None,
        raw_scores: dict[str, list[bytes]] | None = None,
    ) -> tuple[DriftResult, Columns, Columns]:
        """In a thread: parse the windows, build the columns, run the stat tests. A judge score's values come from
        its own window (``windows.scores_raw``; the window's rows when it has none yet), and, under an auto reference,
        its reference values from its first full window once taken (else from the reference's rows)."""
        if raw_reference is not None:
            rows_json, scores_json, fields = raw_reference
            reference_rows = orjson.loads(rows_json) if rows_json else []
            columns = to_columns(reference_rows)
            for name, raw in scores_json.items():
                if name in columns:
                    columns[name] = np.array(self.windows.score_values(orjson.loads(raw), recent=False), dtype=float)
            self._reference[model] = ((info.hash, fields), columns)
            if self.embedder is not None:
                from monitors.drift.embeddings import window_texts

                self._reference_texts[model] = (info.hash, window_texts(reference_rows))
        reference = self._reference[model][1]
        current_rows = self.windows.recent([orjson.loads(r) for r in raw_window])
        current = to_columns(current_rows)
        for name, entries in (raw_scores or {}).items():
            if name in current:
                current[name] = np.array(self.windows.score_values(entries), dtype=float)
        if feedback is not None:  # feedback events in each window's time span replace per-sample feedback scores
            reference = {**reference, "feedback:rating": np.array(feedback[0], dtype=float)}
            current["feedback:rating"] = np.array(feedback[1], dtype=float)
        result = detect(model, reference, current, self.settings, info)
        if self.embedder is not None:  # optional text-embedding drift: distance-kind features, outside Holm
            from monitors.drift import embeddings

            texts = self._reference_texts.get(model, ("", {}))[1]
            features = embeddings.compare(
                self.embedder, model, info.hash, texts, embeddings.window_texts(current_rows), self.settings.min_samples
            )
            embeddings.merge(result, features, self.settings.min_samples)
        return result, reference, current

    def _record(self, result: DriftResult) -> None:
        m, model = self.metrics, result.model
        m.runs.labels(model, result.outcome).inc()
        for f in result.features:
            if f.skipped:
                m.feature_skips.labels(model, f.feature, f.skipped).inc()
                level = logging.WARNING if f.skipped == "error" else logging.DEBUG
                log.log(level, "drift: %s: %s skipped (%s): %s", model, f.feature, f.skipped, f.detail)
        if result.outcome != "ok":
            level = logging.WARNING if result.outcome == "error" else logging.INFO
            log.log(level, "drift: run for %s %s (no verdict until the next ok run)", model, result.summary())
            m.export(result)
            return
        previous = self.last.get(model)
        self.last[model] = result
        m.export(result)
        changed = previous is None or previous.drifted_features != result.drifted_features
        log.log(
            logging.WARNING if result.drift and changed else logging.INFO,
            "drift: %s %s [%.0f ms, %d vs %d samples, reference %s]",
            model,
            result.summary(),
            result.duration_seconds * 1000,
            result.n_current,
            result.n_reference,
            result.reference.hash[:12] if result.reference else "-",
        )

    async def _sync(self, model: str) -> None:
        """Export the latest result another worker stored (a skipped or failed one clears the verdict)."""
        version, data = await self.windows.last_result(model)
        if data is not None and version > self._exported.get(model, 0):
            self.metrics.export(DriftResult.from_dict(data))
            self._exported[model] = version

    # ---- reports --------------------------------------------------------------------------------------------------
    def _report_due(self, result: DriftResult) -> bool:
        last = self._reported.get(result.model)
        if last is None or last[1] != frozenset(result.drifted_features):
            return True
        return time.time() - last[0] >= self.settings.report_every_seconds

    async def _report(self, result: DriftResult, reference: Columns, current: Columns, wait: bool = False) -> None:
        model = result.model
        if model in self._reporting:
            return
        self._reporting.add(model)
        self._reported[model] = (time.time(), frozenset(result.drifted_features))

        async def write() -> None:
            t0 = time.perf_counter()
            try:
                path = await asyncio.to_thread(write_report, self.reports_dir, reference, current, result)
                log.info("drift: report for %s written to %s in %.1f s", model, path, time.perf_counter() - t0)
            except Exception as error:
                log.warning("drift: report for %s failed: %s: %s", model, type(error).__name__, error)
                self._reported.pop(model, None)

        if wait:
            try:
                await write()
            finally:
                self._reporting.discard(model)
        else:
            self._spawn(write(), lambda: self._reporting.discard(model))

    async def report(self, model: str) -> Path | None:
        """The path of ``model``'s latest report for ``/reports/<model>``; built now (a run, seconds) when this worker
        has none yet and the model has a reference. None when there is nothing to show."""
        path = report_path(self.reports_dir, model)
        if path is not None:
            return path
        try:
            if await self.windows.reference_info(model) is None:
                return None  # unknown model (or no reference yet): no run, no series for arbitrary names
        except Exception:
            return None
        await self._run(model, report=True)
        return report_path(self.reports_dir, model)

    # ---- tasks ----------------------------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any], done: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def finished(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            done()
            if not t.cancelled() and t.exception() is not None:
                error = t.exception()
                self._warn(f"drift: background task failed: {type(error).__name__}: {error}")

        task.add_done_callback(finished)

    async def wait_idle(self) -> None:
        """Wait until no run, sync or report is in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel what is in flight (the Redis client is the caller's)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _warn(self, message: str) -> None:
        """Log a warning at most every 60 s (a Redis outage would otherwise log once per sample)."""
        now = time.monotonic()
        if now - self._last_warning >= 60:
            self._last_warning = now
            log.warning(message)
