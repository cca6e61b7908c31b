"""Per-model policies of the configuration (part of :mod:`llmops.config`'s schema): personal-data masking
(``models[].pii``) and quality SLOs (``models[].slos``). Kernel: imports nothing of the product."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PiiType = Literal["email", "phone", "rrn", "card", "secret"]
ALL_PII_TYPES: list[PiiType] = ["email", "phone", "rrn", "card", "secret"]

#: Upper bounds of ``llm_judge_score``'s buckets a quality SLO may use as its threshold (the bucket ``le`` is exact).
SCORE_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PiiConfig(_Strict):
    """Masking of personal data in what leaves the request path: traffic samples and traced content."""

    mask: bool = Field(
        default=True,
        description="mask personal data in this model's traffic samples and captured span content (llmops/pii.py)",
    )
    types: list[PiiType] = Field(default=ALL_PII_TYPES, description="which kinds of personal data are masked")


class QualitySlo(_Strict):
    """One quality objective of a model (docs/observability.md, "Quality SLOs"): either a judge criterion's scores
    (good: a score above ``good_above``) or the drift share (good: a minute with ``llm_drift_share`` at most
    ``max_drift_share``). ``objective`` is the good share over 30 days."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,47}$", description="the `slo` label of the SLO's series")
    objective: float = Field(gt=0.5, lt=1, description="share of good events over 30 days, e.g. 0.99")
    judge: str | None = Field(default=None, pattern=r"^[a-z_]+$", description="judge of a score SLO, e.g. rules")
    criterion: str | None = Field(default=None, pattern=r"^[a-z0-9_]+$", description="criterion, e.g. refusal")
    good_above: float | None = Field(
        default=None, description="a score above this is good (one of 0.1, 0.2, ..., 0.9: a bucket bound)"
    )
    max_drift_share: float | None = Field(
        default=None, ge=0, lt=1, description="drift SLO: a minute is good while llm_drift_share is at most this"
    )
    min_events: int = Field(
        default=20, ge=1, description="score SLOs: judged samples needed in the alert's long window before it fires"
    )

    @property
    def kind(self) -> Literal["score", "drift"]:
        return "drift" if self.max_drift_share is not None else "score"

    @model_validator(mode="after")
    def _one_kind(self) -> QualitySlo:
        score = (self.judge, self.criterion, self.good_above)
        if self.max_drift_share is not None:
            if any(v is not None for v in score):
                raise ValueError(f"slo {self.name!r}: give judge/criterion/good_above or max_drift_share, not both")
            return self
        if any(v is None for v in score):
            raise ValueError(
                f"slo {self.name!r}: a score SLO needs judge, criterion and good_above (or give max_drift_share)"
            )
        if self.good_above not in SCORE_THRESHOLDS:
            raise ValueError(
                f"slo {self.name!r}: good_above must be a bucket bound of llm_judge_score "
                f"({', '.join(map(str, SCORE_THRESHOLDS))}), got {self.good_above}"
            )
        return self


def check_slo_names(slos: list[QualitySlo]) -> None:
    names = [s.name for s in slos]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"slo names must be unique within a model; repeated: {', '.join(dupes)}")
