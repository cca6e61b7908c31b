"""Judges checked against people: agreement, Cohen's kappa, position bias and Spearman's rank correlation.

Pure functions over tallies (no Redis here). A *comparison* is one (judge verdict, reviewer vote) on the same item,
so an item with three reviewers gives three comparisons, as in MT-Bench (Zheng et al., 2023, section 4.2: the
probability that a randomly chosen judge verdict and human vote on a randomly chosen item agree).

- **Agreement with ties**: comparisons whose outcomes are equal (a, b, or tie) / all comparisons. A reviewer's
  "both bad" is a tie here (Chatbot Arena counts it as one).
- **Agreement without ties**: the same over the comparisons where neither side said tie (MT-Bench's second setup).
  MT-Bench found GPT-4 vs experts 66% with ties and 85% without; expert vs expert 63% and 81%.
- **Cohen's kappa** (with ties, three classes): (p_o - p_e) / (1 - p_e), p_e the agreement expected by chance from
  each side's own shares of a, b and tie. 0 = no better than chance, 1 = perfect; undefined (None) when p_e = 1.
- **Position bias**: share of the judged pairs whose two orders, (a, b) and (b, a), did not give the same verdict.
- **Spearman's rho** (single answers): Pearson's correlation of the ranks (ties get their average rank) of the
  judge's 1-10 ratings and the reviewers' grades.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

OUTCOMES = ("a", "b", "tie")


def as_outcome(vote: str) -> str:
    """A vote as compared: ``bothbad`` is a tie."""
    return "tie" if vote == "bothbad" else vote


@dataclass(frozen=True, slots=True)
class PairAgreement:
    """Judge-human (or human-human) agreement on pairs."""

    comparisons: int
    with_ties: float | None
    without_ties: float | None
    comparisons_without_ties: int
    kappa: float | None


def pair_agreement(table: Mapping[tuple[str, str], float]) -> PairAgreement:
    """Agreement from a contingency table ``(outcome of one side, outcome of the other) -> comparisons``."""
    cells = {(as_outcome(x), as_outcome(y)): 0.0 for x in OUTCOMES for y in OUTCOMES}
    for (x, y), count in table.items():
        key = (as_outcome(x), as_outcome(y))
        if key in cells:
            cells[key] += count
    total = sum(cells.values())
    decisive = sum(cells[(x, y)] for x in ("a", "b") for y in ("a", "b"))
    same = sum(cells[(x, x)] for x in OUTCOMES)
    return PairAgreement(
        comparisons=int(total),
        with_ties=same / total if total else None,
        without_ties=(cells[("a", "a")] + cells[("b", "b")]) / decisive if decisive else None,
        comparisons_without_ties=int(decisive),
        kappa=cohen_kappa(cells),
    )


def cohen_kappa(table: Mapping[tuple[str, str], float]) -> float | None:
    """Cohen's kappa of a contingency table ``(rater 1's class, rater 2's class) -> count``; None when undefined."""
    total = sum(table.values())
    if not total:
        return None
    classes = sorted({x for x, _ in table} | {y for _, y in table})
    observed = sum(table.get((c, c), 0.0) for c in classes) / total
    rows = {c: sum(v for (x, _), v in table.items() if x == c) / total for c in classes}
    cols = {c: sum(v for (_, y), v in table.items() if y == c) / total for c in classes}
    expected = sum(rows[c] * cols[c] for c in classes)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def position_bias(consistent: float, inconsistent: float) -> float | None:
    """Share of judged pairs whose verdict changed when the two answers were swapped."""
    total = consistent + inconsistent
    return inconsistent / total if total else None


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(pairs: Iterable[tuple[float, float]]) -> float | None:
    """Spearman's rho of ``(judge rating, human grade)`` pairs; None with fewer than 3 or a constant side."""
    kept = list(pairs)
    if len(kept) < 3:
        return None
    xs, ys = [x for x, _ in kept], [y for _, y in kept]
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)
