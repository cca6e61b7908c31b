"""Experiment tracking with MLflow (``--mlflow URI``, the optional ``mlflow`` extra): one MLflow run per model of an
evaluation run, in the experiment ``llmops-eval``: parameters (model, gateway, tasks, options), metrics (each task's
scores and standard errors, items, cost, tokens, duration) and the report and results as artifacts. ``URI`` is a
tracking server (``http://mlflow:5000``) or a local file store (``./mlruns``, ``file:///path``): no server needed
(MLflow 3.7+ wants ``MLFLOW_ALLOW_FILE_STORE=true`` for a file store: set here unless the environment sets it)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from llmops.eval.catalog import EvalError
from llmops.eval.results import RunResult

EXPERIMENT = "llmops-eval"


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)


def _uri(uri: str) -> str:
    if "://" in uri and not uri.startswith("file:"):
        return uri  # a tracking server, or a database backend (sqlite:///mlflow.db needs the full mlflow package)
    # A folder: MLflow's file store. MLflow 3.7+ keeps it in maintenance mode and refuses it unless allowed: it is
    # what works with the light mlflow-skinny client and no server.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri if uri.startswith("file:") else Path(uri).expanduser().resolve().as_uri()


def log(uri: str, result: RunResult, artifacts: list[Path]) -> list[str]:
    """Log ``result`` to MLflow at ``uri``; returns the MLflow run ids."""
    try:
        import mlflow
    except ImportError as error:
        raise EvalError("--mlflow needs MLflow: pip install 'llmops-stack[mlflow]'") from error
    mlflow.set_tracking_uri(_uri(uri))
    mlflow.set_experiment(EXPERIMENT)
    ids = []
    for model in result.models:
        with mlflow.start_run(run_name=f"{result.run_id} {model.model}") as run:
            mlflow.set_tags({"llmops.run_id": result.run_id, "llmops.status": result.status})
            params = {
                "model": model.model,
                "gateway": result.gateway,
                "tasks": ",".join(task.task for task in model.tasks),
            }
            params.update({f"option.{k}": str(v)[:500] for k, v in result.options.items() if v is not None})
            mlflow.log_params(params)
            metrics = {
                "cost_usd": model.cost_usd,
                "requests": float(model.requests),
                "input_tokens": float(model.input_tokens),
                "output_tokens": float(model.output_tokens),
                "duration_s": model.duration_s,
            }
            for task in model.tasks:
                metrics[_key(f"{task.task}.items")] = float(task.items)
                for score in task.scores:
                    metrics[_key(f"{task.task}.{score.metric}")] = score.value
                    metrics[_key(f"{task.task}.{score.metric}_stderr")] = score.stderr
            mlflow.log_metrics(metrics)
            for path in artifacts:
                mlflow.log_artifact(str(path))
            ids.append(run.info.run_id)
    return ids
