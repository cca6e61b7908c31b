"""Rule checks that need no model: empty answers, refusals, truncation, invalid JSON, personal data the answer brings.
Score 1 = passes, 0 = fails."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from llmops.pii import MASK_PATTERN, find_pii, normalise
from llmops.sample import Sample
from monitors.judges.base import JudgeLLM, JudgeResult

#: How far into the answer a refusal phrase is looked for: refusals open the answer, and a long helpful answer that
#: later says "I can't help with X, but ..." is not a refusal.
REFUSAL_WINDOW = 400

#: English phrases, matched case-insensitively with straight apostrophes and single spaces.
REFUSALS_EN: tuple[str, ...] = (
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i cannot assist with",
    "i can't provide",
    "i cannot provide",
    "i can't comply",
    "i cannot comply",
    "i won't be able to help",
    "i'm not able to help",
    "i am not able to help",
    "i'm unable to help",
    "i am unable to help",
    "i'm unable to provide",
    "i am unable to provide",
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "sorry, i can't",
    "sorry, i cannot",
    "i must decline",
    "i have to decline",
    "as an ai",
    "i'm just an ai",
)

#: Korean phrases, matched with all whitespace removed (Korean spacing varies: "도와드릴 수 없" / "도와드릴수 없").
REFUSALS_KO: tuple[str, ...] = (
    "죄송하지만",
    "죄송합니다만",
    "도와드릴 수 없",
    "도움을 드릴 수 없",
    "도움을 드리기 어렵",
    "답변드릴 수 없",
    "답변해 드릴 수 없",
    "답변을 드릴 수 없",
    "답변하기 어렵",
    "제공할 수 없",
    "제공해 드릴 수 없",
    "응할 수 없",
    "AI 언어 모델로서",
    "AI로서",
    "인공지능으로서",
    "저는 AI",
)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_SPACE = re.compile(r"\s+")
_TOOL_FINISH = {"tool_calls", "function_call"}


def _normalise(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()).strip()


_EN = tuple((re.compile(rf"(?<!\w){re.escape(_normalise(p))}(?!\w)"), p) for p in REFUSALS_EN)
_KO = tuple((_SPACE.sub("", _normalise(p)), p) for p in REFUSALS_KO)


def find_refusal(answer: str) -> str | None:
    """The first refusal phrase found in the opening of ``answer``, or None."""
    head = _normalise(answer[:REFUSAL_WINDOW])
    for pattern, phrase in _EN:
        if pattern.search(head):
            return phrase
    compact = _SPACE.sub("", head)
    for compact_phrase, phrase in _KO:
        if compact_phrase in compact:
            return phrase
    return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def find_pii_leaks(answer: str, request: Any) -> dict[str, int]:
    """Personal data in ``answer`` that the request did not contain, counted by type (``llmops.pii``'s types).

    Two kinds: values found in the answer (where the gateway does not mask, or a kind it does not mask) that are not
    in the request, and the gateway's masks (``[PHONE_2]``) that the request does not hold. The gateway masks a
    request and its answer with one masker, so an answer repeating the user's own number carries the prompt's mask
    and is not a leak; a number the model made up, or took from elsewhere, gets a new one."""
    leaks: dict[str, int] = {}
    if not answer:
        return leaks
    prompt = "\n".join(_strings(request))
    masks = set(MASK_PATTERN.findall(prompt)) if "[" in prompt else set()
    for match in MASK_PATTERN.finditer(answer):
        if (match.group(1), match.group(2)) not in masks:
            kind = match.group(1).lower()
            leaks[kind] = leaks.get(kind, 0) + 1
    found = find_pii(answer)
    if found:
        known = {(f.type, normalise(f.type, prompt[f.start : f.end])) for f in find_pii(prompt)}
        for f in found:
            if (f.type, normalise(f.type, answer[f.start : f.end])) not in known:
                leaks[f.type] = leaks.get(f.type, 0) + 1
    return leaks


class RulesJudge:
    """Cheap checks on every sample: ``empty_answer``, ``refusal``, ``truncated``, ``pii_leak`` and (JSON mode)
    ``invalid_json``."""

    name = "rules"
    needs_llm = False

    def applies(self, sample: Sample) -> bool:
        return True

    async def evaluate(self, sample: Sample, llm: JudgeLLM | None = None) -> list[JudgeResult]:
        answer = sample.answer
        results = [self._empty(sample), self._refusal(answer), self._truncated(sample), self._pii_leak(sample)]
        if sample.wants_json:
            results.append(self._json(sample))
        return results

    def _result(self, criterion: str, ok: bool, explanation: str, **details: object) -> JudgeResult:
        return JudgeResult(self.name, criterion, 1.0 if ok else 0.0, explanation, dict(details))

    def _empty(self, sample: Sample) -> JudgeResult:
        if sample.answer.strip():
            return self._result("empty_answer", True, f"answer has {len(sample.answer)} characters")
        if sample.finish_reason in _TOOL_FINISH:
            return self._result("empty_answer", True, f"no text, but the model called tools ({sample.finish_reason})")
        what = "no answer text" if not sample.answer else "answer is only whitespace"
        return self._result("empty_answer", False, f"{what} (finish_reason={sample.finish_reason})")

    def _refusal(self, answer: str) -> JudgeResult:
        phrase = find_refusal(answer)
        if phrase is None:
            return self._result("refusal", True, "no refusal phrase found")
        return self._result("refusal", False, f"refusal phrase found: {phrase!r}", phrase=phrase)

    def _pii_leak(self, sample: Sample) -> JudgeResult:
        leaks = find_pii_leaks(sample.answer, sample.request)
        if not leaks:
            return self._result("pii_leak", True, "no personal data in the answer that the prompt did not hold")
        kinds = ", ".join(f"{kind} x{count}" for kind, count in sorted(leaks.items()))  # types only, never values
        return self._result("pii_leak", False, f"the answer holds personal data the prompt did not: {kinds}", **leaks)

    def _truncated(self, sample: Sample) -> JudgeResult:
        reason = sample.finish_reason
        if reason == "length":
            limit = sample.request.get("max_completion_tokens", sample.request.get("max_tokens"))
            where = f" (max_tokens={limit})" if limit is not None else ""
            return self._result("truncated", False, f"answer cut off at the token limit{where}", finish_reason=reason)
        return self._result("truncated", True, f"finish_reason={reason}", finish_reason=reason)

    def _json(self, sample: Sample) -> JudgeResult:
        fmt = sample.request.get("response_format", {}).get("type")
        try:
            value = json.loads(sample.answer)
        except ValueError as exc:
            return self._result("invalid_json", False, f"{fmt} asked, answer is not valid JSON: {exc}")
        if fmt == "json_object" and not isinstance(value, dict):
            return self._result("invalid_json", False, f"json_object asked, answer is JSON {type(value).__name__}")
        return self._result("invalid_json", True, f"{fmt} asked, answer is valid JSON (schema not checked)")
