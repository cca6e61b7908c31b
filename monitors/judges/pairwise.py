"""MT-Bench pairwise comparison of two variants' answers to the same question, asked in both orders.

The judge model answers ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie); the verdict is the **last** such token in its reply
(unparseable: asked again once, then ``JudgeError("unparseable")``). Against position bias the pair is judged as
(a, b) and again as (b, a); after swapping the second verdict back, a variant wins only if both orders agree,
anything else (one win and one tie, or opposite wins) is a tie (Zheng et al., 2023). With a reference answer on
either sample the reference-guided prompt is used.
"""

from __future__ import annotations

import re
from typing import Literal

from llmops.sample import Sample
from monitors.judges.base import JudgeError, JudgeLLM, PairwiseResult
from monitors.judges.prompting import UnparseableReply, ask, load_prompt

PROMPT = "pairwise_v1"
PROMPT_REF = "pairwise_ref_v1"

Winner = Literal["a", "b", "tie"]
Verdict = Literal["A", "B", "C"]

_IN_ORDER: dict[str, Winner] = {"A": "a", "B": "b", "C": "tie"}  # verdict on (a, b)
_SWAPPED: dict[str, Winner] = {"A": "b", "B": "a", "C": "tie"}  # verdict on (b, a), swapped back

_VERDICT = re.compile(r"\[\[\s*([^\[\]\n]{1,16}?)\s*\]\]")


def parse_verdict(reply: str) -> Verdict:
    """The verdict in ``reply``: the last ``[[...]]`` token, one of A, B, C; else :class:`UnparseableReply`."""
    tokens = _VERDICT.findall(reply)
    if not tokens:
        raise UnparseableReply("no [[A]]/[[B]]/[[C]] in the reply")
    last = tokens[-1].upper()
    if last == "A":
        return "A"
    if last == "B":
        return "B"
    if last == "C":
        return "C"
    raise UnparseableReply(f"last verdict token [[{tokens[-1]}]] is not A, B or C")


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
        if question != b.question:
            raise JudgeError("invalid_input", "pairwise: the two samples answer different questions")
        reference = a.reference or b.reference
        prompt = load_prompt(PROMPT_REF if reference is not None else PROMPT)
        base = {"question": question} | ({"reference": reference} if reference is not None else {})
        first, reply1 = await ask(
            llm, prompt, base | {"answer_a": a.answer, "answer_b": b.answer}, parse_verdict, max_tokens=self.max_tokens
        )
        second, reply2 = await ask(
            llm, prompt, base | {"answer_a": b.answer, "answer_b": a.answer}, parse_verdict, max_tokens=self.max_tokens
        )
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
                "explanation_ab": _short(reply1),
                "explanation_ba": _short(reply2),
            },
        )


def _short(reply: str, limit: int = 500) -> str:
    text = " ".join(reply.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
