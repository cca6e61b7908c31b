"""Judges by their configuration names (``monitors.judges`` in the YAML config)."""

from __future__ import annotations

from collections.abc import Callable

from monitors.judges.base import Embedder, Judge
from monitors.judges.llm_single import SingleAnswerJudge
from monitors.judges.perplexity import PerplexityJudge
from monitors.judges.rag import RagJudge
from monitors.judges.reference import ReferenceJudge
from monitors.judges.rules import RulesJudge

#: Single-sample judges. ``pairwise`` compares two samples and is built separately (``PairwiseJudge()``).
JUDGES: dict[str, Callable[[], Judge]] = {
    "rules": RulesJudge,
    "reference": ReferenceJudge,
    "llm_single": SingleAnswerJudge,
    "rag": RagJudge,
    "perplexity": PerplexityJudge,
}
PAIRWISE = "pairwise"
KNOWN = (*JUDGES, PAIRWISE)


def build_judges(names: list[str], *, embedder: Embedder | None = None) -> dict[str, Judge]:
    """One instance per configured single-sample judge, in config order; ``pairwise`` is skipped (not a single-sample
    judge); an unknown name raises ValueError naming the known ones. ``embedder`` (``monitors.embedding_model``) goes
    to the RAG judge (answer relevancy)."""
    judges: dict[str, Judge] = {}
    for name in names:
        if name == PAIRWISE:
            continue
        if name not in JUDGES:
            raise ValueError(f"unknown judge {name!r}; known: {', '.join(KNOWN)}")
        if name not in judges:
            judges[name] = RagJudge(embedder) if name == "rag" else JUDGES[name]()
    return judges
