"""The one interface every judge implements, and what judges return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from llmops.sample import Sample


@dataclass(frozen=True, slots=True)
class JudgeResult:
    """One score of one sample: ``score`` normalised to 0..1 (1 = best), with why."""

    judge: str  # e.g. "llm_single", "rules", "reference", "rag", "perplexity"
    criterion: str  # bounded label value, e.g. "overall", "faithfulness", "bleu", "empty_answer"
    score: float
    explanation: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PairwiseResult:
    """A pairwise verdict between the answers of two variants to the same prompt."""

    winner: Literal["a", "b", "tie"]
    explanation: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class JudgeError(Exception):
    """A judge could not produce a score; ``reason`` is a bounded label (``unparseable``, ``llm_error``, ...).

    ``transient``: the judge model was unavailable (unreachable, timed out, rate limited, a 5xx) after the client's
    own retries, so the same call may well succeed later; the worker then judges the sample again later instead of
    recording the failure at once."""

    def __init__(self, reason: str, message: str = "", *, transient: bool = False) -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.transient = transient


class JudgeLLM(Protocol):
    """The judge model, called through the gateway (marked as judge traffic)."""

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int = 512) -> str:
        """The judge model's answer text (temperature 0). Raises JudgeError("llm_error") on failure, marked
        ``transient`` when the model was only unavailable."""
        ...


class Judge(Protocol):
    """A judge of single samples."""

    name: str

    def applies(self, sample: Sample) -> bool:
        """Whether this judge has something to say about ``sample`` (e.g. a reference is present)."""
        ...

    async def evaluate(self, sample: Sample, llm: JudgeLLM | None) -> list[JudgeResult]:
        """Scores for ``sample``; raise JudgeError for a failure worth counting."""
        ...
