"""docs/configuration.md documents every field of the config models (README: "lists every field")."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from llmops.config import Config

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


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


def test_the_vllm_guide_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The configuration a user copies from docs/vllm.md starts the gateway as written (no unset variable without a
    default, no fallback to a model it does not define)."""
    from llmops.config import load_config

    text = (Path(__file__).resolve().parents[2] / "docs" / "vllm.md").read_text()
    block = re.search(r"## 3\. Gateway configuration\n\n```yaml\n(.*?)```", text, re.S)
    assert block, "docs/vllm.md lost its gateway configuration example"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-example")
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(block.group(1))
    config = load_config(path)
    assert [m.name for m in config.models] == ["llama-3-8b", "gpt-4o-mini"]
    assert config.models[0].fallbacks == ["gpt-4o-mini"]
