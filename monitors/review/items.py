"""Review items: one conversation with one answer (graded) or two answers (compared), built from sampled traffic.

An item names its **contestants**: within a model's ratings, a variant by its variant name, a model without a
variant (and a shadow comparison's target) by its model name. ``model`` is the rating group: the sampled model.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from llmops.sample import Sample, content_text


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer of an item, with who gave it (shown to a reviewer only after their vote)."""

    contestant: str
    model: str
    variant: str | None
    request_id: str
    text: str


@dataclass(slots=True)
class ReviewItem:
    """What a reviewer sees and votes on; ``judge*`` hold the LLM judge's verdict when one was made (never shown)."""

    id: str
    kind: str  # "pair" or "single"
    queue: str
    model: str
    source: str  # variants, shadow, random, low_score, negative_feedback
    conversation: list[dict[str, str]]
    answers: list[Answer]
    reference: str | None = None
    created: float = field(default_factory=time.time)
    judge: str | None = None  # "pairwise" or "llm_single"
    judge_outcome: str | None = None  # pair: a, b or tie; single: the 1-10 rating
    judge_consistent: bool | None = None  # pair: whether the judge's two orders agreed

    @property
    def request_ids(self) -> list[str]:
        return [answer.request_id for answer in self.answers]

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> ReviewItem:
        data = orjson.loads(raw)
        data["answers"] = [Answer(**answer) for answer in data["answers"]]
        return cls(**data)


def item_id(kind: str, queue: str, request_ids: list[str]) -> str:
    """A stable id: the same answers queued again (a retried sample, a second worker) make the same item."""
    basis = "\0".join([kind, queue, *request_ids]).encode()
    return hashlib.blake2b(basis, digest_size=10).hexdigest()


def contestant(sample: Sample) -> str:
    """The sample's name among its model's contestants: its variant, else its model."""
    return sample.variant or sample.model


def answer(sample: Sample, name: str | None = None) -> Answer:
    return Answer(name or contestant(sample), sample.model, sample.variant, sample.id, sample.answer)


def conversation(sample: Sample) -> list[dict[str, str]]:
    """The whole conversation the answer replies to, as ``{role, content}`` text (a completion's prompt is one
    ``prompt`` message; tool calls are summarised; non-text parts are named)."""
    messages = sample.request.get("messages")
    if not isinstance(messages, list):
        return [{"role": "prompt", "content": sample.question}]
    out: list[dict[str, str]] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        text = content_text(message.get("content"))
        parts = message.get("content")
        if isinstance(parts, list):
            others = sorted({str(p.get("type")) for p in parts if isinstance(p, dict) and p.get("type") != "text"})
            text += "".join(f"\n[{kind}]" for kind in others)
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                text += f"\n[tool call] {function.get('name')}({function.get('arguments', '')})"
        out.append({"role": str(message.get("role", "user")), "content": text.strip()})
    return out


def single_item(sample: Sample, queue: str, source: str, fields: dict[str, Any]) -> ReviewItem:
    """One answer to grade, with the single-answer judge's rating when it ran."""
    item = ReviewItem(
        item_id("single", queue, [sample.id]),
        "single",
        queue,
        sample.model,
        source,
        conversation(sample),
        [answer(sample)],
        sample.reference,
    )
    judged = fields.get("llm_single:overall")
    rating = judged.get("details", {}).get("rating") if isinstance(judged, dict) else None
    if isinstance(rating, int | float):
        item.judge, item.judge_outcome = "llm_single", f"{float(rating):g}"
    return item


def pair_item(
    a: Answer, b: Answer, like: Sample, queue: str, source: str, verdict: dict[str, Any] | None
) -> ReviewItem:
    """Two answers to the conversation of ``like``; ``verdict`` is the pairwise judge's stored result on (a, b)
    (``winner`` a/b/tie, ``details.consistent``), when it judged this very pair."""
    item = ReviewItem(
        item_id("pair", queue, [a.request_id, b.request_id]),
        "pair",
        queue,
        like.model,
        source,
        conversation(like),
        [a, b],
        like.reference,
    )
    if verdict and verdict.get("winner") in ("a", "b", "tie"):
        details = verdict.get("details")
        details = details if isinstance(details, dict) else {}
        item.judge, item.judge_outcome = "pairwise", str(verdict["winner"])
        item.judge_consistent = bool(details.get("consistent", True))
    return item
