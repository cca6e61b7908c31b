"""MT-Bench single-answer grading (Zheng et al., 2023): the judge model rates the answer 1–10 as ``Rating: [[N]]``.

With a reference answer in the sample the reference-guided prompt is used (``single_ref_v1``), otherwise ``single_v1``.
The verdict is the **last** ``[[N]]`` in the judge's reply, 1 <= N <= 10, decimals allowed; the score is (N - 1) / 9.
An unparseable reply is asked again once, then ``JudgeError("unparseable")``. Only the judge's reply is parsed: an
answer that contains ``[[10]]`` itself is delimited in the prompt and never read by the parser.
"""

from __future__ import annotations

import re

from llmops.sample import Sample
from monitors.judges.base import JudgeLLM, JudgeResult
from monitors.judges.prompting import UnparseableReply, ask, load_prompt

PROMPT = "single_v1"
PROMPT_REF = "single_ref_v1"

# Any short [[...]] token: the last one is the verdict, and it must be a number in range.
_VERDICT = re.compile(r"\[\[\s*([^\[\]\n]{1,16}?)\s*\]\]")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)")


def parse_rating(reply: str) -> float:
    """The rating in ``reply``: the last ``[[...]]`` token, a number in 1..10; else :class:`UnparseableReply`."""
    tokens = _VERDICT.findall(reply)
    if not tokens:
        raise UnparseableReply("no [[rating]] in the reply")
    last = tokens[-1]
    if not _NUMBER.fullmatch(last):
        raise UnparseableReply(f"last verdict token [[{last}]] is not a number")
    rating = float(last)
    if not 1.0 <= rating <= 10.0:
        raise UnparseableReply(f"rating {rating:g} outside 1..10")
    return rating


def normalise_rating(rating: float) -> float:
    """1..10 to 0..1."""
    return (rating - 1.0) / 9.0


class SingleAnswerJudge:
    """Criterion ``overall``: the judge model's 1–10 rating of the answer, normalised to 0..1."""

    name = "llm_single"
    needs_llm = True
    max_tokens = 768

    def applies(self, sample: Sample) -> bool:
        return bool(sample.question)

    async def evaluate(self, sample: Sample, llm: JudgeLLM | None) -> list[JudgeResult]:
        reference = sample.reference
        values = {"question": sample.question, "answer": sample.answer}
        if reference is not None:
            values["reference"] = reference
        prompt = load_prompt(PROMPT_REF if reference is not None else PROMPT)
        rating, reply = await ask(llm, prompt, values, parse_rating, max_tokens=self.max_tokens)
        score = normalise_rating(rating)
        guided = "reference-guided " if reference is not None else ""
        return [
            JudgeResult(
                self.name,
                "overall",
                score,
                f"{guided}rating {rating:g}/10: {_justification(reply)}",
                {"rating": rating, "prompt_version": prompt.version, "reference_guided": reference is not None},
            )
        ]


def _justification(reply: str, limit: int = 500) -> str:
    """The judge's justification, without the rating line, shortened to ``limit`` characters."""
    text = _VERDICT.sub("", reply).replace("Rating:", "").strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
