"""Bradley–Terry ratings of variants from pairwise verdicts (and, optionally, thumbs feedback), on an Elo-like scale.

Model: P(i beats j) = p_i / (p_i + p_j). Strengths are fitted by Hunter's (2004) minorisation–maximisation updates
p_i <- W_i / sum_j n_ij / (p_i + p_j), where W_i counts wins (a tie is half a win for each side) and n_ij games.
The prior is ``prior`` virtual tied games of every variant against a fixed anchor of strength 1: it keeps unseen and
one-sided variants finite (a variant that only ever won gets a large but finite rating) and shrinks small samples
towards the middle. Thumbs feedback, when given, counts as games against the same anchor (up = win, down = loss).

Ratings are ``base + scale * log10(p_i / g)`` with g the geometric mean of the variants' strengths, so the variants
average ``base`` (1000) and a 400-point gap means odds of 10:1, as in Elo. Ratings are relative to the variants rated
together.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Literal

_ANCHOR = object()


def outcome(variant_a: str, variant_b: str, winner: Literal["a", "b", "tie"]) -> tuple[str, str, float]:
    """A pairwise verdict (``PairwiseResult.winner``) as an outcome ``(a, b, score of a)``."""
    return variant_a, variant_b, {"a": 1.0, "b": 0.0, "tie": 0.5}[winner]


def bradley_terry(
    outcomes: Iterable[tuple[str, str, float]],
    iterations: int = 1000,
    prior: float = 1.0,
    *,
    feedback: Mapping[str, tuple[int, int]] | None = None,
    base: float = 1000.0,
    scale: float = 400.0,
    tolerance: float = 1e-10,
) -> dict[str, float]:
    """Ratings of the variants in ``outcomes`` (``(a, b, s)`` with s = 1 a won, 0 b won, 0.5 tie, or a share).

    ``feedback`` maps a variant to ``(thumbs_up, thumbs_down)``. ``prior`` >= 0 virtual ties against the anchor; with
    ``prior=0`` the fit is the plain maximum-likelihood one (a variant without wins then sits at a floor of 1e-12
    strength). Stops after ``iterations`` rounds or when no strength changes by more than ``tolerance`` (relative).
    """
    if prior < 0:
        raise ValueError("prior must be >= 0")
    wins: dict[object, float] = defaultdict(float)
    games: dict[object, dict[object, float]] = defaultdict(lambda: defaultdict(float))
    variants: dict[str, None] = {}  # insertion-ordered set

    def add(a: object, b: object, score_a: float, count: float = 1.0) -> None:
        wins[a] += score_a * count
        wins[b] += (1.0 - score_a) * count
        games[a][b] += count
        games[b][a] += count

    for a, b, score in outcomes:
        if a == b:
            raise ValueError(f"variant {a!r} compared with itself")
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"score {score} of {a!r} vs {b!r} outside 0..1")
        variants.setdefault(a)
        variants.setdefault(b)
        add(a, b, score)
    for variant, (up, down) in (feedback or {}).items():
        if up < 0 or down < 0:
            raise ValueError(f"negative feedback counts for {variant!r}")
        variants.setdefault(variant)
        if up:
            add(variant, _ANCHOR, 1.0, up)
        if down:
            add(variant, _ANCHOR, 0.0, down)
    if prior > 0:
        for variant in variants:
            add(variant, _ANCHOR, 0.5, prior)
    if not variants:
        return {}

    strength: dict[object, float] = {v: 1.0 for v in variants}
    strength[_ANCHOR] = 1.0
    for _ in range(iterations):
        change = 0.0
        updated: dict[object, float] = {}
        for v in variants:
            denominator = sum(n / (strength[v] + strength[o]) for o, n in games[v].items())
            new = max(wins[v] / denominator, 1e-12) if denominator else strength[v]
            change = max(change, abs(new - strength[v]) / strength[v])
            updated[v] = new
        strength.update(updated)
        if _ANCHOR not in games:  # no anchor: only ratios matter; keep the numbers tame
            g = math.exp(sum(math.log(strength[v]) for v in variants) / len(variants))
            for v in variants:
                strength[v] /= g
        if change < tolerance:
            break
    log_g = sum(math.log10(strength[v]) for v in variants) / len(variants)
    return {v: base + scale * (math.log10(strength[v]) - log_g) for v in variants}
