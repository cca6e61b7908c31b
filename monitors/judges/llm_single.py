"""MT-Bench single-answer grading (Zheng et al., 2023): the judge model rates the answer 1–10 as ``Rating: [[N]]``.

Four prompts: ``single_v1`` (one turn), ``single_ref_v1`` (one turn, reference-guided, when the sample carries a
reference answer), and when the request has earlier turns (:func:`monitors.judges.conversation.has_history`) their
multi-turn forms ``single_multi_turn_v1`` / ``single_ref_multi_turn_v1``, which show the whole conversation (system
message included) and grade the answer to the last user message, as MT-Bench's ``single-v1-multi-turn`` does.

The verdict is read by :func:`monitors.judges.verdicts.read_rating`: the last valid ``[[N]]`` (1 <= N <= 10, decimals
allowed) on the final verdict line; a stray token after it does not void it; disagreeing tokens are recorded
(``details["verdict_conflict"]``). The score is (N - 1) / 9. An unparseable reply is asked again once, then
``JudgeError("unparseable")``. Only the judge's reply is parsed: an answer that contains ``[[10]]`` itself is
delimited (and its markers defused) in the prompt and never read by the parser.
"""

from __future__ import annotations

import re

from llmops.sample import Sample
from monitors.judges import conversation
from monitors.judges.base import JudgeLLM, JudgeResult
from monitors.judges.prompting import ask, load_prompt
from monitors.judges.verdicts import read_rating

PROMPT = "single_v1"
PROMPT_REF = "single_ref_v1"
PROMPT_MULTI = "single_multi_turn_v1"
PROMPT_REF_MULTI = "single_ref_multi_turn_v1"

_TOKEN = re.compile(r"\[\[\s*([^\[\]\n]{1,16}?)\s*\]\]")


def parse_rating(reply: str) -> float:
    """The rating in ``reply`` (:func:`monitors.judges.verdicts.read_rating`); else ``UnparseableReply``."""
    return read_rating(reply).value


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
        multi_turn = conversation.has_history(sample)
        values = {"answer": sample.answer}
        raw: tuple[str, ...] = ()
        if multi_turn:
            values["conversation"] = conversation.render(sample)
            raw = ("conversation",)
            prompt = load_prompt(PROMPT_REF_MULTI if reference is not None else PROMPT_MULTI)
        else:
            values["question"] = sample.question
            prompt = load_prompt(PROMPT_REF if reference is not None else PROMPT)
        if reference is not None:
            values["reference"] = reference
        reading, reply = await ask(llm, prompt, values, read_rating, max_tokens=self.max_tokens, raw=raw)
        rating = reading.value
        score = normalise_rating(rating)
        guided = "reference-guided " if reference is not None else ""
        turn = "last-turn " if multi_turn else ""
        details = {
            "rating": rating,
            "prompt_version": prompt.version,
            "reference_guided": reference is not None,
            "multi_turn": multi_turn,
            **reading.details(),
        }
        if multi_turn:
            details["conversation"] = conversation.summary(sample)
        conflict = " (the reply holds conflicting verdicts; the final verdict line counts)" if reading.conflict else ""
        return [
            JudgeResult(
                self.name,
                "overall",
                score,
                f"{guided}{turn}rating {rating:g}/10{conflict}: {_justification(reply)}",
                details,
            )
        ]


def _justification(reply: str, limit: int = 500) -> str:
    """The judge's justification, without the rating line, shortened to ``limit`` characters."""
    text = _TOKEN.sub("", reply).replace("Rating:", "").strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
