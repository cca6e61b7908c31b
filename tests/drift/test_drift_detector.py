"""The drift decision: pinned stat tests, Holm's correction, the drifted share, constant and sparse columns."""

from __future__ import annotations

import math

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
    assert used["prompt_script"] == used["response_script"] == "chi2_contingency"
    assert used["llm_single:overall"] == "t_test" and used["rules:truncated"] == "z" and "rules:refusal" not in used
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
    settings = SETTINGS.model_copy(update={"stattests": {"prompt_chars": "wasserstein", "ttft_seconds": "wasserstein"}})
    reference, current = columns(Traffic(), 300, 1), columns(Traffic(prompt_words=100), 300, 2)
    reference["ttft_seconds"] = np.full(300, 0.2)  # constant reference: normed Wasserstein undefined
    result = detect("m", reference, current, settings)
    chars = result.feature("prompt_chars")
    assert chars is not None and chars.stattest == "wasserstein" and chars.threshold == 0.1  # Evidently's default
    ttft = result.feature("ttft_seconds")
    assert ttft is not None and ttft.stattest == "ks" and "constant reference" in ttft.detail and ttft.drifted


def test_constant_and_sparse_columns_are_skipped() -> None:
    ref, cur = columns(Traffic(korean=0.0), 300, 1), columns(Traffic(korean=0.0), 300, 2)
    cur["reference:chrf"] = np.full(300, np.nan)
    cur["reference:chrf"][:50] = 0.5
    ref["reference:chrf"] = np.linspace(0, 1, 300)
    result = detect("m", ref, cur, SETTINGS)
    skipped = {f.feature: f.skipped for f in result.features if f.skipped}
    assert skipped["prompt_script"] == "constant" and skipped["rules:empty_answer"] == "constant"
    assert skipped["reference:chrf"] == "few_samples"
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


def ratings(counts: dict[int, int]) -> np.ndarray:
    """1-10 judge ratings stored as the judges store them, 0..1."""
    return np.array([(rating - 1) / 9 for rating, n in counts.items() for _ in range(n)])


def test_graded_scores_take_the_t_test_which_keeps_its_power_on_ties() -> None:
    """100 ratings per window, most of them tied: 25/50/25 of 6/7/8 against 45/40/15 (mean 7.0 -> 6.7). Student's
    t by hand: sums of squares 50 and 51.0, pooled variance 101/198, t = 0.3 / sqrt(101/198 * 2/100) = 2.970 on 198
    degrees of freedom: p = 0.0034. K-S sees a largest CDF gap of 0.20 (at 6): p about 0.04, ten times weaker."""
    from scipy.stats import t as student

    reference = {"llm_single:overall": ratings({6: 25, 7: 50, 8: 25}), "prompt_chars": np.arange(100.0)}
    current = {"llm_single:overall": ratings({6: 45, 7: 40, 8: 15}), "prompt_chars": np.arange(100.0)}
    t = 0.3 / math.sqrt(101 / 198 * 2 / 100)
    assert t == pytest.approx(2.970, abs=1e-3)
    result = detect("m", reference, current, SETTINGS)
    score = result.feature("llm_single:overall")
    assert score is not None and score.stattest == "t_test"
    assert score.score == pytest.approx(2 * student.sf(t, 198), rel=1e-9) and score.score < 0.004
    old = detect("m", reference, current, SETTINGS.model_copy(update={"stattests": {"llm_single:overall": "ks"}}))
    ks = old.feature("llm_single:overall")
    assert ks is not None and ks.stattest == "ks" and ks.score > 10 * score.score


def test_the_dominant_script_is_a_proportion_test() -> None:
    """Korean 20% -> 30% of 500 requests: on two scripts the chi-square test of homogeneity is the pooled two-proportion
    z-test. By hand: pooled share 0.25, z = 0.1 / sqrt(0.25 * 0.75 * 2 / 500) = 3.6515, p = erfc(z / sqrt 2)."""
    reference = {"prompt_script": np.array(["hangul"] * 100 + ["latin"] * 400, dtype=object)}
    current = {"prompt_script": np.array(["hangul"] * 150 + ["latin"] * 350, dtype=object)}
    z = 0.1 / math.sqrt(0.25 * 0.75 * 2 / 500)
    result = detect(
        "m", {**reference, "prompt_chars": np.ones(500)}, {**current, "prompt_chars": np.ones(500)}, SETTINGS
    )
    script = result.feature("prompt_script")
    assert script is not None and script.stattest == "chi2_contingency" and script.drifted
    assert script.score == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-9)
    get, column_type = evidently_stattests()  # Evidently's own z-test on the 0/1 flag "Hangul-dominant" agrees
    flags = [
        pd.Series((values == "hangul").astype(float))
        for values in (reference["prompt_script"], current["prompt_script"])
    ]
    assert get("z", column_type.Categorical)(*flags, column_type.Categorical, 0.05).drift_score == pytest.approx(
        script.score, rel=1e-9
    )


def test_evidentlys_mann_whitney_is_one_sided_so_it_is_not_used_for_drops() -> None:
    """Evidently 0.7.23's ``mannw`` tests only "current larger than reference": a clear quality drop gets p near 1.
    That is why graded scores are pinned to the (two-sided) t-test."""
    get, column_type = evidently_stattests()
    high, low = pd.Series(ratings({7: 50, 8: 50})), pd.Series(ratings({4: 50, 5: 50}))
    mannw = get("mannw", column_type.Numerical)
    assert mannw(high, low, column_type.Numerical, 0.05).drift_score > 0.99  # the drop: missed
    assert mannw(low, high, column_type.Numerical, 0.05).drift_score < 1e-10  # the rise: caught
    t_test = get("t_test", column_type.Numerical)
    assert t_test(high, low, column_type.Numerical, 0.05).drift_score < 1e-10
