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


class PartialJudgeError(JudgeError):
    """Some of a judge's criteria were scored and others failed (the RAG judge's steps are independent): ``results``
    holds the scores, ``failures`` each failed criterion with its error. ``reason`` is the first failure's, and
    ``transient`` is set when any failure was the judge model being unavailable (the judge is then run again later,
    and its scores are kept only if that was the last attempt)."""

    def __init__(self, results: list[JudgeResult], failures: list[tuple[str, JudgeError]]) -> None:
        first = failures[0][1]
        super().__init__(
            first.reason,
            "; ".join(f"{criterion}: {error}" for criterion, error in failures),
            transient=any(error.transient for _, error in failures),
        )
        self.results = results
        self.failures = failures


class Embedder(Protocol):
    """A text embedding model (the RAG judge's answer relevancy): ``name`` says which, for the results' details."""

    name: str
    #: Whether the model is known to embed only English well (the bundled all-MiniLM-L6-v2); the RAG judge then does
    #: not score text in other scripts with it.
    english_only: bool

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text. Raises JudgeError("llm_error") on failure, marked ``transient`` when the model was
        only unavailable."""
        ...


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
