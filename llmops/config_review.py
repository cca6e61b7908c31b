"""The configuration of human review and shadow comparisons (``monitors.review``, ``monitors.shadow``).

Part of the kernel beside :mod:`llmops.config` (which imports it; this module imports nothing of the product), kept
apart so that neither file grows past a screenful of schema. docs/configuration.md documents every field;
docs/review.md says how they are used.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReviewerKey(_Strict):
    """A reviewer: a name (kept with every vote) and the SHA-256 of the key they sign in with."""

    name: _Name
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", repr=False, description="hex SHA-256 of the reviewer's key")


class ReviewQueue(_Strict):
    """One review queue: which sampled answers enter it, and how they are reviewed."""

    name: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="a label and a URL part"
    )
    mode: Literal["pair", "single"] = Field(
        description="pair: two answers to one conversation side by side (variants or a shadow comparison); "
        "single: one answer graded 1-10"
    )
    models: list[str] = Field(default=[], description="only these models (all when empty)")
    variants: list[str] = Field(default=[], description="only samples of these variants (all when empty)")
    when: Literal["random", "low_score", "negative_feedback"] = Field(
        default="random",
        description="random: a `rate` share; low_score: `score` at most `max_score`; negative_feedback: a thumbs "
        "down on the answer (single only)",
    )
    rate: float = Field(default=1.0, ge=0, le=1, description="share of the matching samples queued")
    score: str = Field(default="llm_single:overall", description="judge:criterion read by when=low_score")
    max_score: float = Field(default=0.5, ge=0, le=1, description="queued when the score is at most this (0..1)")

    @model_validator(mode="after")
    def _consistent(self) -> ReviewQueue:
        if self.mode == "pair" and self.when != "random":
            raise ValueError(f"queue {self.name!r}: a pair queue takes `when: random` (pairs have no single score)")
        return self


class ReviewConfig(_Strict):
    """The review page on the worker's port (``/review``): reviewers, queues, and judge-human agreement."""

    enabled: bool = False
    reviewers: list[ReviewerKey] = []
    queues: list[ReviewQueue] = []
    max_reviewers_per_item: int = Field(default=3, ge=1, le=50, description="votes an item takes before it leaves")
    max_items_per_queue: int = Field(default=5000, ge=10, description="oldest unreviewed items are dropped beyond")
    lease_seconds: float = Field(default=1800.0, ge=10, description="an item shown and not voted on is held this long")
    session_hours: float = Field(default=12.0, gt=0, description="a reviewer's sign-in lasts this long")
    secure_cookies: bool = Field(default=False, description="mark cookies Secure (serve /review over HTTPS)")
    login_failures_per_address: int = Field(
        default=10, ge=1, description="failed sign-ins a client address may make per login_failure_window_seconds"
    )
    login_failure_window_seconds: float = Field(
        default=900.0, ge=1, description="how long an address's failures count (from its first failure)"
    )
    login_failures_per_minute: int = Field(
        default=60, ge=1, description="failed sign-ins per minute from all addresses together, all workers"
    )
    trusted_proxies: list[str] = Field(
        default=[],
        description="networks (CIDR) of the proxies in front of the page: only a request from one of them has its "
        "client address taken from X-Forwarded-For",
    )
    feedback_hold_hours: float = Field(
        default=24.0, gt=0, description="samples of negative_feedback queues wait this long for a thumbs down"
    )
    agreement_floor: float = Field(
        default=0.7, ge=0, le=1, description="alert when judge-human agreement without ties falls below this"
    )
    agreement_min_items: int = Field(default=50, ge=1, description="... over at least this many items")
    agreement_window_items: int = Field(
        default=200,
        ge=10,
        le=10_000,
        description="judge-human agreement (exported, alerted on) covers each judge's latest this many items",
    )
    bootstrap_rounds: int = Field(default=200, ge=20, le=5000, description="bootstrap resamples of the ratings")

    @model_validator(mode="after")
    def _consistent(self) -> ReviewConfig:
        names = [r.name for r in self.reviewers]
        if len(set(names)) != len(names):
            raise ValueError("reviewer names must be unique")
        hashes = [r.sha256.lower() for r in self.reviewers]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two reviewers have the same key")
        queues = [q.name for q in self.queues]
        if len(set(queues)) != len(queues):
            raise ValueError("review queue names must be unique")
        for network in self.trusted_proxies:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {network!r} is not an IP address or network (CIDR)") from None
        if self.agreement_min_items > self.agreement_window_items:
            raise ValueError(
                f"agreement_min_items ({self.agreement_min_items}) exceeds agreement_window_items "
                f"({self.agreement_window_items}): the agreement alert could never fire"
            )
        if self.enabled and not self.reviewers:
            raise ValueError("review is enabled but no reviewers are configured (monitors.review.reviewers)")
        return self


class ShadowSpec(_Strict):
    """Shadow comparisons: a share of ``model``'s sampled chat requests sent again to ``target`` (or to one of its A/B
    variants) through the gateway (as ``shadow`` traffic), the two answers queued for the pairwise judge and for
    reviewers."""

    model: str = Field(min_length=1, description="the model whose sampled requests are shadowed")
    target: str = Field(min_length=1, description="the public model name that answers them again")
    variant: _Name | None = Field(
        default=None,
        description="the target's A/B variant that answers (pinned with x-llmops-variant); with target = model, "
        "one of the model's own variants",
    )
    rate: float = Field(default=0.1, ge=0, le=1, description="share of the model's sampled chat requests")
    max_per_minute: int = Field(default=10, ge=1, description="shadow requests per minute, all workers together")
    budget_usd_per_day: float | None = Field(
        default=None, ge=0, description="spend per UTC day, priced with the target's per-token pricing"
    )
    max_tokens_per_day: int | None = Field(default=None, ge=1, description="input + output tokens per UTC day")

    @model_validator(mode="after")
    def _bounded(self) -> ShadowSpec:
        if self.model == self.target and self.variant is None:
            raise ValueError(
                f"shadow of {self.model!r}: the target must be another model, or one of this model's variants "
                "(give `variant`)"
            )
        if self.budget_usd_per_day is None and self.max_tokens_per_day is None:
            raise ValueError(f"shadow of {self.model!r}: give budget_usd_per_day or max_tokens_per_day (or both)")
        return self

    @property
    def label(self) -> str:
        """The comparison's name in metrics, Redis keys and results: the target, or ``target@variant``."""
        return self.target if self.variant is None else f"{self.target}@{self.variant}"

    @property
    def contestant(self) -> str:
        """The shadow answer's name among the sampled model's contestants: the variant's name when it is one of the
        model's own variants (rated beside that variant's own answers), else the label."""
        return self.variant if self.variant is not None and self.target == self.model else self.label


def shadow_priced_model(spec: ShadowSpec, models: Mapping[str, Any]) -> str:
    """The model whose per-token pricing prices the shadow's answers: the one serving the pinned variant when it
    names another model, else the target."""
    variants = getattr(models.get(spec.target), "variants", None) or []
    served_by = next((getattr(v, "model", None) for v in variants if v.name == spec.variant), None)
    return served_by or spec.target


def check_review(review: ReviewConfig, shadow: list[ShadowSpec], models: Mapping[str, Any]) -> None:
    """Checks across sections: queues and shadows name configured models (and variants); a USD budget needs per-token
    prices."""
    for queue in review.queues:
        unknown = sorted(set(queue.models) - set(models))
        if unknown:
            raise ValueError(f"review queue {queue.name!r} names unknown models: {', '.join(unknown)}")
    labels = [(s.model, s.label) for s in shadow]
    if len(set(labels)) != len(labels):
        raise ValueError("each shadow (model, target, variant) may be configured once")
    for spec in shadow:
        for name in (spec.model, spec.target):
            if name not in models:
                raise ValueError(f"monitors.shadow: {name!r} is not a configured model name")
        if spec.variant is not None:
            names = [v.name for v in getattr(models[spec.target], "variants", None) or []]
            if spec.variant not in names:
                raise ValueError(
                    f"monitors.shadow of {spec.model!r}: model {spec.target!r} has no variant {spec.variant!r} ("
                    + (f"its variants: {', '.join(names)})" if names else "it has no variants)")
                )
        priced = shadow_priced_model(spec, models)
        pricing = getattr(models[priced], "pricing", None)
        if spec.budget_usd_per_day is not None and getattr(pricing, "input_per_mtok", None) is None:
            whose = "its" if priced == spec.target else f"the serving model {priced!r}'s"
            raise ValueError(
                f"monitors.shadow: budget_usd_per_day for target {spec.label!r} needs {whose} per-token pricing "
                "(input_per_mtok, output_per_mtok); or bound it with max_tokens_per_day"
            )


def check_shadow_key(shadow: list[ShadowSpec], keys: Sequence[Any], api_key: str | None) -> None:
    """A shadow that pins a variant is sent with the monitors' key (``judge_api_key``): where the gateway has keys,
    that key must be allowed to pin (``variant_pin: true``), else the gateway refuses every such request (403)."""
    pinned = [s.label for s in shadow if s.variant is not None]
    if not pinned or not keys or not api_key:
        return
    digest = hashlib.sha256(api_key.encode()).hexdigest()
    key = next((k for k in keys if k.sha256.lower() == digest), None)
    if key is not None and not key.variant_pin:
        raise ValueError(
            f"monitors.shadow pins variants ({', '.join(pinned)}), but the monitors' key {key.name!r} "
            "(judge_api_key) may not: give it variant_pin: true in keys"
        )
