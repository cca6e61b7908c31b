"""Perplexity of the answer under the serving model, from the per-token logprobs in the response.

perplexity = exp(-mean(logprob)) over the answer's output tokens; exported as criterion ``perplexity`` with
score = 1 / perplexity (in 0..1, 1 = the model was certain of every token; it is the geometric mean of the token
probabilities). The raw perplexity is in ``details`` and in the explanation. At the edges:

* **Coverage.** The gateway keeps the numeric logprobs of a response (entries without one are not kept), so the
  number of output tokens that had a logprob is compared with the response's output token count
  (``usage.output``): ``details["tokens_with_logprobs"]``, ``["output_tokens"]``, ``["coverage"]``. Below
  :data:`MIN_COVERAGE` (95%) the sample is not scored (``JudgeError("low_coverage")``, counted): the mean of a
  subset of tokens is not the answer's perplexity. When the output count is unknown or only estimated by the gateway
  (``usage.estimated``), coverage cannot be checked: it is recorded as null and the sample is scored.
* **vLLM's -inf stand-ins.** vLLM writes ``-9999.0`` for a token whose logprob is minus infinity (a token sampled
  from a distribution the reported one gives no mass to, e.g. after logits processors). Such values are not
  probabilities: they are dropped, counted (``details["dropped_neg_inf"]``) and count as tokens without a logprob.
* **Echoed prompts.** A completions request with ``echo: true`` gets logprobs for its prompt tokens too, before the
  answer's. Only the last ``usage.output`` values are the answer's; without a trustworthy output count such a sample
  is not scored (``JudgeError("misaligned")``). Likewise, more logprobs than output tokens without ``echo``: not scored.
* **Sampling settings.** Logprobs are those of the tokens actually sampled: at a higher temperature (or top_p, top_k,
  penalties) the model picks less likely tokens and the same model's perplexity rises. Compare perplexity only across
  samples with the same sampling settings: they are recorded in ``details["sampling"]`` (temperature, top_p, top_k,
  frequency/presence/repetition penalties, as requested; absent = the server's default), and docs/judges.md says so.
"""

from __future__ import annotations

import math
from typing import Any

from llmops.sample import Sample
from monitors.judges.base import JudgeError, JudgeLLM, JudgeResult

#: Share of the output tokens that must have a usable logprob for the sample to be scored.
MIN_COVERAGE = 0.95
#: vLLM's stand-in for a logprob of minus infinity (anything at or below this is one).
NEG_INF_STANDIN = -9999.0
#: The request fields recorded as the sample's sampling settings.
SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
)


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


def output_tokens(sample: Sample) -> int | None:
    """The response's output token count when the upstream reported it (None when absent or estimated)."""
    usage = sample.usage
    count = usage.get("output")
    if usage.get("estimated") or isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        return None
    return count


def sampling_settings(sample: Sample) -> dict[str, Any]:
    """The sampling settings the request asked for (absent ones are the server's defaults)."""
    return {k: sample.request[k] for k in SAMPLING_FIELDS if isinstance(sample.request.get(k), int | float)}


def answer_logprobs(sample: Sample, values: list[float]) -> tuple[list[float], dict[str, Any]]:
    """The answer's usable logprobs and what was found about them (see the module docstring); JudgeError when the
    sample cannot be scored."""
    expected = output_tokens(sample)
    echoed = 0
    if sample.request.get("echo") or (expected is not None and len(values) > expected):
        if expected is None:
            raise JudgeError(
                "misaligned",
                "echo: the prompt's logprobs come first, and without the output token count the "
                "answer's cannot be told apart",
            )
        if not sample.request.get("echo"):
            raise JudgeError(
                "misaligned", f"{len(values)} logprobs for {expected} output tokens, and the request did not echo"
            )
        echoed = max(0, len(values) - expected)
        values = values[echoed:]
    kept = [x for x in values if not x <= NEG_INF_STANDIN + 0.5]  # NaN is kept: perplexity() rejects it
    dropped = len(values) - len(kept)
    coverage = len(kept) / expected if expected else None
    facts: dict[str, Any] = {
        "tokens_with_logprobs": len(kept),
        "output_tokens": expected,
        "coverage": coverage,
        "dropped_neg_inf": dropped,
        "echoed_prompt_logprobs": echoed,
        "sampling": sampling_settings(sample),
    }
    if coverage is not None and coverage < MIN_COVERAGE:
        raise JudgeError(
            "low_coverage",
            f"only {len(kept)} of {expected} output tokens have a usable logprob ({coverage:.0%} < "
            f"{MIN_COVERAGE:.0%}; {dropped} -inf stand-ins dropped)",
        )
    if not kept:
        raise JudgeError("low_coverage", f"no usable logprob ({dropped} -inf stand-ins dropped)")
    return kept, facts


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
        values = token_logprobs(sample)
        if values is None:
            raise JudgeError("invalid_input", "no logprobs in the response")
        logprobs, facts = answer_logprobs(sample, values)
        try:
            ppl = perplexity(logprobs)
        except ValueError as exc:
            raise JudgeError("invalid_input", str(exc)) from exc
        score = min(1.0, 1.0 / ppl)
        coverage = facts["coverage"]
        covered = f"{coverage:.0%} of output tokens" if coverage is not None else "output token count unknown"
        dropped = f", {facts['dropped_neg_inf']} -inf stand-ins dropped" if facts["dropped_neg_inf"] else ""
        return [
            JudgeResult(
                self.name,
                "perplexity",
                score,
                f"perplexity {ppl:.3f} over {len(logprobs)} tokens ({covered}{dropped}; score = 1/perplexity; "
                f"sampling {facts['sampling'] or 'server defaults'})",
                {"perplexity": ppl, "tokens": len(logprobs), "mean_logprob": sum(logprobs) / len(logprobs), **facts},
            )
        ]
