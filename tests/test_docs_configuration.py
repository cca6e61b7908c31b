"""docs/configuration.md documents every field of the config models (README: "lists every field")."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from llmops.config import Config

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def _fields(model: type[BaseModel], prefix: str = "", seen: set[type] | None = None) -> list[str]:
    seen = set() if seen is None else seen
    if model in seen:
        return []
    seen.add(model)
    names = []
    for name, field in model.model_fields.items():
        names.append(prefix + name)
        for nested in _models_in(field.annotation):
            names += _fields(nested, f"{prefix}{name}.", seen)
    return names


def _documented(path: str, text: str) -> bool:
    """The field's name, or a dotted tail of its path (``timeouts.connect``), appears in backticks."""
    parts = path.split(".")
    tails = (".".join(parts[i:]) for i in range(len(parts)))
    return any(re.search(rf"`{re.escape(tail)}[`.]", text) for tail in tails)


def test_every_config_field_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [path for path in _fields(Config) if not _documented(path, text)]
    assert not missing, f"docs/configuration.md does not document: {', '.join(missing)}"
