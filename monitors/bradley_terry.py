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
from dataclasses import dataclass
from typing import Any, Literal

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


# ---- ratings with uncertainty: the fit vectorised over bootstrap resamples (Chatbot Arena's method) ----------------
@dataclass(frozen=True, slots=True)
class Standing:
    """One contestant's rating on the Elo-like scale, its 95% bootstrap interval, and the battles it was in."""

    rating: float
    lower: float
    upper: float
    battles: float


#: ``(a, b, score of a)`` -> how many battles ended so (score 1: a won, 0: b won, 0.5: a tie).
Battles = Mapping[tuple[str, str, float], float]


def rate_with_intervals(
    battles: Battles,
    *,
    feedback: Mapping[str, tuple[int, int]] | None = None,
    prior: float = 1.0,
    rounds: int = 200,
    seed: int = 0,
    base: float = 1000.0,
    scale: float = 400.0,
) -> dict[str, Standing]:
    """Bradley–Terry ratings with 95% intervals, as Chatbot Arena computes them: the maximum-likelihood fit (here
    penalised by ``prior`` virtual ties of every contestant against a fixed anchor, as :func:`bradley_terry` does, so
    a contestant that only ever won stays finite) on the Elo-like scale ``base + scale·log10`` anchored at the
    contestants' mean; the interval holds the 2.5th to 97.5th percentiles of the ratings refitted on ``rounds``
    resamples of the battles drawn with replacement (a multinomial draw over the tallied outcomes is exactly that).

    ``feedback`` maps a contestant to ``(up, down)`` thumbs, each a battle against the anchor. Deterministic for a
    given ``seed``. The fit is Newton's method on the log-likelihood, all resamples at once (numpy)."""
    if prior <= 0:
        raise ValueError("prior must be > 0 (it fixes the scale's origin and keeps one-sided records finite)")
    names: dict[str, int] = {}
    cells: list[tuple[str | None, str | None, float, float]] = []
    for (a, b, score), count in battles.items():
        if a == b:
            raise ValueError(f"contestant {a!r} compared with itself")
        if not 0.0 <= score <= 1.0 or count < 0:
            raise ValueError(f"bad battle {(a, b, score)}: {count}")
        if count:
            names.setdefault(a, len(names))
            names.setdefault(b, len(names))
            cells.append((a, b, score, count))
    for name, (up, down) in (feedback or {}).items():
        if up < 0 or down < 0:
            raise ValueError(f"negative feedback counts for {name!r}")
        for score, count in ((1.0, up), (0.0, down)):
            if count:
                names.setdefault(name, len(names))
                cells.append((name, None, score, count))
    if not names:
        return {}
    import numpy as np

    k = len(names)
    ci = np.array([names[a] for a, _, _, _ in cells], dtype=np.int64)  # type: ignore[index]
    cj = np.array([k if b is None else names[b] for _, b, _, _ in cells], dtype=np.int64)
    s = np.array([c[2] for c in cells])
    counts = np.array([c[3] for c in cells])
    total = round(float(counts.sum()))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(total, counts / counts.sum(), size=rounds) if rounds else np.empty((0, len(cells)))
    theta = _newton(ci, cj, s, np.vstack([counts, draws]), prior, k)
    ratings = base + scale / math.log(10) * (theta - theta.mean(axis=1, keepdims=True))
    lower, upper = (np.percentile(ratings[1:], q, axis=0) for q in (2.5, 97.5)) if rounds else (ratings[0],) * 2
    played = np.zeros(k)
    np.add.at(played, ci, counts)
    np.add.at(played, cj[cj < k], counts[cj < k])
    return {
        name: Standing(float(ratings[0, i]), float(lower[i]), float(upper[i]), float(played[i]))
        for name, i in names.items()
    }


def _newton(ci: Any, cj: Any, s: Any, n: Any, prior: float, k: int, iterations: int = 100) -> Any:
    """Log-strengths ``theta`` (rows: one per count vector in ``n``) maximising the Bradley–Terry log-likelihood of
    cells (``ci`` vs ``cj``, score ``s`` of ``ci``, ``n`` battles each; index ``k`` is the anchor, fixed at 0) plus
    ``prior`` virtual ties of every contestant against the anchor. Strictly concave, so Newton's steps (at most 1 in
    any coordinate) converge from 0."""
    import numpy as np

    rows = n.shape[0]
    incidence = np.zeros((len(ci), k + 1))
    incidence[np.arange(len(ci)), ci] += 1.0
    incidence[np.arange(len(ci)), cj] -= 1.0
    incidence = incidence[:, :k]  # the anchor's log-strength is fixed
    theta = np.zeros((rows, k))
    eye = np.eye(k)
    for _ in range(iterations):
        full = np.concatenate([theta, np.zeros((rows, 1))], axis=1)
        p = 1.0 / (1.0 + np.exp(-(full[:, ci] - full[:, cj])))
        grad = (n * (s - p)) @ incidence
        weight = n * p * (1.0 - p)
        hess = np.einsum("rc,ci,cj->rij", weight, incidence, incidence)
        q = 1.0 / (1.0 + np.exp(-theta))
        grad += prior * (0.5 - q)
        hess += (prior * q * (1.0 - q))[:, :, None] * eye
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        biggest = np.abs(step).max(axis=1, keepdims=True)
        step = np.where(biggest > 1.0, step / np.maximum(biggest, 1e-300), step)
        theta = theta + step
        if biggest.max() < 1e-10:
            break
    return theta
