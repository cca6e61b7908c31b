"""Perplexity of the answer under the serving model, from the per-token logprobs in the response.

perplexity = exp(-mean(logprob)); exported as criterion ``perplexity`` with score = 1 / perplexity (in 0..1, 1 = the
model was certain of every token; it is the geometric mean of the token probabilities). The raw perplexity is in
``details`` and in the explanation.
"""

from __future__ import annotations

import math
from typing import Any

from llmops.sample import Sample
from monitors.judges.base import JudgeError, JudgeLLM, JudgeResult


def token_logprobs(sample: Sample) -> list[float] | None:
    """The response's per-token logprobs (floats, or OpenAI-style ``{"logprob": x}`` entries), or None if absent."""
    raw: Any = sample.response.get("logprobs")
    if isinstance(raw, dict):  # OpenAI's {"content": [{"token", "logprob", ...}]}
        raw = raw.get("content")
    if not isinstance(raw, list) or not raw:
        return None
    values: list[float] = []
    for item in raw:
        value = item.get("logprob") if isinstance(item, dict) else item
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise JudgeError("invalid_input", f"logprob {value!r} is not a number")
        values.append(float(value))
    return values


def perplexity(logprobs: list[float]) -> float:
    """exp(-mean logprob) of natural-log token probabilities (>= 1 for valid logprobs; capped at e**700)."""
    if not logprobs:
        raise ValueError("no logprobs")
    if any(not math.isfinite(x) or x > 1e-6 for x in logprobs):
        raise ValueError("logprobs must be finite and <= 0")
    return math.exp(min(-sum(logprobs) / len(logprobs), 700.0))


class PerplexityJudge:
    """Criterion ``perplexity``: score 1 / perplexity."""

    name = "perplexity"
    needs_llm = False

    def applies(self, sample: Sample) -> bool:
        try:
            return token_logprobs(sample) is not None
        except JudgeError:
            return True  # present but malformed: evaluate() reports it

    async def evaluate(self, sample: Sample, llm: JudgeLLM | None = None) -> list[JudgeResult]:
        logprobs = token_logprobs(sample)
        if logprobs is None:
            raise JudgeError("invalid_input", "no logprobs in the response")
        try:
            ppl = perplexity(logprobs)
        except ValueError as exc:
            raise JudgeError("invalid_input", str(exc)) from exc
        score = min(1.0, 1.0 / ppl)
        return [
            JudgeResult(
                self.name,
                "perplexity",
                score,
                f"perplexity {ppl:.3f} over {len(logprobs)} tokens (score = 1/perplexity)",
                {"perplexity": ppl, "tokens": len(logprobs), "mean_logprob": sum(logprobs) / len(logprobs)},
            )
        ]
