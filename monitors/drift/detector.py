"""Drift detection with Evidently's stat tests: one pinned test per feature, Holm's correction, the drifted share.

The decision (docs/drift.md):

- each feature has a pinned stat test (``monitors.drift.FEATURES``, overridable per feature in ``drift.stattests``):
  K-S for numbers, a t-test for graded judge scores (tied values), a two-sample z-test for 0/1 flags, a chi-square
  test of homogeneity for the finish reason and the dominant script. Pinned,
  because Evidently's automatic choice changes with the reference size (p-values up to 1,000 rows, distances above),
  which would flip what the score means;
- the p-value tests are corrected together with Holm's step-down procedure, so one run raises a false alarm on a stable
  stream with probability at most ``significance`` however many features are tested; a feature pinned to a distance
  (Wasserstein, Jensen-Shannon, PSI, ...) is drifted when its distance reaches its threshold;
- the model drifted when at least one feature drifted and the drifted share reaches ``drift_share_threshold``
  (default 0: any feature after the correction);
- features are grouped (input, output, performance, quality), so "inputs changed" and "answers got worse" read apart.

Features that cannot be tested are counted skips, never errors: too few values (``few_samples``), one value in both
windows (``constant``), or the stat test failing (``error``). Evidently is imported on first use: this module's
results are cheap to import.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import numpy as np

from llmops.config import DriftConfig
from monitors.drift import FEATURES, GROUPS, NORMED_BY_REFERENCE, STATTESTS, FeatureSpec
from monitors.drift.windows import ReferenceInfo

Columns = dict[str, np.ndarray]

# scipy tries K-S's exact distribution first on windows below 10,000 rows, then says it fell back to the asymptotic one.
warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful", category=RuntimeWarning)


@dataclass(slots=True)
class FeatureResult:
    """One feature's test in one run."""

    feature: str
    group: str
    stattest: str | None = None
    score: float | None = None  # p-value (low = drift) or distance (high = drift), per ``STATTESTS``
    threshold: float | None = None  # Holm's critical value for this feature's rank, or the distance threshold
    drifted: bool = False
    skipped: str | None = None  # few_samples | constant | error
    n_reference: int = 0
    n_current: int = 0
    detail: str = ""


@dataclass(slots=True)
class DriftResult:
    """One drift run of one model."""

    model: str
    outcome: str  # ok | skipped | error
    reason: str = ""
    started_at: float = field(default_factory=time.time)
    duration_seconds: float = 0.0
    reference: ReferenceInfo | None = None
    n_reference: int = 0
    n_current: int = 0
    features: list[FeatureResult] = field(default_factory=list)
    drift: bool = False
    drift_share: float = 0.0
    groups: dict[str, bool] = field(default_factory=dict)
    significance: float = 0.05
    drift_share_threshold: float = 0.0

    @property
    def tested(self) -> list[FeatureResult]:
        return [f for f in self.features if f.skipped is None]

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def feature(self, name: str) -> FeatureResult | None:
        return next((f for f in self.features if f.feature == name), None)

    def summary(self) -> str:
        """One line for logs and the report."""
        if self.outcome != "ok":
            return f"{self.outcome}: {self.reason}"
        if not self.drift:
            return f"no drift ({len(self.drifted_features)} of {len(self.tested)} features drifted)"
        parts = []
        for group in GROUPS:
            names = [f.feature for f in self.features if f.drifted and f.group == group]
            if names:
                parts.append(f"{group}: {', '.join(names)}")
        return f"drift in {self.drift_share:.0%} of {len(self.tested)} features ({'; '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reference"] = self.reference.to_dict() if self.reference else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftResult:
        values = dict(data)
        values["reference"] = ReferenceInfo.from_dict(data["reference"]) if data.get("reference") else None
        values["features"] = [FeatureResult(**f) for f in data.get("features", [])]
        return cls(**values)


# ---- Evidently ------------------------------------------------------------------------------------------------------
def _chi2_contingency(reference: Any, current: Any, feature_type: Any, threshold: float) -> tuple[float, bool]:
    """Chi-square test of homogeneity of two samples (2 x k table). Categories expected fewer than 5 times in a
    window are pooled, so rare values do not inflate the statistic. Evidently's ``chisquare`` instead takes the
    reference as the exact distribution, which doubles the statistic's variance for equal windows."""
    from scipy.stats import chi2_contingency

    ref_counts = reference.value_counts()
    cur_counts = current.value_counts()
    categories = sorted(set(ref_counts.index) | set(cur_counts.index), key=str)
    table = np.array([[ref_counts.get(c, 0) for c in categories], [cur_counts.get(c, 0) for c in categories]], float)
    expected_min = table.sum(axis=0) * table.sum(axis=1).min() / table.sum()
    rare = expected_min < 5
    if rare.any():
        table = np.column_stack([table[:, ~rare], table[:, rare].sum(axis=1)])
        table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0, False
    p_value = float(chi2_contingency(table, correction=False)[1])
    return p_value, p_value < threshold


@cache
def evidently_stattests() -> Any:
    """Evidently's stat-test registry, with ``chi2_contingency`` registered (imported on first use: 3-5 s)."""
    from evidently.legacy.calculations.stattests.registry import StatTest, get_registered_stattest, register_stattest
    from evidently.legacy.core import ColumnType

    register_stattest(
        StatTest(
            name="chi2_contingency",
            display_name="chi-square test of homogeneity p_value",
            allowed_feature_types=[ColumnType.Categorical],
            default_threshold=0.05,
        ),
        _chi2_contingency,
    )
    return get_registered_stattest, ColumnType


def _rows(columns: Columns) -> int:
    """Samples in a window: every row has ``prompt_chars`` (feedback, from another source, may be longer)."""
    if "prompt_chars" in columns:
        return len(columns["prompt_chars"])
    return max((len(v) for v in columns.values()), default=0)


def _present(values: np.ndarray | None) -> np.ndarray:
    if values is None or len(values) == 0:
        return np.empty(0)
    if values.dtype == object:
        return np.array([v for v in values if v is not None], dtype=object)
    return values[~np.isnan(values)]


def _constant(values: np.ndarray) -> bool:
    if values.dtype == object:
        return len(set(values.tolist())) <= 1
    return bool(values.min() == values.max())


def _holm(p_values: list[tuple[FeatureResult, float]], alpha: float) -> None:
    """Holm's step-down procedure: flag features while p <= alpha / (m - rank); the first that fails stops it."""
    m = len(p_values)
    rejecting = True
    for rank, (result, p) in enumerate(sorted(p_values, key=lambda item: item[1])):
        result.threshold = alpha / (m - rank)
        rejecting = rejecting and p <= result.threshold
        result.drifted = rejecting


def compare_feature(
    name: str, reference: np.ndarray, current: np.ndarray, settings: DriftConfig, spec: FeatureSpec | None = None
) -> FeatureResult:
    """Run one feature's pinned stat test (``drifted`` is set later, for the p-value tests)."""
    import pandas as pd

    spec = spec or FEATURES[name]
    result = FeatureResult(name, spec.group, n_reference=len(reference), n_current=len(current))
    if len(reference) < settings.min_samples or len(current) < settings.min_samples:
        result.skipped = "few_samples"
        result.detail = f"{len(reference)} reference and {len(current)} current values (< {settings.min_samples})"
        return result
    if _constant(np.concatenate([reference, current])):
        result.skipped = "constant"
        value = reference[0].item() if isinstance(reference[0], np.generic) else reference[0]
        result.detail = f"one value in both windows: {value!r}"
        return result
    stattest = settings.stattests.get(name, spec.stattest)
    if stattest in NORMED_BY_REFERENCE and _constant(reference):
        stattest = spec.stattest  # normed by the reference's spread: undefined (huge) on a constant reference
        result.detail = f"constant reference: {settings.stattests[name]} replaced by {stattest}"
    result.stattest = stattest
    kind = STATTESTS[stattest][0]
    get_registered_stattest, column_type = evidently_stattests()
    feature_type = column_type.Numerical if spec.kind == "numerical" else column_type.Categorical
    threshold = settings.thresholds.get(name) if kind == "distance" else settings.significance
    try:
        test = get_registered_stattest(stattest, feature_type)
        outcome = test(pd.Series(reference), pd.Series(current), feature_type, threshold)
        score = float(outcome.drift_score)
    except Exception as error:
        result.skipped = "error"
        result.detail = f"{stattest} failed: {type(error).__name__}: {error}"
        return result
    if not math.isfinite(score):
        result.skipped = "error"
        result.detail = f"{stattest} gave a score of {score}"
        return result
    result.score = score
    if kind == "distance":
        result.threshold = float(outcome.actual_threshold)
        result.drifted = bool(outcome.drifted)
    return result


def detect(
    model: str,
    reference: Columns,
    current: Columns,
    settings: DriftConfig,
    reference_info: ReferenceInfo | None = None,
    features: Mapping[str, FeatureSpec] | None = None,
) -> DriftResult:
    """Compare ``current`` with ``reference`` (one array per feature) and decide. ``features``: the catalogue to test
    (default ``FEATURES``; ``bench/drift_power.py`` passes an earlier one to compare)."""
    started = time.time()
    t0 = time.perf_counter()
    n_reference, n_current = _rows(reference), _rows(current)
    result = DriftResult(
        model,
        "ok",
        started_at=started,
        reference=reference_info,
        n_reference=n_reference,
        n_current=n_current,
        significance=settings.significance,
        drift_share_threshold=settings.drift_share_threshold,
    )
    if n_reference < settings.min_samples or n_current < settings.min_samples:
        result.outcome = "skipped"
        result.reason = f"{n_reference} reference and {n_current} current samples (min_samples {settings.min_samples})"
        return result
    p_values: list[tuple[FeatureResult, float]] = []
    for name, spec in (FEATURES if features is None else features).items():
        ref, cur = _present(reference.get(name)), _present(current.get(name))
        if len(ref) == 0 and len(cur) == 0:
            continue  # not collected for this model (a judge that does not run): not a feature here
        feature = compare_feature(name, ref, cur, settings, spec)
        result.features.append(feature)
        if feature.skipped is None and STATTESTS[feature.stattest or spec.stattest][0] == "p_value":
            assert feature.score is not None
            p_values.append((feature, feature.score))
    _holm(p_values, settings.significance)
    tested = result.tested
    if not tested:
        result.outcome = "skipped"
        skips = ", ".join(f"{f.feature}: {f.skipped}" for f in result.features) or "no values"
        result.reason = f"no feature could be tested ({skips})"
    drifted = len(result.drifted_features)
    result.drift_share = drifted / len(tested) if tested else 0.0
    result.drift = drifted >= 1 and result.drift_share >= settings.drift_share_threshold
    result.groups = {g: any(f.drifted for f in tested if f.group == g) for g in GROUPS}
    result.duration_seconds = time.perf_counter() - t0
    return result
