"""Results to a Prometheus Pushgateway, where Prometheus scrapes them (``honor_labels``; job ``pushgateway`` in
``prometheus/prometheus.yml``). Series (docs/metrics.md, *Evaluation*):

- per model and task (grouping key ``{job="llmops_eval", model, task}``; each push replaces the group):
  ``llm_eval_score{model,task,metric}``, ``llm_eval_score_stderr``, ``llm_eval_previous_score``,
  ``llm_eval_previous_score_stderr`` (the group's values before this push: the previous run),
  ``llm_eval_items{model,task}``, ``llm_eval_run_timestamp_seconds{model,task}``;
- per model (grouping key ``{job="llmops_eval", model}``): ``llm_eval_run_cost_usd{model}``,
  ``llm_eval_run_requests{model}``, ``llm_eval_run_tokens{model,type}`` (``input``, ``output``),
  ``llm_eval_run_duration_seconds{model}``.

``EvalAccuracyRegression`` (``prometheus/rules/eval.yml``) compares the score with the previous one.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from llmops.eval.results import ModelRun, RunResult, TaskResult

JOB = "llmops_eval"


def _url(pushgateway: str) -> str:
    return pushgateway if "://" in pushgateway else f"http://{pushgateway}"


def previous_scores(pushgateway: str, timeout: float = 10.0) -> dict[tuple[str, str, str], tuple[float, float]]:
    """What the Pushgateway holds now: ``(model, task, metric) -> (score, stderr)``."""
    with urllib.request.urlopen(_url(pushgateway).rstrip("/") + "/api/v1/metrics", timeout=timeout) as response:
        groups = json.loads(response.read())["data"]
    found: dict[tuple[str, str, str], list[float]] = {}
    for group in groups:
        if group.get("labels", {}).get("job") != JOB:
            continue
        for name, slot in (("llm_eval_score", 0), ("llm_eval_score_stderr", 1)):
            for sample in group.get(name, {}).get("metrics", []):
                labels = sample["labels"]
                key = (labels.get("model", ""), labels.get("task", ""), labels.get("metric", ""))
                found.setdefault(key, [float("nan"), 0.0])[slot] = float(sample["value"])
    return {key: (values[0], values[1]) for key, values in found.items() if values[0] == values[0]}


def _task_registry(task: TaskResult, previous: dict[tuple[str, str, str], tuple[float, float]], when: float) -> Any:
    registry = CollectorRegistry()
    labels = ["model", "task", "metric"]
    score = Gauge("llm_eval_score", "Score of the last evaluation run (0..1)", labels, registry=registry)
    stderr = Gauge("llm_eval_score_stderr", "Standard error of llm_eval_score", labels, registry=registry)
    before = Gauge("llm_eval_previous_score", "llm_eval_score of the run before the last", labels, registry=registry)
    before_stderr = Gauge(
        "llm_eval_previous_score_stderr", "llm_eval_score_stderr of the run before the last", labels, registry=registry
    )
    for item in task.scores:
        score.labels(task.model, task.task, item.metric).set(item.value)
        stderr.labels(task.model, task.task, item.metric).set(item.stderr)
        prior = previous.get((task.model, task.task, item.metric))
        if prior is not None:
            before.labels(task.model, task.task, item.metric).set(prior[0])
            before_stderr.labels(task.model, task.task, item.metric).set(prior[1])
    Gauge("llm_eval_items", "Items scored in the last run", ["model", "task"], registry=registry).labels(
        task.model, task.task
    ).set(task.items)
    Gauge("llm_eval_run_timestamp_seconds", "When the last run ended", ["model", "task"], registry=registry).labels(
        task.model, task.task
    ).set(when)
    return registry


def _model_registry(run: ModelRun) -> Any:
    registry = CollectorRegistry()
    Gauge("llm_eval_run_cost_usd", "Cost of the last run's evaluation traffic", ["model"], registry=registry).labels(
        run.model
    ).set(run.cost_usd)
    Gauge("llm_eval_run_requests", "Requests of the last run", ["model"], registry=registry).labels(run.model).set(
        run.requests
    )
    tokens = Gauge("llm_eval_run_tokens", "Tokens of the last run", ["model", "type"], registry=registry)
    tokens.labels(run.model, "input").set(run.input_tokens)
    tokens.labels(run.model, "output").set(run.output_tokens)
    Gauge("llm_eval_run_duration_seconds", "Duration of the last run", ["model"], registry=registry).labels(
        run.model
    ).set(run.duration_s)
    return registry


def push(pushgateway: str, result: RunResult) -> None:
    """Push every model's and task's results of ``result`` (a complete run)."""
    previous = previous_scores(pushgateway)
    url = _url(pushgateway)
    for model in result.models:
        for task in model.tasks:
            registry = _task_registry(task, previous, result.finished)
            push_to_gateway(url, job=JOB, registry=registry, grouping_key={"model": model.model, "task": task.task})
        push_to_gateway(url, job=JOB, registry=_model_registry(model), grouping_key={"model": model.model})
