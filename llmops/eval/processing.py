"""Document preparation that a task's template cannot do, referred to from a task config by its dotted name
(``process_docs: llmops.eval.processing.hellaswag_docs``), as lm-evaluation-harness's own ``!function`` hooks."""

from __future__ import annotations

import re
from typing import Any


def _clean(text: str) -> str:
    """HellaSwag's WikiHow artefacts removed, as lm-evaluation-harness's ``hellaswag/utils.py`` does."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """One HellaSwag item as the task reads it: ``query`` (the activity and the context), ``choices`` (the endings),
    ``gold`` (the label as a number)."""
    context = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return {
        "query": _clean(doc["activity_label"] + ": " + context),
        "choices": [_clean(ending) for ending in doc["endings"]],
        "gold": int(doc["label"]),
    }


def hellaswag_docs(dataset: Any) -> Any:
    """A ``datasets.Dataset`` of HellaSwag items with :func:`hellaswag_doc`'s fields added."""
    return dataset.map(hellaswag_doc)
