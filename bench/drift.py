#!/usr/bin/env python3
"""Drift benchmark: one drift run over a 5,000-sample reference against a 5,000-sample window, on one core, with the
features of the window's samples computed in the run; RSS over 100 runs. Not part of the test suite.

    .venv/bin/python bench/drift.py                       # 100 runs, ~1 minute
    .venv/bin/python bench/drift.py --runs 20 --json /tmp/drift.json

What one run measures (target: <= 1 s):
  * features: ``features.extract`` for each of the 5,000 current samples (in the worker this happens once per sample
    in ``observe``; here all of them are counted in the run), then the rows as JSON and back (what Redis stores);
  * ``to_columns`` of the current rows (the reference's columns are cached between runs, as in the worker);
  * ``detect``: every feature's pinned Evidently stat test, Holm's correction, the decision.
Also measured: the same with the reference's 5,000 samples' features recomputed too, a run through ``DriftMonitor``
with the windows in a private redis-server (when ``redis-server`` is installed), one full Evidently HTML report at
5,000 x 5,000, and the process's RSS (VmRSS) before and after the runs (flat = no leak). Traffic: the seeded synthetic
traffic of the tests (``llmops/testing/drift_traffic.py``), English and Korean, with judge scores; the window is shifted
(more Korean, longer prompts) so that drift is found and every feature is tested.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core: no BLAS thread pools
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TARGET_S = 1.0


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000, help="samples in the reference and in the window")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--cpu", type=int, default=0, help="the one CPU to run on")
    parser.add_argument("--no-redis", action="store_true", help="skip the run through DriftMonitor and Redis")
    parser.add_argument("--no-report", action="store_true", help="skip the full Evidently HTML report")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    import logging

    import orjson

    logging.getLogger("llmops.monitors.drift").setLevel(logging.ERROR)  # one drift warning per run otherwise

    from llmops.config import DriftConfig
    from llmops.testing.drift_traffic import Traffic, generate
    from monitors.drift.detector import detect, evidently_stattests
    from monitors.drift.features import extract, to_columns

    figures: dict[str, object] = {"rows": args.rows, "runs": args.runs, "python": platform.python_version()}
    settings = DriftConfig(window=args.rows, min_samples=100)
    t0 = time.perf_counter()
    evidently_stattests()
    figures["evidently_import_s"] = round(time.perf_counter() - t0, 2)
    base = Traffic(other_script=0.05, empty_rate=0.01)  # every feature of the catalogue varies
    reference_samples = generate(base, args.rows, seed=1)
    current_samples = generate(base.shifted(korean=0.35, prompt_words=48.0), args.rows, seed=2)
    reference = to_columns([extract(s, x) for s, x in reference_samples])

    def one_run(recompute_reference: bool = False):
        t = time.perf_counter()
        rows = [orjson.loads(orjson.dumps(extract(s, x))) for s, x in current_samples]
        ref = to_columns([extract(s, x) for s, x in reference_samples]) if recompute_reference else reference
        result = detect("bench", ref, to_columns(rows), settings)
        return time.perf_counter() - t, result

    _, result = one_run()  # warm-up
    print(f"features tested: {len(result.tested)} ({', '.join(f.feature for f in result.tested)})")
    print(f"verdict: {result.summary()}")
    gc.collect()
    rss_before = rss_mb()
    times, detect_times, rss = [], [], []
    for _ in range(args.runs):
        elapsed, result = one_run()
        times.append(elapsed)
        detect_times.append(result.duration_seconds)
        rss.append(rss_mb())
    gc.collect()
    rss_after = rss_mb()
    settled = rss[min(9, len(rss) - 1)]
    both = [one_run(recompute_reference=True)[0] for _ in range(5)]
    figures.update(
        run_median_s=round(statistics.median(times), 3),
        run_p95_s=round(sorted(times)[int(0.95 * (len(times) - 1))], 3),
        run_max_s=round(max(times), 3),
        detect_median_s=round(statistics.median(detect_times), 4),
        run_with_reference_features_median_s=round(statistics.median(both), 3),
        ratio_to_target=round(statistics.median(times) / TARGET_S, 3),
        rss_before_mb=round(rss_before, 1),
        rss_after_mb=round(rss_after, 1),
        rss_growth_mb=round(rss_after - rss_before, 1),
        rss_after_10_runs_mb=round(settled, 1),
        rss_growth_after_10_runs_mb=round(rss_after - settled, 1),
        rss_max_mb=round(max(rss), 1),
        features_tested=len(result.tested),
    )
    print(
        f"{args.runs} runs, {args.rows} vs {args.rows} samples, one core: median {figures['run_median_s']} s "
        f"(p95 {figures['run_p95_s']} s, max {figures['run_max_s']} s) = {figures['ratio_to_target']:.2f} x the "
        f"{TARGET_S:g} s target; stat tests alone {figures['detect_median_s']} s; with the reference's features "
        f"recomputed too {figures['run_with_reference_features_median_s']} s"
    )
    print(
        f"RSS: {rss_before:.1f} MB before the runs, {settled:.1f} MB after 10, {rss_after:.1f} MB after {args.runs} "
        f"({rss_after - rss_before:+.1f} MB in all, {rss_after - settled:+.1f} MB after the 10th; peak {max(rss):.1f})"
    )

    if not args.no_redis and shutil.which("redis-server"):
        figures.update(asyncio.run(through_redis(args.rows, reference_samples, current_samples)))
        print(
            f"through DriftMonitor.run (windows in Redis, parse + columns + tests): median "
            f"{figures['monitor_run_median_s']} s over {figures['monitor_runs']} runs; RSS "
            f"{figures['monitor_rss_before_mb']} -> {figures['monitor_rss_after_mb']} MB"
        )
    if not args.no_report:
        from monitors.drift.reports import render_report

        current = to_columns([extract(s, x) for s, x in current_samples])
        result = detect("bench", reference, current, settings)
        t = time.perf_counter()
        page = render_report(reference, current, result)
        figures["report_s"] = round(time.perf_counter() - t, 2)
        figures["report_mb"] = round(len(page) / 1e6, 1)
        del page
        gc.collect()
        figures["rss_after_report_mb"] = round(rss_mb(), 1)
        print(
            f"full Evidently HTML report at {args.rows} x {args.rows}: {figures['report_s']} s, "
            f"{figures['report_mb']} MB; RSS after it {figures['rss_after_report_mb']} MB"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if statistics.median(times) <= TARGET_S else 1


async def through_redis(rows: int, reference_samples, current_samples) -> dict[str, object]:
    """Median time of ``DriftMonitor.run`` with both windows in a private redis-server."""
    import redis.asyncio as aioredis
    from prometheus_client import CollectorRegistry

    from llmops.config import DriftConfig
    from llmops.testing.processes import redis_server
    from monitors.drift.features import extract
    from monitors.drift.monitor import DriftMonitor

    with redis_server() as url, tempfile.TemporaryDirectory() as reports:
        client = aioredis.from_url(url)
        settings = DriftConfig(window=rows, every=10**9, every_seconds=None, min_samples=100)
        monitor = DriftMonitor(client, settings, CollectorRegistry(), reports, auto_reports=False)
        await monitor.windows.set_reference("bench", [extract(s, x) for s, x in reference_samples], "file:bench")
        for offset in range(0, len(current_samples), 500):
            pipe = client.pipeline(transaction=False)
            for sample, scores in current_samples[offset : offset + 500]:
                pipe.rpush(monitor.windows.key("bench", "window"), orjson_dumps(extract(sample, scores)))
            await pipe.execute()
        await monitor.run("bench")  # warm-up: the reference's columns are cached from here on
        gc.collect()
        before = rss_mb()
        times = []
        for _ in range(30):
            t = time.perf_counter()
            result = await monitor.run("bench")
            times.append(time.perf_counter() - t)
        gc.collect()
        after = rss_mb()
        assert result.outcome == "ok", result.reason
        await client.aclose()
    return {
        "monitor_runs": len(times),
        "monitor_run_median_s": round(statistics.median(times), 3),
        "monitor_rss_before_mb": round(before, 1),
        "monitor_rss_after_mb": round(after, 1),
    }


def orjson_dumps(value: object) -> bytes:
    import orjson

    return orjson.dumps(value)


if __name__ == "__main__":
    sys.exit(main())
