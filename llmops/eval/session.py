"""One invocation of ``llmops eval`` that runs (new or resumed): the run's folder and state, the progress display,
Ctrl-C and SIGTERM (the first stops the run cleanly, keeping every answer received; a second aborts), then the
results to the report, the Pushgateway and MLflow, and a summary on the terminal."""

from __future__ import annotations

import argparse
import importlib.util
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from llmops.eval import report
from llmops.eval.catalog import EvalError, select
from llmops.eval.guard import RunStopped
from llmops.eval.progress import Progress
from llmops.eval.results import RunResult
from llmops.eval.runner import Options, Run, RunState, new_run_id

EXIT_BUDGET = 3
EXIT_INTERRUPTED = 130


def model_config(path: str | None) -> dict[str, Any]:
    """Each model's section of the gateway's config, secrets left out."""
    if not path:
        return {}
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if "key" not in str(k).lower()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return {str(model.get("name")): clean(model) for model in data.get("models", []) if isinstance(model, dict)}


def _state(args: argparse.Namespace, runs_dir: Path) -> RunState:
    if args.resume:
        if args.every is not None:
            raise EvalError("--resume and --every do not go together")
        return RunState.load(runs_dir / args.resume)
    models = [name.strip() for item in args.models or [] for name in item.split(",") if name.strip()]
    if not models:
        raise EvalError("no model: give --models NAME[,NAME...] (the gateway's model names)")
    if args.max_concurrency < 1:
        raise EvalError("--max-concurrency must be at least 1")
    specs = select(args.tasks, args.suite or (None if args.tasks else "canary"))
    run_id = new_run_id() if args.every is not None or not args.run_id else args.run_id
    if (runs_dir / run_id / "state.json").exists():
        raise EvalError(
            f"run {run_id} exists in {runs_dir}: resume it with --resume {run_id}, or pick another --run-id"
        )
    options = Options(
        gateway=args.gateway,
        models=models,
        tasks=[spec.name for spec in specs],
        data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None,
        limit=args.limit,
        num_fewshot=args.num_fewshot,
        max_concurrency=args.max_concurrency,
        timeout_s=args.timeout,
    )
    return RunState(run_id, options)


@contextmanager
def _signals(run: Run) -> Iterator[None]:
    """The first SIGINT or SIGTERM stops the run cleanly; a second raises KeyboardInterrupt."""

    def handler(signum: int, frame: Any) -> None:
        if run.guard.stopped is not None:
            raise KeyboardInterrupt
        run.guard.interrupt()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _summary(console: Console, result: RunResult, folder: Path) -> None:
    table = Table(title=f"run {result.run_id}")
    for column in ("model", "task", "score", "± stderr", "items"):
        table.add_column(column)
    for model in result.models:
        for task in model.tasks:
            score = task.score()
            if score is not None:
                table.add_row(
                    model.model, task.task, f"{score.metric} {score.value:.4f}", f"{score.stderr:.4f}", str(task.items)
                )
    console.print(table)
    for model in result.models:
        console.print(f"{model.model}: ${model.cost_usd:.6f}, {model.requests} requests, {model.duration_s:.1f} s")
    console.print(f"report: {folder / 'report.md'} · {folder / 'report.html'}")


def evaluate(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("lm_eval") is None:
        raise EvalError("llmops eval needs lm-evaluation-harness: pip install 'llmops-stack[eval]'")
    runs_dir = Path(args.runs_dir).expanduser().resolve()
    state = _state(args, runs_dir)
    folder = runs_dir / state.run_id
    console = Console(stderr=True)
    console.print(
        f"llmops eval: run {state.run_id} ({', '.join(state.options.models)}; "
        f"{', '.join(state.options.tasks)}) in {folder}"
    )
    with Progress(console) as progress:
        run = Run(state, folder, args.api_key, args.budget_usd, model_config(args.gateway_config), progress)
        with _signals(run):
            try:
                result = run.execute()
            except RunStopped as stop:
                progress.log(f"[bold red]llmops eval: {stop.message.replace('RUN', state.run_id)}")
                return EXIT_INTERRUPTED if stop.reason == "interrupted" else EXIT_BUDGET
    artifacts = [*report.write(result, folder), folder / "results.json"]
    if args.pushgateway:
        from llmops.eval.push import push

        push(args.pushgateway, result)
        console.print(f"pushed to {args.pushgateway}")
    if args.mlflow:
        from llmops.eval.tracking import log

        ids = log(args.mlflow, result, artifacts)
        console.print(f"MLflow runs: {', '.join(ids)} ({args.mlflow})")
    _summary(console, result, folder)
    return 0
