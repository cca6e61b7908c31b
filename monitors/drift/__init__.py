"""Drift detection over sampled traffic (docs/drift.md): the feature catalogue and the stat tests allowed per feature.

This module is plain data, light to import (no numpy, no Evidently): the configuration validates against it. The
parts: :mod:`.features` (one row of features per sample), :mod:`.windows` (current and reference windows in Redis),
:mod:`.detector` (Evidently stat tests and the decision), :mod:`.reports` (Evidently HTML reports),
:mod:`.monitor` (what the worker calls) and :mod:`.pin` (``llmops drift pin``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Prefix of every Redis key of drift detection (``llmops:drift:<model>:...``, see ``windows``).
PREFIX = "llmops:drift:"

Kind = Literal["numerical", "categorical"]
Group = Literal["input", "output", "performance", "quality"]

#: Groups of features, so that "inputs changed" and "answers got worse" are told apart.
GROUPS: tuple[Group, ...] = ("input", "output", "performance", "quality")

#: Bounded values of ``finish_reason`` (anything else is ``other``; none given is ``none``).
FINISH_REASONS: tuple[str, ...] = ("stop", "length", "tool_calls", "content_filter", "other", "none")
#: Values of ``prompt_script`` / ``response_script``: the script most of a text's letters are in (Hangul wins a tie,
#: then Latin); a text without letters has none.
SCRIPTS: tuple[str, ...] = ("hangul", "latin", "other")


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One drift feature: its name (a bounded label value), Evidently column type, group and pinned stat test."""

    name: str
    kind: Kind
    group: Group
    stattest: str
    description: str


def _num(name: str, group: Group, description: str) -> FeatureSpec:
    return FeatureSpec(name, "numerical", group, "ks", description)


def _binary(name: str, group: Group, description: str) -> FeatureSpec:
    return FeatureSpec(name, "categorical", group, "z", description)


def _script(side: str, group: Group) -> FeatureSpec:
    """The dominant script of the prompt or the answer: a proportion per script, compared with the chi-square test of
    homogeneity (on two scripts it is the two-proportion z-test). K-S on the per-text shares, which pile up at 0 and
    1, has a third of the power."""
    text = "prompt" if side == "prompt" else "answer"
    return FeatureSpec(
        f"{side}_script", "categorical", group, "chi2_contingency", f"script of most of the {text}'s letters"
    )


def _score(name: str, description: str) -> FeatureSpec:
    """A graded judge score (0..1, heavily tied: a 1-10 rating has ten values): its mean is compared (Evidently's
    ``t_test``); K-S loses most of its power on ties."""
    return FeatureSpec(name, "numerical", "quality", "t_test", description)


#: Features computed from every sample (``features.extract``).
SAMPLE_FEATURES: tuple[FeatureSpec, ...] = (
    _num("prompt_chars", "input", "characters of the prompt (all messages' text)"),
    _num("prompt_tokens", "input", "input tokens (usage.input)"),
    _num("prompt_non_letter_share", "input", "share of the prompt's non-space characters that are not letters"),
    _script("prompt", "input"),
    _num("response_chars", "output", "characters of the answer"),
    _num("response_tokens", "output", "output tokens (usage.output)"),
    _num("response_non_letter_share", "output", "share of the answer's non-space characters that are not letters"),
    _script("response", "output"),
    FeatureSpec("finish_reason", "categorical", "output", "chi2_contingency", "stop, length, tool_calls, ..."),
    _binary("refusal", "output", "1 when the answer opens with a refusal phrase (English or Korean)"),
    _num("latency_seconds", "performance", "total request latency"),
    _num("ttft_seconds", "performance", "time to first token (streamed requests)"),
    _num("cost_usd", "performance", "cost of the request"),
)

#: Judge scores (the worker's ``{"judge:criterion": score}``) used as features: a fixed list, so label values stay
#: bounded. Pass/fail rules are binary (z-test); graded scores are numerical (t-test). The rules judge's ``refusal``
#: is not one: it is the ``refusal`` flag above, computed on every sample (see ``RETIRED``).
JUDGE_FEATURES: tuple[FeatureSpec, ...] = (
    _binary("rules:empty_answer", "quality", "rules judge: 1 = the answer is not empty"),
    _binary("rules:truncated", "quality", "rules judge: 1 = not cut off at the token limit"),
    _binary("rules:invalid_json", "quality", "rules judge (JSON mode): 1 = valid JSON"),
    _score("reference:chrf", "sentence chrF against the reference answer (no tokenizer: comparable across languages)"),
    _score("reference:rouge_l", "ROUGE-L against the reference answer"),
    _score("llm_single:overall", "LLM judge rating, 0..1"),
    _score("rag:faithfulness", "RAG faithfulness"),
    _score("rag:answer_relevancy", "RAG answer relevancy"),
    _score("rag:context_precision", "RAG context precision (with a reference)"),
    _score("rag:context_utilization", "RAG context utilisation (context precision without a reference)"),
    _score("rag:context_recall", "RAG context recall"),
    _score("perplexity:perplexity", "1 / perplexity of the answer"),
    _binary("feedback:rating", "quality", "user feedback, 1 = thumbs up (the gateway's feedback stream)"),
)

FEATURES: dict[str, FeatureSpec] = {f.name: f for f in (*SAMPLE_FEATURES, *JUDGE_FEATURES)}
#: Features whose values are labels (strings); every other feature holds numbers (binary ones 0/1).
LABEL_FEATURES: frozenset[str] = frozenset({"finish_reason", "prompt_script", "response_script"})

#: Features of earlier versions, no longer tested: name -> what replaced it. A feature file may still hold them (the
#: script shares are turned into the dominant script, the rest is dropped); a stat test or threshold naming one is
#: refused at start with this message.
RETIRED: dict[str, str] = {
    **{
        f"{side}_{script}_share": f"replaced by {side}_script (the dominant script, chi-square test; docs/drift.md)"
        for side in ("prompt", "response")
        for script in ("hangul", "latin", "other")
    },
    "rules:refusal": "a duplicate of the refusal feature (the same phrases), which is tested instead",
    "reference:bleu": "replaced by reference:chrf (BLEU is exported per tokenizer, bleu_13a, bleu_char, ..., whose "
    "scales differ; chrF needs no tokenizer)",
}
JUDGE_FEATURE_NAMES: frozenset[str] = frozenset(f.name for f in JUDGE_FEATURES)

#: Stat tests a feature may be pinned to: name -> (what the score is, column types it applies to). P-value tests
#: (score low = drift) take part in the multiple-testing correction; distances (score high = drift) use a threshold.
#: ``chi2_contingency`` is ours (a two-sample test of homogeneity, registered with Evidently in ``detector``);
#: Evidently's ``chisquare`` treats the reference as exact and raises false alarms with a small reference. Evidently's
#: ``mannw`` (0.7.23) is one-sided: it flags only a current window whose values are larger than the reference's, never
#: a drop; ``t_test`` (Student's, two-sided) is the one for "the mean moved either way".
STATTESTS: dict[str, tuple[Literal["p_value", "distance"], tuple[Kind, ...]]] = {
    "ks": ("p_value", ("numerical",)),
    "anderson": ("p_value", ("numerical",)),
    "cramer_von_mises": ("p_value", ("numerical",)),
    "mannw": ("p_value", ("numerical",)),
    "t_test": ("p_value", ("numerical",)),
    "chi2_contingency": ("p_value", ("categorical",)),
    "chisquare": ("p_value", ("categorical",)),
    "z": ("p_value", ("categorical",)),
    "fisher_exact": ("p_value", ("categorical",)),
    "wasserstein": ("distance", ("numerical",)),
    "ed": ("distance", ("numerical",)),
    "psi": ("distance", ("numerical", "categorical")),
    "jensenshannon": ("distance", ("numerical", "categorical")),
    "hellinger": ("distance", ("numerical", "categorical")),
    "kl_div": ("distance", ("numerical", "categorical")),
}

#: Tests whose score is normed by the reference's spread: undefined on a constant reference column.
NORMED_BY_REFERENCE = frozenset({"wasserstein"})


def check_stattest(feature: str, stattest: str) -> str | None:
    """Why ``stattest`` cannot be pinned to ``feature`` (None when it can)."""
    spec = FEATURES.get(feature)
    if spec is None and feature in RETIRED:
        return f"feature {feature!r} is no longer tested: {RETIRED[feature]}"
    if spec is None:
        return f"unknown feature {feature!r} (known: {', '.join(FEATURES)})"
    allowed = STATTESTS.get(stattest)
    if allowed is None:
        return f"unknown stat test {stattest!r} (known: {', '.join(STATTESTS)})"
    if spec.kind not in allowed[1]:
        return f"stat test {stattest!r} does not apply to the {spec.kind} feature {feature!r}"
    return None
