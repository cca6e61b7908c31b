"""A model of known skill (``--skill SHARE --answer-key FILE``): on the benchmark items of the answer key, the
simulator is right on exactly that share of each task's items and wrong on the rest, deterministically (``--seed``).

The answer key (``llmops eval answer-key`` writes one; JSON Lines) holds one item per line: ``task``, ``query`` (the
item's prompt text as the harness renders it, without few-shot examples) and either ``choices`` and ``answer`` (the
right choice's index: a multiple-choice item) or ``target`` (the reference answer: a generative item).

Which items the model knows: per task, the items sorted by a hash of (seed, task, query); the first
``round(skill * n)`` are known (so a task of 8 items at ``--skill 0.75`` scores exactly 6/8).

- **Multiple choice** (``/v1/completions`` with ``echo`` and ``logprobs``, as lm-evaluation-harness scores it): when a
  prompt ends with a key item's query followed by one of its choices, that choice's tokens get logprob -0.01 (likely,
  greedy) if it is the model's pick, else -6 (unlikely). The pick is the right choice on a known item, otherwise one
  wrong choice chosen by the hash; acc and acc_norm agree.
- **Generative** (chat or completions): when the last user message (or the prompt) ends with a key item's query, the
  answer is the item's ``target`` on a known item, else "I do not know."

Prompts that match no item are answered as without a key (``--script`` and the rest still apply).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from llmops.simulator.errors import SimulatorSettingsError

PICKED = -0.01  #: logprob of each token of the model's pick
OTHER = -6.0  #: logprob of each token of every other choice
UNKNOWN_ANSWER = "I do not know."
_TAIL = 24  # characters of a query's end that index it
_WINDOW = 96  # the continuation is looked for among the prompt's last pieces


@dataclass(frozen=True, slots=True)
class KeyItem:
    """One item of the answer key."""

    task: str
    query: str
    choices: tuple[str, ...] = ()
    answer: int | None = None
    target: str | None = None


@dataclass(frozen=True, slots=True)
class _Known:
    item: KeyItem
    known: bool
    pick: int | None  # multiple choice: the index the model prefers


def _rank(seed: int, item: KeyItem) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{item.task}\x00{item.query}".encode(), digest_size=8).digest()


class Skill:
    """The answer key with the model's knowledge decided for each item."""

    def __init__(self, items: tuple[KeyItem, ...], share: float, seed: int) -> None:
        self.share = share
        by_task: dict[str, list[KeyItem]] = {}
        for item in items:
            by_task.setdefault(item.task, []).append(item)
        self._index: dict[int, dict[str, list[_Known]]] = {}
        for task_items in by_task.values():
            ordered = sorted(task_items, key=lambda it: _rank(seed, it))
            known_count = int(share * len(ordered) + 0.5)
            for position, item in enumerate(ordered):
                known = position < known_count
                pick = None
                if item.answer is not None:
                    wrong = [i for i in range(len(item.choices)) if i != item.answer]
                    pick = item.answer if known or not wrong else wrong[_rank(seed, item)[0] % len(wrong)]
                query = item.query.rstrip()
                tail = query[-_TAIL:]
                entry = _Known(item, known, pick)
                self._index.setdefault(len(tail), {}).setdefault(tail, []).append(entry)

    def _items_ending(self, text: str) -> list[_Known]:
        text = text.rstrip()
        found: list[_Known] = []
        for length, table in self._index.items():
            for entry in table.get(text[-length:], ()):
                if text.endswith(entry.item.query.rstrip()):
                    found.append(entry)
        return found

    def choice_logprobs(self, pieces: list[str]) -> list[float | None]:
        """Per prompt piece, the logprob the skill sets (None where it sets none): the continuation's pieces of a
        prompt that is a key item's query and one of its choices."""
        out: list[float | None] = [None] * len(pieces)
        offsets = [0]
        for piece in pieces:
            offsets.append(offsets[-1] + len(piece))
        text = "".join(pieces)
        for split in range(len(pieces) - 1, max(0, len(pieces) - _WINDOW), -1):
            continuation = text[offsets[split] :].strip()
            for entry in self._items_ending(text[: offsets[split]]):
                if entry.pick is None or continuation not in entry.item.choices:
                    continue
                chosen = entry.item.choices.index(continuation)
                value = PICKED if chosen == entry.pick else OTHER
                for k in range(split, len(pieces)):
                    out[k] = value
                return out
        return out

    def answer(self, text: str) -> str | None:
        """The answer to a generative key item whose query ``text`` ends with, or None."""
        for entry in self._items_ending(text):
            if entry.item.target is not None:
                return entry.item.target if entry.known else UNKNOWN_ANSWER
        return None


def load_answer_key(path: str | Path) -> tuple[KeyItem, ...]:
    """Read an answer key (JSON Lines); raises :class:`SimulatorSettingsError` naming the line that is wrong."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise SimulatorSettingsError(f"--answer-key {path}: cannot read the file: {error.strerror or error}") from error
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            choices = tuple(str(choice).strip() for choice in data.get("choices") or ())
            answer = data.get("answer")
            item = KeyItem(str(data["task"]), str(data["query"]), choices, answer, data.get("target"))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise SimulatorSettingsError(
                f"--answer-key {path}: line {number}: want {{task, query, choices, answer}} or "
                f"{{task, query, target}}: {error}"
            ) from error
        if item.target is None and not (isinstance(answer, int) and 0 <= answer < len(choices)):
            raise SimulatorSettingsError(
                f"--answer-key {path}: line {number}: `answer` must index `choices` (or give `target`)"
            )
        items.append(item)
    return tuple(items)
