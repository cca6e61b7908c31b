"""Reading the judge model's verdict out of its reply: ``Rating: [[N]]`` (single grading) or ``[[A]]``, ``[[B]]``,
``[[C]]`` (pairwise), as MT-Bench asks for them (Zheng et al., 2023).

The reply is NFKC-normalised first (a full-width ``［［８］］`` reads as ``[[8]]``). Every ``[[...]]`` token is looked
at; the *valid* ones hold a verdict of the asked kind (a number in 1..10, decimals allowed; or A, B, C in any case).
The verdict is the **last valid token on a verdict line**, a line that holds the token and at most a label
(``Rating:``, ``Verdict:``, ``Final verdict:``, ``Score:``, ``평점:``, ``판정:``), markdown emphasis and punctuation:
the final verdict line the prompts ask for. Without such a line it is the last valid token anywhere. So a stray token
after the verdict (``Rating: [[8]]. The required format is [[rating]].``) or a number quoted afterwards
(``... an answer worth [[9]] would need ...``) does not change or void the verdict; a reply with no valid token is
unparseable (asked again once, then ``JudgeError("unparseable")``).

``conflict``: the reply holds valid verdict tokens that disagree (``I first thought [[3]] ... Rating: [[6]]``, or
``[[A]]`` and later ``[[B]]``). The verdict is still read as above, and the conflict is recorded in the result's
``details["verdict_conflict"]`` and counted (``llm_judge_verdict_conflicts_total``): a judge that often contradicts
itself is worth reading.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from monitors.judges.prompting import UnparseableReply

V = TypeVar("V")
Choice = Literal["A", "B", "C"]

# Any short [[...]] token (a candidate verdict).
_TOKEN = re.compile(r"\[\[\s*([^\[\]\n]{1,16}?)\s*\]\]")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)")
# What may stand around the token on a verdict line: a label, emphasis, punctuation.
_LABEL = re.compile(
    r"^[\s*_#>`\-]*(?:(?:final|overall|my)\s+)?(?:verdict|rating|score|judg(?:e)?ment|decision|평점|점수|판정|최종\s*판정|평가)?"
    r"[\s*_`]*[:：=\-]?[\s*_`]*$",
    re.IGNORECASE,
)
_TRAILER = re.compile(r"^[\s*_`.!,;)\]」』]*$")


@dataclass(frozen=True, slots=True)
class Reading(Generic[V]):
    """A verdict read from a reply: ``value``, every valid verdict token in reply order, and whether they disagree."""

    value: V
    tokens: tuple[V, ...]
    on_verdict_line: bool

    @property
    def conflict(self) -> bool:
        return len(set(self.tokens)) > 1

    def details(self) -> dict[str, object]:
        """What results record about how the verdict was read."""
        return {"verdict_conflict": self.conflict, "verdict_tokens": list(self.tokens)}


def _read(reply: str, convert: Callable[[str], V | None], what: str) -> Reading[V]:
    text = unicodedata.normalize("NFKC", reply)
    valid: list[tuple[V, bool]] = []
    seen_any = False
    for match in _TOKEN.finditer(text):
        seen_any = True
        value = convert(match.group(1))
        if value is None:
            continue
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.end())
        before = text[line_start : match.start()]
        after = text[match.end() : len(text) if line_end == -1 else line_end]
        valid.append((value, bool(_LABEL.match(before) and _TRAILER.match(after))))
    if not valid:
        raise UnparseableReply(f"no valid {what} in the reply" if seen_any else f"no {what} in the reply")
    on_line = [value for value, line in valid if line]
    value = on_line[-1] if on_line else valid[-1][0]
    return Reading(value, tuple(v for v, _ in valid), bool(on_line))


def _rating(token: str) -> float | None:
    if not _NUMBER.fullmatch(token):
        return None
    rating = float(token)
    return rating if 1.0 <= rating <= 10.0 else None


_CHOICES: dict[str, Choice] = {"A": "A", "B": "B", "C": "C"}


def _choice(token: str) -> Choice | None:
    return _CHOICES.get(token.upper())


def read_rating(reply: str) -> Reading[float]:
    """The 1..10 rating in ``reply`` (see the module docstring); else :class:`UnparseableReply`."""
    return _read(reply, _rating, "[[rating]] from 1 to 10")


def read_choice(reply: str) -> Reading[Choice]:
    """The pairwise verdict A, B or C (tie) in ``reply`` (see the module docstring); else :class:`UnparseableReply`."""
    return _read(reply, _choice, "[[A]]/[[B]]/[[C]] verdict")
