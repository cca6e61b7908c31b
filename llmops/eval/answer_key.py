"""``llmops eval answer-key``: the answer key of tasks, for the simulator's ``--skill`` (:mod:`llmops.simulator.skill`).

One JSON line per item, rendered by lm-evaluation-harness exactly as a run renders it: ``task``, ``query`` (the
item's prompt, few-shot examples left out) and ``choices`` + ``answer`` (multiple choice) or ``target``
(generative). ``llmops/eval/samples/answer-key.jsonl`` is the key of the shipped samples (``--check`` tells whether it
is current).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmops.eval.catalog import SAMPLES_DIR, TaskSpec, catalog, harness_config

SAMPLES_KEY = SAMPLES_DIR / "answer-key.jsonl"


def _answer(target: Any, choices: list[str]) -> int:
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.strip().isdigit():
        return int(target.strip())
    return choices.index(target)


def build(specs: list[TaskSpec], folder: Path) -> list[dict[str, Any]]:
    """The key's items of ``specs`` read from ``folder``, in the tasks' order."""
    from llmops.eval import harness

    harness.quiet()
    loaded = harness.task_manager().load([harness_config(spec, folder) for spec in specs])["tasks"]
    items = []
    for spec in specs:
        task = loaded[spec.harness_name]
        for doc in task.eval_docs:
            query = task.doc_to_text(doc)
            item: dict[str, Any] = {"task": spec.name, "query": query}
            if spec.generative:
                item["target"] = str(task.doc_to_target(doc))
            else:
                choices = [str(choice) for choice in task.doc_to_choice(doc)]
                item.update(choices=choices, answer=_answer(task.doc_to_target(doc), choices))
            items.append(item)
    return items


def dumps(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)


def samples_key() -> str:
    """The key of every shipped sample, as ``llmops/eval/samples/answer-key.jsonl`` should hold it."""
    return dumps(build(list(catalog().values()), SAMPLES_DIR))
