"""RAG metrics in the manner of RAGAS (Es et al., 2023), with the judge model answering in JSON.

* ``faithfulness``: the judge splits the answer into statements (``rag_statements_v1``), then says for each whether
  the retrieved contexts support it (``rag_faithfulness_v1``); score = supported / statements. Not reported when the
  answer makes no statement.
* ``answer_relevancy`` (RAGAS's definition, needs ``monitors.embedding_model``): the judge writes N = 3 questions the
  answer would answer, and flags a noncommittal answer (``rag_questions_v1``); score = mean cosine similarity of the
  embeddings of those questions to the embedding of the user's question (:mod:`monitors.embedder`), clamped
  to 0..1, and 0 when the answer is noncommittal. With the bundled English-only local model, a question or answer
  not mostly in Latin script is not scored (``JudgeError("unsupported_language")``, counted): that model ranks
  keyword overlap above paraphrase in Korean.
* ``answer_relevancy_lexical`` (when no embedding model is configured): the same generated questions, compared by the
  cosine of character 2- and 3-gram count vectors (:func:`lexical_similarity`). It rewards keyword overlap and
  penalises paraphrase, so it is exported under its own name and never mixed with ``answer_relevancy``.
* ``context_precision`` (with a reference answer): the judge says for each context chunk, in retrieval order, whether
  it was useful for the reference (``rag_context_precision_v1``, one call for all chunks); score = average precision:
  sum over useful ranks k of precision@k, divided by the number of useful chunks (0 when none is useful).
* ``context_utilization`` (without a reference): the same, judged against the model's own answer (RAGAS's "context
  utilisation", context precision without a reference). Exported separately: it measures whether the answer used the
  chunks, not whether retrieval found what a correct answer needs.
* ``context_recall`` (only with a reference): the judge splits the reference into statements and says whether each is
  attributable to the contexts (``rag_context_recall_v1``); score = attributed / statements.

Multi-turn requests (:func:`monitors.judges.conversation.has_history`): the last user message ("and in 1988?") is
first rewritten from the conversation as a self-contained question (``rag_standalone_question_v1``), which every
criterion then uses as the user's question; if that step fails, answer relevancy fails with it and the other
criteria use the last user message.

Replies must be one JSON object (code fences and text around it are tolerated); a malformed reply is asked again once,
then ``JudgeError("unparseable")``. The criteria are independent steps: one that fails does not void the others (the
judge then raises :class:`monitors.judges.base.PartialJudgeError` with the scores it has, and each failed criterion is
counted as an error of its own).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from typing import Any

from llmops.sample import Sample
from monitors.judges import conversation
from monitors.judges.base import Embedder, JudgeError, JudgeLLM, JudgeResult, PartialJudgeError
from monitors.judges.prompting import UnparseableReply, ask, load_prompt, numbered_blocks

N_QUESTIONS = 3
PROMPT_STATEMENTS = "rag_statements_v1"
PROMPT_FAITHFULNESS = "rag_faithfulness_v1"
PROMPT_QUESTIONS = "rag_questions_v1"
PROMPT_PRECISION = "rag_context_precision_v1"
PROMPT_RECALL = "rag_context_recall_v1"
PROMPT_STANDALONE = "rag_standalone_question_v1"
#: With an English-only embedding model, text whose letters are less than this share Latin is not scored.
MIN_LATIN_SHARE = 0.5

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


# ---- parsing ----------------------------------------------------------------------------------------------------
def parse_json_object(reply: str) -> dict[str, Any]:
    """The JSON object in ``reply``, tolerating code fences and text around it; else :class:`UnparseableReply`."""
    candidates = [m.group(1) for m in _FENCE.finditer(reply)]
    start, end = reply.find("{"), reply.rfind("}")
    if start != -1 and end > start:
        candidates.append(reply[start : end + 1])
    candidates.append(reply)
    for text in candidates:
        try:
            value = json.loads(text.strip())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise UnparseableReply("no JSON object in the reply")


def _flag(value: Any) -> int:
    """A 1/0 verdict given as 1, 0, true, false, "1", "0", "yes", "no"."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in ("1", "0", "yes", "no", "true", "false"):
        return int(value.strip().lower() in ("1", "yes", "true"))
    raise UnparseableReply(f"verdict {value!r} is not 1 or 0")


def _strings(obj: dict[str, Any], key: str) -> list[str]:
    items = obj.get(key)
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise UnparseableReply(f"'{key}' is not a list of strings")
    return [s.strip() for s in items if s.strip()]


def parse_statements(reply: str) -> list[str]:
    """``{"statements": [str, ...]}`` (may be empty)."""
    return _strings(parse_json_object(reply), "statements")


def parse_flags(reply: str, key: str, flag: str, count: int, index: str) -> list[int]:
    """``{key: [{index: i, flag: 1|0, ...}, ...]}`` with exactly ``count`` entries, returned in item order."""
    entries = parse_json_object(reply).get(key)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UnparseableReply(f"'{key}' is not a list of objects")
    if len(entries) != count:
        raise UnparseableReply(f"{len(entries)} {key} for {count} items")
    flags = [_flag(e.get(flag)) for e in entries]
    numbers = [e.get(index) for e in entries]
    if sorted(n for n in numbers if isinstance(n, int)) == list(range(1, count + 1)):
        flags = [f for _, f in sorted(zip(numbers, flags, strict=True))]
    return flags


def parse_questions(reply: str) -> tuple[list[str], bool]:
    """``{"questions": [str, ...], "noncommittal": 1|0}``: at least one question."""
    obj = parse_json_object(reply)
    questions = _strings(obj, "questions")
    if not questions:
        raise UnparseableReply("no questions")
    return questions[:N_QUESTIONS], bool(_flag(obj.get("noncommittal", 0)))


def parse_standalone_question(reply: str) -> str:
    """``{"question": str}``, not empty."""
    question = parse_json_object(reply).get("question")
    if not isinstance(question, str) or not question.strip():
        raise UnparseableReply("'question' is not a non-empty string")
    return question.strip()


def parse_classifications(reply: str) -> list[tuple[str, int]]:
    """``{"classifications": [{"statement": str, "attributed": 1|0, ...}, ...]}``: at least one."""
    entries = parse_json_object(reply).get("classifications")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise UnparseableReply("'classifications' is not a non-empty list of objects")
    return [(str(e.get("statement", "")), _flag(e.get("attributed"))) for e in entries]


# ---- metric math ------------------------------------------------------------------------------------------------
def average_precision(useful: list[int]) -> float:
    """Average precision of a ranked list of 1/0 usefulness verdicts (0 when nothing is useful)."""
    hits = 0
    total = 0.0
    for k, flag in enumerate(useful, 1):
        if flag:
            hits += 1
            total += hits / k
    return total / hits if hits else 0.0


def char_ngrams(text: str, sizes: tuple[int, ...] = (2, 3)) -> Counter[str]:
    """Counts of character n-grams of each word (runs of letters, digits, marks), padded with a space each side."""
    text = unicodedata.normalize("NFKC", text).casefold()
    words = "".join(ch if unicodedata.category(ch)[0] in "LNM" else " " for ch in text).split()
    grams: Counter[str] = Counter()
    for word in words:
        padded = f" {word} "
        for n in sizes:
            grams.update(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


def lexical_similarity(a: str, b: str) -> float:
    """Cosine similarity of the character n-gram count vectors of ``a`` and ``b`` (0..1)."""
    va, vb = char_ngrams(a), char_ngrams(b)
    dot = sum(count * vb[gram] for gram, count in va.items())
    norm = math.sqrt(sum(c * c for c in va.values())) * math.sqrt(sum(c * c for c in vb.values()))
    return dot / norm if norm else 0.0


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors (0 when either is zero)."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def latin_share(text: str) -> float:
    """Share of ``text``'s letters that are Latin script (1.0 for text without letters)."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 1.0
    return sum(1 for ch in letters if "LATIN" in unicodedata.name(ch, "")) / len(letters)


def _listing(items: list[str]) -> str:
    return "\n".join(f"{i}. {' '.join(item.split())}" for i, item in enumerate(items, 1))


# ---- the judge ----------------------------------------------------------------------------------------------------
class RagJudge:
    """``faithfulness``, ``answer_relevancy`` (or ``answer_relevancy_lexical``), ``context_precision`` (with a
    reference) or ``context_utilization`` (without), and ``context_recall`` (with a reference)."""

    name = "rag"
    needs_llm = True
    max_tokens = 1024

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder

    def applies(self, sample: Sample) -> bool:
        return bool(sample.contexts)

    async def evaluate(self, sample: Sample, llm: JudgeLLM | None) -> list[JudgeResult]:
        contexts = numbered_blocks("Context", sample.contexts)
        results: list[JudgeResult] = []
        failures: list[tuple[str, JudgeError]] = []
        question = sample.question
        rewritten: str | None = None
        rewrite_error: JudgeError | None = None
        if conversation.has_history(sample):
            try:
                standalone, _ = await ask(
                    llm,
                    load_prompt(PROMPT_STANDALONE),
                    {"conversation": conversation.render(sample)},
                    parse_standalone_question,
                    max_tokens=self.max_tokens,
                    raw=("conversation",),
                )
                question = rewritten = standalone
            except JudgeError as error:
                rewrite_error = error
        relevancy = "answer_relevancy" if self.embedder is not None else "answer_relevancy_lexical"
        steps = (
            ("faithfulness", self._faithfulness),
            (relevancy, self._answer_relevancy),
            ("context_precision" if sample.reference else "context_utilization", self._context_precision),
            ("context_recall", self._context_recall),
        )
        for criterion, step in steps:
            try:
                if criterion == relevancy and rewrite_error is not None:
                    raise rewrite_error  # compared with "rewrite your previous answer" it would mean nothing
                result = await step(sample, question, contexts, llm)
            except JudgeError as error:
                failures.append((criterion, error))
                continue
            if result is not None:
                if rewritten is not None:
                    result.details["standalone_question"] = rewritten
                results.append(result)
        if not failures:
            return results
        if not results:
            transient = [error for _, error in failures if error.transient]
            raise transient[0] if transient else failures[0][1]
        raise PartialJudgeError(results, failures)

    async def _faithfulness(
        self, sample: Sample, question: str, contexts: str, llm: JudgeLLM | None
    ) -> JudgeResult | None:
        if not sample.answer.strip():
            return None
        split, verdict = load_prompt(PROMPT_STATEMENTS), load_prompt(PROMPT_FAITHFULNESS)
        values = {"question": question, "answer": sample.answer}
        statements, _ = await ask(llm, split, values, parse_statements, max_tokens=self.max_tokens)
        if not statements:
            return None
        flags, _ = await ask(
            llm,
            verdict,
            {"contexts": contexts, "statements": _listing(statements)},
            lambda reply: parse_flags(reply, "verdicts", "verdict", len(statements), "statement"),
            max_tokens=self.max_tokens,
            raw=("contexts", "statements"),
        )
        supported = sum(flags)
        unsupported = [s for s, f in zip(statements, flags, strict=True) if not f]
        why = f"; not supported: {'; '.join(unsupported[:3])}" if unsupported else ""
        return JudgeResult(
            self.name,
            "faithfulness",
            supported / len(statements),
            f"{supported} of {len(statements)} statements supported by the contexts{why}",
            {
                "prompt_version": f"{split.version}+{verdict.version}",
                "statements": [{"statement": s, "supported": bool(f)} for s, f in zip(statements, flags, strict=True)],
            },
        )

    async def _answer_relevancy(
        self, sample: Sample, question: str, contexts: str, llm: JudgeLLM | None
    ) -> JudgeResult | None:
        if not question.strip():
            return None
        embedder = self.embedder
        criterion = "answer_relevancy" if embedder is not None else "answer_relevancy_lexical"
        prompt = load_prompt(PROMPT_QUESTIONS)
        similarity = embedder.name if embedder is not None else "char_ngram_cosine_v1"
        details: dict[str, Any] = {"prompt_version": prompt.version, "similarity": similarity}
        if not sample.answer.strip():
            return JudgeResult(self.name, criterion, 0.0, "empty answer", details)
        if embedder is not None and embedder.english_only:
            share = min(latin_share(question), latin_share(sample.answer))
            if share < MIN_LATIN_SHARE:
                raise JudgeError(
                    "unsupported_language",
                    f"answer relevancy: {embedder.name} embeds English only, and the question or answer is "
                    f"{1 - share:.0%} non-Latin letters; configure a multilingual monitors.embedding_model",
                )
        (generated, noncommittal), _ = await ask(
            llm,
            prompt,
            {"answer": sample.answer, "n": str(N_QUESTIONS)},
            parse_questions,
            max_tokens=self.max_tokens,
        )
        if embedder is not None:
            vectors = await embedder.embed([question, *generated])
            if len(vectors) != len(generated) + 1:
                raise JudgeError("llm_error", f"{len(vectors)} embeddings for {len(generated) + 1} texts")
            similarities = [cosine(vectors[0], v) for v in vectors[1:]]
            kind = f"embedding cosine similarity ({embedder.name})"
        else:
            similarities = [lexical_similarity(q, question) for q in generated]
            kind = "lexical (character n-gram) similarity"
        mean = sum(similarities) / len(similarities)
        score = 0.0 if noncommittal else min(1.0, max(0.0, mean))
        details |= {"questions": generated, "similarities": similarities, "noncommittal": noncommittal}
        explanation = (
            f"answer judged noncommittal (mean question similarity {mean:.3f} ignored)"
            if noncommittal
            else f"mean {kind} {mean:.3f} of {len(generated)} generated questions to the user's question"
        )
        return JudgeResult(self.name, criterion, score, explanation, details)

    async def _context_precision(
        self, sample: Sample, question: str, contexts: str, llm: JudgeLLM | None
    ) -> JudgeResult | None:
        reference = sample.reference
        target, kind = (sample.answer, "answer") if reference is None else (reference, "reference")
        criterion = "context_precision" if kind == "reference" else "context_utilization"
        if not target.strip():
            return None
        prompt = load_prompt(PROMPT_PRECISION)
        count = len(sample.contexts)
        useful, _ = await ask(
            llm,
            prompt,
            {"question": question, "target": target, "contexts": contexts},
            lambda reply: parse_flags(reply, "verdicts", "verdict", count, "context"),
            max_tokens=self.max_tokens,
            raw=("contexts",),
        )
        score = average_precision(useful)
        ranks = [k for k, f in enumerate(useful, 1) if f]
        return JudgeResult(
            self.name,
            criterion,
            score,
            f"{len(ranks)} of {count} chunks useful for the {kind} (ranks {ranks or 'none'}); average precision",
            {"prompt_version": prompt.version, "useful": useful, "target": kind},
        )

    async def _context_recall(
        self, sample: Sample, question: str, contexts: str, llm: JudgeLLM | None
    ) -> JudgeResult | None:
        reference = sample.reference
        if reference is None:
            return None
        prompt = load_prompt(PROMPT_RECALL)
        classified, _ = await ask(
            llm,
            prompt,
            {"question": question, "contexts": contexts, "reference": reference},
            parse_classifications,
            max_tokens=self.max_tokens,
            raw=("contexts",),
        )
        attributed = sum(f for _, f in classified)
        missing = [s for s, f in classified if not f and s]
        why = f"; not in the contexts: {'; '.join(missing[:3])}" if missing else ""
        return JudgeResult(
            self.name,
            "context_recall",
            attributed / len(classified),
            f"{attributed} of {len(classified)} reference statements attributable to the contexts{why}",
            {
                "prompt_version": prompt.version,
                "statements": [{"statement": s, "attributed": bool(f)} for s, f in classified],
            },
        )
