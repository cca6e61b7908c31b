"""MT-Bench pairwise comparison of two variants' answers to the same question, asked in both orders.

The judge model answers ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie), read by :func:`monitors.judges.verdicts.read_choice`:
the last valid token on the final verdict line; stray tokens after it do not void it, disagreeing tokens are recorded
(``details["verdict_conflict_ab"]`` / ``["verdict_conflict_ba"]``); unparseable: asked again once, then
``JudgeError("unparseable")``. Against position bias the pair is judged as (a, b) and again as (b, a); after swapping
the second verdict back, a variant wins only if both orders agree, anything else (one win and one tie, or opposite
wins) is a tie (Zheng et al., 2023). With a reference answer on either sample the reference-guided prompt is used.

When the request has earlier turns the multi-turn prompts are used (``pairwise_multi_turn_v1``,
``pairwise_ref_multi_turn_v1``, after MT-Bench's ``pair-v2-multi-turn``): the shared conversation (system message
included) is shown once, then each variant's answer to the last user message. Unlike MT-Bench, where each assistant
answered the earlier turns itself, the earlier assistant turns here are the client's history, the same for both
variants (the two samples answer the very same ``messages``).
"""

from __future__ import annotations

from typing import Literal

from llmops.sample import Sample
from monitors.judges import conversation
from monitors.judges.base import JudgeError, JudgeLLM, PairwiseResult
from monitors.judges.prompting import ask, load_prompt
from monitors.judges.verdicts import read_choice

PROMPT = "pairwise_v1"
PROMPT_REF = "pairwise_ref_v1"
PROMPT_MULTI = "pairwise_multi_turn_v1"
PROMPT_REF_MULTI = "pairwise_ref_multi_turn_v1"

Winner = Literal["a", "b", "tie"]
Verdict = Literal["A", "B", "C"]

_IN_ORDER: dict[str, Winner] = {"A": "a", "B": "b", "C": "tie"}  # verdict on (a, b)
_SWAPPED: dict[str, Winner] = {"A": "b", "B": "a", "C": "tie"}  # verdict on (b, a), swapped back


def parse_verdict(reply: str) -> Verdict:
    """The verdict in ``reply`` (:func:`monitors.judges.verdicts.read_choice`): A, B or C; else ``UnparseableReply``."""
    return read_choice(reply).value


def combine(first: Verdict, second: Verdict) -> Winner:
    """The winner from the verdict on (a, b) and the verdict on (b, a): a win must hold in both orders."""
    w1, w2 = _IN_ORDER[first], _SWAPPED[second]
    return w1 if w1 == w2 else "tie"


class PairwiseJudge:
    """Compares the answers of two samples (two variants, same question)."""

    name = "pairwise"
    needs_llm = True
    max_tokens = 1024

    async def compare(self, a: Sample, b: Sample, llm: JudgeLLM | None) -> PairwiseResult:
        """Judge ``a`` against ``b`` in both orders; ``winner`` is ``a``, ``b`` or ``tie``."""
        question = a.question
        if question != b.question or conversation.history_key(a) != conversation.history_key(b):
            raise JudgeError("invalid_input", "pairwise: the two samples answer different questions")
        reference = a.reference or b.reference
        multi_turn = conversation.has_history(a)
        base: dict[str, str] = {"reference": reference} if reference is not None else {}
        raw: tuple[str, ...] = ()
        if multi_turn:
            prompt = load_prompt(PROMPT_REF_MULTI if reference is not None else PROMPT_MULTI)
            base["conversation"] = conversation.render(a)
            raw = ("conversation",)
        else:
            prompt = load_prompt(PROMPT_REF if reference is not None else PROMPT)
            base["question"] = question
        reading1, reply1 = await ask(
            llm,
            prompt,
            base | {"answer_a": a.answer, "answer_b": b.answer},
            read_choice,
            max_tokens=self.max_tokens,
            raw=raw,
        )
        reading2, reply2 = await ask(
            llm,
            prompt,
            base | {"answer_a": b.answer, "answer_b": a.answer},
            read_choice,
            max_tokens=self.max_tokens,
            raw=raw,
        )
        first, second = reading1.value, reading2.value
        winner = combine(first, second)
        if winner != "tie":
            how = f"{winner} wins in both orders"
        elif first == second == "C":
            how = "tie in both orders"
        else:
            how = f"inconsistent across orders (a,b: [[{first}]]; b,a: [[{second}]]), counted as a tie"
        guided = " (reference-guided)" if reference is not None else ""
        return PairwiseResult(
            winner,
            f"{how}{guided}",
            {
                "prompt_version": prompt.version,
                "verdict_ab": first,
                "verdict_ba": second,
                "consistent": _IN_ORDER[first] == _SWAPPED[second],
                "variant_a": a.variant,
                "variant_b": b.variant,
                "reference_guided": reference is not None,
                "multi_turn": multi_turn,
                "verdict_conflict_ab": reading1.conflict,
                "verdict_conflict_ba": reading2.conflict,
                "verdict_conflict": reading1.conflict or reading2.conflict,
                "explanation_ab": _short(reply1),
                "explanation_ba": _short(reply2),
            },
        )


def _short(reply: str, limit: int = 500) -> str:
    text = " ".join(reply.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
