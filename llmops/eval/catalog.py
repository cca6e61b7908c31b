"""The task catalogue of ``llmops eval``: each task's config (``llmops/eval/tasks/NAME.yaml``, shipped with the
package) and where its data comes from.

A task config is lm-evaluation-harness's own task schema (``config``) plus what the catalogue needs: the family, the
source dataset, its fields, and ``splits`` (``test``: the split scored, ``fewshot``: where few-shot examples come
from). Data is read from local files only, ``DIR/NAME/SPLIT.jsonl`` (or ``.parquet``), in the source dataset's own
field layout: ``DIR`` is the shipped samples (``llmops/eval/samples``, a handful of items written for this project),
or the full datasets a user downloaded (``--data-dir``, or the environment variable ``LLMOPS_EVAL_DATA``). Nothing
is downloaded. This module does not import lm-evaluation-harness.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
TASKS_DIR = HERE / "tasks"
SAMPLES_DIR = HERE / "samples"
#: Environment variable naming a folder of full datasets (same layout as the samples); ``--data-dir`` wins over it.
DATA_ENV = "LLMOPS_EVAL_DATA"
#: Prefix of the catalogue's tasks inside lm-evaluation-harness (its own registry has tasks of the plain names).
HARNESS_PREFIX = "llmops_"
_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class EvalError(Exception):
    """A mistake of the user of ``llmops eval`` (an unknown task, a missing data file, ...): one line, exit 2."""


@dataclass(frozen=True)
class TaskSpec:
    """One task of the catalogue."""

    name: str
    family: str
    source: str
    fields: str
    splits: dict[str, str]
    config: dict[str, Any] = field(repr=False)
    primary_metric: str = "acc"  #: the score the report leads with, and the per-item verdict
    primary_filter: str = "none"  #: the harness's filter of that metric (generative tasks have several)

    @property
    def generative(self) -> bool:
        """Answered in free text (through chat completions), not scored by log-likelihoods."""
        return self.config.get("output_type") == "generate_until"

    @property
    def harness_name(self) -> str:
        return HARNESS_PREFIX + self.name


@cache
def catalog() -> dict[str, TaskSpec]:
    """Every task of ``llmops/eval/tasks/*.yaml``, by name."""
    specs = {}
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        specs[path.stem] = TaskSpec(
            name=path.stem,
            family=data["family"],
            source=data["source"],
            fields=data["fields"],
            splits=dict(data["splits"]),
            config=data["config"],
            primary_metric=data.get("primary", {}).get("metric", "acc"),
            primary_filter=data.get("primary", {}).get("filter", "none"),
        )
    return specs


#: Named sets of tasks. ``canary``: small and fast, for ``--every`` (one English, one Korean, one generative);
#: ``sample``: every task of the catalogue.
SUITES: dict[str, tuple[str, ...]] = {
    "canary": ("arc_challenge", "kmmlu", "gsm8k"),
    "sample": tuple(sorted(catalog())),
}


def select(tasks: list[str] | None, suite: str | None) -> list[TaskSpec]:
    """The tasks named (comma lists allowed), else the suite's; raises :class:`EvalError` for unknown names."""
    known = catalog()
    names: list[str] = []
    if suite is not None:
        if suite not in SUITES:
            raise EvalError(f"--suite {suite}: unknown suite (known: {', '.join(sorted(SUITES))})")
        names.extend(SUITES[suite])
    for item in tasks or []:
        names.extend(name.strip() for name in item.split(",") if name.strip())
    if not names:
        raise EvalError("no task: give --tasks NAME[,NAME...] or --suite NAME")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise EvalError(f"unknown task {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return [known[name] for name in dict.fromkeys(names)]


def data_dir(given: str | Path | None) -> Path:
    """The folder data is read from: ``given``, else ``$LLMOPS_EVAL_DATA``, else the shipped samples."""
    chosen = given or os.environ.get(DATA_ENV)
    return Path(chosen).expanduser().resolve() if chosen else SAMPLES_DIR


def _split_file(folder: Path, split: str) -> Path | None:
    for suffix in _FORMATS:
        path = folder / f"{split}{suffix}"
        if path.is_file():
            return path
    return None


def _resolve(value: Any) -> Any:
    """A dotted name of a function of this package (``llmops.eval.processing.NAME``) as the function itself."""
    if isinstance(value, str) and value.startswith("llmops.eval."):
        module, _, name = value.rpartition(".")
        return getattr(importlib.import_module(module), name)
    return value


def harness_config(spec: TaskSpec, folder: Path) -> dict[str, Any]:
    """lm-evaluation-harness's task config of ``spec`` reading its data from ``folder/NAME/``."""
    task_dir = folder / spec.name
    test_split = spec.splits["test"]
    test_file = _split_file(task_dir, test_split)
    if test_file is None:
        raise EvalError(
            f"task {spec.name}: no data file {task_dir}/{test_split}.jsonl (or .parquet); "
            f"see docs/eval.md, 'Full datasets' ({spec.source}, fields: {spec.fields})"
        )
    files = {test_split: str(test_file)}
    config: dict[str, Any] = {key: _resolve(value) for key, value in spec.config.items()}
    fewshot = spec.splits.get("fewshot")
    fewshot_file = _split_file(task_dir, fewshot) if fewshot else None
    if fewshot and fewshot_file is not None and fewshot_file.suffix == test_file.suffix:
        files[fewshot] = str(fewshot_file)
        config["fewshot_split"] = fewshot
    return {
        "task": spec.harness_name,
        "dataset_path": _FORMATS[test_file.suffix],
        "dataset_kwargs": {"data_files": files},
        "test_split": test_split,
        **config,
        "metadata": {"version": 1.0, "llmops_task": spec.name, "source": spec.source},
    }
