"""What a run found, per model and task, read from lm-evaluation-harness's output, and kept as ``results.json`` in the
run's folder (what the report, the Pushgateway and MLflow are made from). No harness import here."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmops.eval.catalog import TaskSpec


@dataclass
class Score:
    """One metric of a task: ``acc``, ``acc_norm``, ``exact_match_strict_match``, ... (0..1) and its standard
    error (the sample standard deviation over the items / sqrt(items))."""

    metric: str
    value: float
    stderr: float


@dataclass
class TaskResult:
    model: str
    task: str
    family: str
    items: int
    primary: str
    scores: list[Score]
    answers: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def score(self, metric: str | None = None) -> Score | None:
        wanted = metric or self.primary
        return next((score for score in self.scores if score.metric == wanted), None)


@dataclass
class ModelRun:
    """One model's part of a run: its tasks, and what evaluating it took."""

    model: str
    tasks: list[TaskResult] = field(default_factory=list)
    cost_usd: float = 0.0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    duration_s: float = 0.0


@dataclass
class RunResult:
    run_id: str
    status: str  #: ``complete``, ``interrupted`` or ``budget``
    started: float
    finished: float
    gateway: str
    options: dict[str, Any]
    models: list[ModelRun]
    gateway_info: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> RunResult:
        data = json.loads(path.read_text(encoding="utf-8"))
        models = []
        for model in data.pop("models"):
            tasks = [
                TaskResult(**{**task, "scores": [Score(**score) for score in task["scores"]]})
                for task in model.pop("tasks")
            ]
            models.append(ModelRun(**model, tasks=tasks))
        return cls(**data, models=models)


def metric_label(key: str) -> tuple[str, str] | None:
    """``("acc", "none")`` from the harness's ``"acc,none"``; None for stderr and other keys."""
    name, _, flt = key.partition(",")
    if not flt or name.endswith("_stderr"):
        return None
    return name, flt


def _label(name: str, flt: str) -> str:
    return name if flt == "none" else f"{name}_{flt.replace('-', '_')}"


def _stderr(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def _answer(sample: dict[str, Any], spec: TaskSpec) -> dict[str, Any]:
    """One item as the report shows it: the prompt, the model's answer (or pick), the right one, and whether it was
    right by the task's primary metric."""
    arguments = sample.get("arguments") or []
    item: dict[str, Any] = {
        "doc_id": sample.get("doc_id"),
        "correct": bool(sample.get(spec.primary_metric)),
        "prompt": str(arguments[0][0]) if arguments else "",
    }
    if spec.generative:
        response = sample.get("filtered_resps") or [""]
        raw = sample.get("resps") or [[""]]
        item.update(
            answer=str(response[0] if isinstance(response, list) else response),
            raw=str(raw[0][0] if raw and raw[0] else ""),
            target=str(sample.get("target")),
        )
        return item
    scores = [float(resp[0]) for resp in sample.get("filtered_resps") or []]
    choices = [str(arg[1]).strip() for arg in arguments]
    target = sample.get("target")
    if not isinstance(target, int):
        target = choices.index(str(target).strip()) if str(target).strip() in choices else None
    item.update(
        choices=choices,
        picked=max(range(len(scores)), key=scores.__getitem__) if scores else None,
        target=target,
        loglikelihoods=scores,
    )
    return item


def extract(spec: TaskSpec, model: str, output: dict[str, Any]) -> TaskResult:
    """The :class:`TaskResult` of ``spec`` in the harness's output (``simple_evaluate``'s dict)."""
    numbers = output["results"][spec.harness_name]
    samples = output.get("samples", {}).get(spec.harness_name, [])
    scores = []
    for key, value in numbers.items():
        parsed = metric_label(key)
        if parsed is None or not isinstance(value, int | float):
            continue
        name, flt = parsed
        stderr = numbers.get(f"{name}_stderr,{flt}")
        if not isinstance(stderr, int | float) or math.isnan(stderr):
            stderr = _stderr([float(s[name]) for s in samples if s.get("filter") == flt and name in s])
        scores.append(Score(_label(name, flt), float(value), float(stderr)))
    answers = [_answer(sample, spec) for sample in samples if sample.get("filter", "none") == spec.primary_filter]
    items = int(output.get("n-samples", {}).get(spec.harness_name, {}).get("effective", len(answers)))
    primary = _label(spec.primary_metric, spec.primary_filter)
    return TaskResult(model, spec.name, spec.family, items, primary, scores, answers)
