"""The drift decision: pinned stat tests, Holm's correction, the drifted share, constant and sparse columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmops.config import DriftConfig
from llmops.testing.drift_traffic import Traffic, generate
from monitors.drift.detector import DriftResult, FeatureResult, _holm, detect, evidently_stattests
from monitors.drift.features import extract, to_columns
from monitors.drift.windows import ReferenceInfo

pytestmark = pytest.mark.filterwarnings(
    "ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning", "ignore::DeprecationWarning"
)
SETTINGS = DriftConfig(window=250, min_samples=100, significance=0.05)


def columns(traffic: Traffic, n: int, seed: int):
    return to_columns([extract(s, x) for s, x in generate(traffic, n, seed)])


def test_false_alarm_rate_over_independent_windows_is_within_significance() -> None:
    rows = [extract(s, x) for s, x in generate(Traffic(), 250 * 80, seed=909)]
    pairs = [(to_columns(rows[i : i + 250]), to_columns(rows[i + 250 : i + 500])) for i in range(0, len(rows), 500)]
    alarms = [detect("m", ref, cur, SETTINGS).drift for ref, cur in pairs]
    assert len(alarms) == 40
    assert sum(alarms) / len(alarms) <= SETTINGS.significance


def test_holm_step_down() -> None:
    features = [FeatureResult(f"f{i}", "input") for i in range(4)]
    _holm(list(zip(features, [0.001, 0.03, 0.013, 0.9], strict=True)), 0.05)
    # sorted: 0.001 <= 0.05/4, 0.013 <= 0.05/3, 0.03 > 0.05/2 stops it
    assert [f.drifted for f in features] == [True, False, True, False]
    assert [f.threshold for f in features] == pytest.approx([0.0125, 0.025, 0.05 / 3, 0.05])


def test_pinned_tests_and_scores() -> None:
    result = detect("m", columns(Traffic(), 300, 1), columns(Traffic(prompt_words=100), 300, 2), SETTINGS)
    assert result.outcome == "ok"
    used = {f.feature: f.stattest for f in result.tested}
    assert used["prompt_chars"] == "ks" and used["refusal"] == "z" and used["finish_reason"] == "chi2_contingency"
    chars = result.feature("prompt_chars")
    assert chars is not None and chars.drifted and chars.score < 1e-10
    assert result.drift and result.groups["input"] and not result.groups["quality"]
    assert result.drift_share == pytest.approx(len(result.drifted_features) / len(result.tested))


def test_drift_share_threshold_gates_the_model_verdict() -> None:
    settings = SETTINGS.model_copy(update={"drift_share_threshold": 0.5})
    result = detect("m", columns(Traffic(), 300, 1), columns(Traffic(quality=5.0), 300, 2), settings)
    assert result.drifted_features == ["llm_single:overall"]  # the feature is still flagged...
    assert not result.drift and not result.groups["input"]  # ...but one of 18 is below the share threshold


def test_distance_override_and_constant_reference_guard() -> None:
    settings = SETTINGS.model_copy(
        update={"stattests": {"prompt_chars": "wasserstein", "prompt_hangul_share": "wasserstein"}}
    )
    result = detect("m", columns(Traffic(korean=0.0), 300, 1), columns(Traffic(korean=0.5), 300, 2), settings)
    chars = result.feature("prompt_chars")
    assert chars is not None and chars.stattest == "wasserstein" and chars.threshold == 0.1  # Evidently's default
    hangul = result.feature("prompt_hangul_share")  # all 0 in the English reference: normed Wasserstein undefined
    assert hangul is not None and hangul.stattest == "ks" and "constant reference" in hangul.detail and hangul.drifted


def test_constant_and_sparse_columns_are_skipped() -> None:
    ref, cur = columns(Traffic(korean=0.0), 300, 1), columns(Traffic(korean=0.0), 300, 2)
    cur["reference:bleu"] = np.full(300, np.nan)
    cur["reference:bleu"][:50] = 0.5
    ref["reference:bleu"] = np.linspace(0, 1, 300)
    result = detect("m", ref, cur, SETTINGS)
    skipped = {f.feature: f.skipped for f in result.features if f.skipped}
    assert skipped["prompt_hangul_share"] == "constant" and skipped["rules:empty_answer"] == "constant"
    assert skipped["reference:bleu"] == "few_samples"
    assert result.feature("rag:faithfulness") is None  # never collected: not a feature of this model
    assert not result.drift


def test_small_windows_skip_the_run() -> None:
    result = detect("m", columns(Traffic(), 300, 1), columns(Traffic(), 50, 2), SETTINGS)
    assert result.outcome == "skipped" and "50 current" in result.reason and not result.features


def test_chi2_contingency_keeps_its_level_where_evidently_chisquare_does_not() -> None:
    get, column_type = evidently_stattests()
    ours, theirs = get("chi2_contingency", column_type.Categorical), get("chisquare", column_type.Categorical)
    rng = np.random.default_rng(0)
    values, p = np.array(["stop", "length", "tool_calls"]), [0.7, 0.2, 0.1]
    rejections = {"ours": 0, "theirs": 0}
    for _ in range(300):
        a, b = pd.Series(rng.choice(values, 300, p=p)), pd.Series(rng.choice(values, 300, p=p))
        rejections["ours"] += ours(a, b, column_type.Categorical, 0.05).drifted
        rejections["theirs"] += theirs(a, b, column_type.Categorical, 0.05).drifted
    assert rejections["ours"] / 300 <= 0.08  # the nominal 5%
    assert rejections["theirs"] / 300 >= 0.12  # the reference taken as exact: about 4x too many false alarms


def test_result_round_trips_through_json() -> None:
    info = ReferenceInfo("h", 1.0, "x", 200)
    result = detect("m", columns(Traffic(), 200, 1), columns(Traffic(), 200, 2), SETTINGS, info)
    again = DriftResult.from_dict(result.to_dict())
    assert again == result and again.reference == info
