#!/usr/bin/env python3
"""Drift power benchmark: how often a drift run finds a given shift, the previous stat tests against the current ones,
side by side on the same seeded traffic; and how often it raises a false alarm on stable traffic. Not a test.

    .venv/bin/python bench/drift_power.py                        # ~10 minutes on one core
    .venv/bin/python bench/drift_power.py --trials 100 --stable-trials 200 --streams 4   # quick look
    .venv/bin/python bench/drift_power.py --json /tmp/drift_power.json

Every trial is one full drift run (``detect``) at the default settings (window 500, min_samples 100, Holm at 0.05
over every tested feature), a reference window of 500 samples against an independent current window of 500, from
``llmops/testing/drift_traffic.py``'s generator (trial i uses seeds derived from ``--seed`` and i). The same windows go
through two catalogues:

* **old**: the catalogue before issue 18: K-S on graded judge scores, K-S on the Hangul / Latin / other shares of the
  prompt and the answer, and ``rules:refusal`` tested beside ``refusal``;
* **new**: the current one (``monitors.drift.FEATURES``): Evidently's ``t_test`` on graded judge scores, the dominant
  script (``prompt_script``, ``response_script``) with the chi-square test of homogeneity (on two scripts: the
  two-proportion z-test), ``refusal`` once.

Scenarios: a drop of 0.1 (on the 0..1 scale: 0.9 of a 1-10 rating, 7.5 -> 6.6) of the LLM judge's rating with 100
scores per window (the judge on 20% of the samples); the same drop with the judge on 10% of the samples at the
defaults (old: 50 scores per window of samples, under min_samples; new: the score's own window of 500 values);
Korean requests 20% -> 30%; stable traffic (the false-alarm rate per run, old and new). A shift is "found" when the
feature named drifted after Holm's correction (for the script: ``prompt_script``, old: any prompt share); "verdict" is
the model's drift verdict (any feature).

Then false-alarm episodes: ``--streams`` stable streams, each with its own auto reference (its first 500 samples) and
runs every 100 samples over a sliding window of 500 (the defaults), as a worker runs them; an episode is a stretch of
consecutive runs whose verdict is "drift". Printed per run, and per day at a few traffic levels.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core: no BLAS thread pools
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore", category=RuntimeWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

import numpy as np  # noqa: E402

from llmops.config import DriftConfig  # noqa: E402
from llmops.testing.drift_traffic import Traffic, generate  # noqa: E402
from monitors.drift import FEATURES, SCRIPTS, FeatureSpec  # noqa: E402
from monitors.drift.detector import detect, evidently_stattests  # noqa: E402
from monitors.drift.features import extract, prompt_text, script_counts, to_columns  # noqa: E402

SETTINGS = DriftConfig()  # the defaults: window 500, min_samples 100, significance 0.05
WINDOW = SETTINGS.window
SCORE = "llm_single:overall"
OLD_SCRIPT_FEATURES = {"prompt": [f"prompt_{s}_share" for s in SCRIPTS]}


def old_catalogue() -> dict[str, FeatureSpec]:
    """The features and pinned tests before issue 18, rebuilt from the current catalogue."""
    old: dict[str, FeatureSpec] = {}
    for name, spec in FEATURES.items():
        if name.endswith("_script"):
            side = name.removesuffix("_script")
            for script in SCRIPTS:
                share = f"{side}_{script}_share"
                old[share] = FeatureSpec(share, "numerical", spec.group, "ks", f"share of {script} letters")
        elif spec.stattest == "t_test":
            old[name] = replace(spec, stattest="ks")
        else:
            old[name] = spec
    old["rules:refusal"] = FeatureSpec("rules:refusal", "categorical", "quality", "z", "rules judge: 1 = no refusal")
    return old


OLD = old_catalogue()
NEW = dict(FEATURES)


def rows_of(samples: list) -> tuple[list[dict], list[dict]]:
    """The current feature rows, and each sample's extra columns of the old catalogue (script shares, rules:refusal)."""
    rows, extra = [], []
    for sample, scores in samples:
        rows.append(extract(sample, scores))
        old: dict = {"rules:refusal": scores["rules:refusal"]}
        for side, text in (("prompt", prompt_text(sample)), ("response", sample.answer)):
            hangul, latin, other, _ = script_counts(text)
            letters = hangul + latin + other
            if letters:
                for script, count in zip(SCRIPTS, (hangul, latin, other), strict=True):
                    old[f"{side}_{script}_share"] = count / letters
        extra.append(old)
    return rows, extra


def columns(rows: list[dict], extra: list[dict], score_every: int = 1) -> tuple[dict, dict]:
    """(new columns, old columns) of one window; the LLM judge's score kept on every ``score_every``-th sample."""
    new = to_columns(rows)
    if score_every > 1:
        keep = np.arange(len(rows)) % score_every == 0
        new[SCORE] = np.where(keep, new[SCORE], np.nan)
    old = dict(new)
    old.update(to_columns(extra, [n for n in OLD if n not in NEW]))
    return new, old


def drifted(result, names: list[str]) -> bool:
    return any(f.drifted for f in result.features if f.feature in names)


def trial_windows(base: Traffic, shifted: Traffic, seed: int) -> tuple[tuple[list, list], tuple[list, list]]:
    reference = rows_of(generate(base, WINDOW, seed=2 * seed))
    current = rows_of(generate(shifted, WINDOW, seed=2 * seed + 1))
    return reference, current


def rate(hits: int, n: int) -> str:
    """A share with its 95% interval half-width (normal approximation)."""
    p = hits / n
    return f"{100 * p:5.1f}% ±{100 * 1.96 * math.sqrt(max(p * (1 - p), 1 / n) / n):4.1f}"


def power(trials: int, seed: int) -> dict[str, dict[str, int]]:
    base = Traffic()
    counts: dict[str, dict[str, int]] = {}

    def count(scenario: str, key: str, hit: bool) -> None:
        counts.setdefault(scenario, {}).setdefault(key, 0)
        counts[scenario][key] += int(hit)

    mannw = SETTINGS.model_copy(update={"stattests": {SCORE: "mannw"}})
    for i in range(trials):
        # a 0.1 drop of the LLM judge's rating: 100 scores per window (judge on 20%), then the judge on 10%
        (ref_rows, ref_extra), (cur_rows, cur_extra) = trial_windows(base, base.shifted(quality=6.6), seed + i)
        for scenario, every_old, every_new in (("quality-100", 5, 5), ("quality-10pct", 10, 1)):
            ref_new, _ = columns(ref_rows, ref_extra, every_new)
            cur_new, _ = columns(cur_rows, cur_extra, every_new)
            _, ref_old = columns(ref_rows, ref_extra, every_old)
            _, cur_old = columns(cur_rows, cur_extra, every_old)
            old = detect("m", ref_old, cur_old, SETTINGS, features=OLD)
            new = detect("m", ref_new, cur_new, SETTINGS, features=NEW)
            count(scenario, "old", drifted(old, [SCORE]))
            count(scenario, "new", drifted(new, [SCORE]))
            count(scenario, "old_verdict", old.drift)
            count(scenario, "new_verdict", new.drift)
            old_score = old.feature(SCORE)
            count(scenario, "old_tested", old_score is not None and old_score.skipped is None)
            if scenario == "quality-100":
                count(scenario, "mannw", drifted(detect("m", ref_new, cur_new, mannw, features=NEW), [SCORE]))
        # Korean requests 20% -> 30%
        (ref_rows, ref_extra), (cur_rows, cur_extra) = trial_windows(base, base.shifted(korean=0.3), seed + 10**6 + i)
        ref_new, ref_old = columns(ref_rows, ref_extra)
        cur_new, cur_old = columns(cur_rows, cur_extra)
        old = detect("m", ref_old, cur_old, SETTINGS, features=OLD)
        new = detect("m", ref_new, cur_new, SETTINGS, features=NEW)
        count("korean", "old", drifted(old, OLD_SCRIPT_FEATURES["prompt"]))
        count("korean", "new", drifted(new, ["prompt_script"]))
        count("korean", "old_verdict", old.drift)
        count("korean", "new_verdict", new.drift)
        if (i + 1) % 50 == 0:
            print(f"  power: {i + 1}/{trials} trials", file=sys.stderr)
    return counts


def stable(trials: int, seed: int) -> dict[str, int]:
    counts = {"old": 0, "new": 0, "old_tested": 0, "new_tested": 0}
    base = Traffic()
    for i in range(trials):
        (ref_rows, ref_extra), (cur_rows, cur_extra) = trial_windows(base, base, seed + 2 * 10**6 + i)
        ref_new, ref_old = columns(ref_rows, ref_extra)
        cur_new, cur_old = columns(cur_rows, cur_extra)
        old = detect("m", ref_old, cur_old, SETTINGS, features=OLD)
        new = detect("m", ref_new, cur_new, SETTINGS, features=NEW)
        counts["old"] += old.drift
        counts["new"] += new.drift
        counts["old_tested"] += len(old.tested)
        counts["new_tested"] += len(new.tested)
        if (i + 1) % 100 == 0:
            print(f"  stable: {i + 1}/{trials} trials", file=sys.stderr)
    return counts


def episodes(streams: int, samples: int, seed: int) -> dict[str, Any]:
    """Runs every ``every`` samples over a sliding window, against the stream's first window (auto reference)."""
    every = SETTINGS.every
    runs = alarms = starts = 0
    lengths: list[int] = []
    per_stream: list[float] = []
    flagged: dict[str, int] = {}  # feature -> alarming runs that flagged it
    for s in range(streams):
        rows = [extract(x, y) for x, y in generate(Traffic(), WINDOW + samples, seed=seed + 3 * 10**6 + s)]
        reference = to_columns(rows[:WINDOW])
        previous, length, stream_alarms, stream_runs = False, 0, 0, 0
        for end in range(WINDOW + every, WINDOW + samples + 1, every):
            result = detect("m", reference, to_columns(rows[end - WINDOW : end]), SETTINGS)
            alarm = result.drift
            for name in result.drifted_features:
                flagged[name] = flagged.get(name, 0) + 1
            stream_runs += 1
            stream_alarms += alarm
            if alarm and not previous:
                starts += 1
            if alarm:
                length += 1
            elif previous:
                lengths.append(length)
                length = 0
            previous = alarm
        if previous:
            lengths.append(length)
        runs += stream_runs
        alarms += stream_alarms
        per_stream.append(stream_alarms / stream_runs)
        print(f"  episodes: stream {s + 1}/{streams}: {stream_alarms} of {stream_runs} runs alarmed", file=sys.stderr)
    return {
        "runs": runs,
        "alarms": alarms,
        "episodes": starts,
        "episode_lengths_runs": sorted(lengths),
        "per_stream_alarm_rate": per_stream,
        "flagged": dict(sorted(flagged.items(), key=lambda item: -item[1])),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=500, help="trials per shift scenario")
    parser.add_argument("--stable-trials", type=int, default=1000, help="trials on stable traffic (false alarms)")
    parser.add_argument("--streams", type=int, default=20, help="stable streams for the false-alarm episodes")
    parser.add_argument("--stream-samples", type=int, default=20_000, help="samples per stream after its reference")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    evidently_stattests()
    t0 = time.perf_counter()
    shifts = power(args.trials, args.seed)
    quiet = stable(args.stable_trials, args.seed)
    stream = episodes(args.streams, args.stream_samples, args.seed) if args.streams else None
    elapsed = time.perf_counter() - t0

    n, m = args.trials, args.stable_trials
    figures: dict[str, object] = {"trials": n, "stable_trials": m, "seed": args.seed, "seconds": round(elapsed, 1)}
    print(f"\n{elapsed:.0f} s")
    if n and m:
        figures.update(shifts=shifts, stable=quiet)
        print_power(n, m, shifts, quiet)
    if stream is not None:
        figures["episodes"] = stream
        print_episodes(args.streams, args.stream_samples, stream)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


def print_power(n: int, m: int, shifts: dict, quiet: dict) -> None:
    alpha = SETTINGS.significance
    print(
        f"\nDrift power at the defaults (window {WINDOW}, min_samples {SETTINGS.min_samples}, Holm at {alpha}); "
        f"{n} seeded trials per shift, {m} on stable traffic\n"
    )
    header = f"{'scenario':<52} {'found by':<38} {'old test':>18} {'new test':>18}"
    print(header)
    print("-" * len(header))
    q, q10, ko = shifts["quality-100"], shifts["quality-10pct"], shifts["korean"]
    lines = [
        ("LLM judge -0.1, 100 scores per window (judge on 20%)", f"{SCORE} (K-S | t-test)", q, "old", "new"),
        ("  same, the model's verdict (any feature)", "verdict", q, "old_verdict", "new_verdict"),
        ("LLM judge -0.1, judge on 10%, defaults", f"{SCORE} (50 | 500 scores)", q10, "old", "new"),
        ("Korean requests 20% -> 30%", "prompt script (K-S | chi2)", ko, "old", "new"),
        ("  same, the model's verdict (any feature)", "verdict", ko, "old_verdict", "new_verdict"),
    ]
    for label, by, counts, old_key, new_key in lines:
        print(f"{label:<52} {by:<38} {rate(counts[old_key], n):>18} {rate(counts[new_key], n):>18}")
    print(
        f"{'  (old, judge on 10%: the score tested in)':<52} {'':<38} {rate(q10['old_tested'], n):>18} "
        f"{'':>18}\n{'  (Evidently mannw, one-sided, on the -0.1 drop)':<52} {'':<38} {'':>18} "
        f"{rate(q['mannw'], n):>18}"
    )
    print(
        f"{'stable traffic: false alarms per run':<52} {'verdict':<38} {rate(quiet['old'], m):>18} "
        f"{rate(quiet['new'], m):>18}\n"
        f"{'  features tested per run (mean)':<52} {'':<38} {quiet['old_tested'] / m:>18.1f} "
        f"{quiet['new_tested'] / m:>18.1f}"
    )


def print_episodes(streams: int, samples: int, stream: dict) -> None:
    runs, starts = int(stream["runs"]), int(stream["episodes"])
    lengths = list(stream["episode_lengths_runs"])
    per_stream = list(stream["per_stream_alarm_rate"])
    per_run = starts / runs
    print(
        f"\nFalse-alarm episodes (new catalogue): {streams} stable streams x {samples} samples, "
        f"each against its own first window, a run every {SETTINGS.every} samples: {stream['alarms']} of {runs} "
        f"runs alarmed ({100 * int(stream['alarms']) / runs:.2f}%; per stream "
        f"{100 * min(per_stream):.1f}-{100 * max(per_stream):.1f}%), in {starts} episodes "
        f"({per_run:.4f} per run of {SETTINGS.every} new samples; lengths in runs: {lengths})"
    )
    # An episode is a stretch of traffic: per day, (episodes per `every` samples) x (samples per day / every),
    # lasting (its runs x every samples) / (samples per minute). Runs that come by time (every_seconds, at low
    # traffic) cut the same stretches finer: more runs, about the same episodes.
    for per_day in (10_000, 100_000, 1_000_000):
        per_minute = per_day / 1440
        long = sum(1 for length in lengths if length * SETTINGS.every / per_minute >= 30) / max(1, len(lengths))
        episodes_per_day = per_run * per_day / SETTINGS.every
        print(
            f"  {per_day:>9,} samples/day: {episodes_per_day:.1f} episodes/day; lasting 30 min (an "
            f"LLMDriftDetected ticket): {episodes_per_day * long:.2f}/day (a run's {SETTINGS.every} new samples "
            f"come in {SETTINGS.every / per_minute:.1f} min)"
        )
    print(f"  features flagged in the alarming runs: {stream['flagged']}")


if __name__ == "__main__":
    sys.exit(main())
