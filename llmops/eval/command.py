"""``llmops eval``: benchmark tasks through the gateway, results where ops look (docs/eval.md).

    llmops eval --gateway URL --models NAME[,NAME] [--tasks T,T | --suite canary|sample] [--data-dir DIR]
                [--pushgateway URL] [--mlflow URI] [--max-concurrency N] [--budget-usd X] [--every 6h]
    llmops eval --resume RUN_ID            # a stopped run, its completed items not asked again
    llmops eval tasks                      # the catalogue
    llmops eval answer-key [-o FILE]       # the answer key of tasks, for llmops simulate --skill

Exit status: 0 complete, 2 a usage error, 3 stopped at the budget, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from llmops.eval.catalog import SUITES, catalog, data_dir, select

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """Seconds of ``90s``, ``30m``, ``6h``, ``1d`` (or a plain number of seconds)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not found or float(found.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: want a positive duration such as 90s, 30m, 6h or 1d")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("--gateway", default=env("LLMOPS_GATEWAY", "http://127.0.0.1:8080"), help="gateway base URL")
    p.add_argument("--models", action="append", metavar="NAME[,NAME]", help="the gateway's model names to evaluate")
    p.add_argument("--tasks", action="append", metavar="TASK[,TASK]", help="tasks of the catalogue (llmops eval tasks)")
    p.add_argument("--suite", choices=sorted(SUITES), help="a named set of tasks (default: canary, without --tasks)")
    p.add_argument(
        "--data-dir",
        help="full datasets, DIR/TASK/SPLIT.jsonl or .parquet (default: $LLMOPS_EVAL_DATA, else the shipped samples)",
    )
    p.add_argument("--api-key", default=env("LLMOPS_EVAL_API_KEY"), help="gateway key (env LLMOPS_EVAL_API_KEY)")
    p.add_argument("--max-concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    p.add_argument("--budget-usd", type=float, help="stop once this invocation's eval traffic cost that much")
    p.add_argument("--limit", type=int, help="score only the first N items of each task")
    p.add_argument("--num-fewshot", type=int, help="few-shot examples per prompt (default: each task's, mostly 0)")
    p.add_argument("--timeout", type=int, default=300, help="seconds per request (default 300)")
    p.add_argument("--runs-dir", default=env("LLMOPS_EVAL_RUNS", "eval-runs"), help="where runs are kept")
    p.add_argument("--run-id", help="name of a new run (default: the time and a random suffix)")
    p.add_argument("--resume", metavar="RUN_ID", help="resume a stopped run (its options are the run's)")
    p.add_argument("--pushgateway", default=env("LLMOPS_PUSHGATEWAY"), help="Prometheus Pushgateway URL")
    p.add_argument("--mlflow", metavar="URI", help="log each model's run to MLflow (a server URL or a folder)")
    p.add_argument("--gateway-config", help="the gateway's YAML config, to show each model's section in the report")
    p.add_argument("--every", type=duration, metavar="DURATION", help="run again every DURATION (30m, 6h, 1d)")
    p.add_argument("--times", type=int, help="with --every: stop after N runs")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("tasks", help="list the task catalogue and suites")
    key = actions.add_parser("answer-key", help="write the answer key of tasks (for llmops simulate --skill)")
    key.add_argument("-o", "--output", help="file to write (default: standard output)")
    key.add_argument("--check", action="store_true", help="exit 1 if llmops/eval/samples/answer-key.jsonl is stale")


def _list_tasks() -> int:
    for spec in catalog().values():
        api = "chat (generative)" if spec.generative else "completions (log-likelihood)"
        print(f"{spec.name:16} {spec.family:14} {api:30} {spec.source}")
    for name, tasks in SUITES.items():
        print(f"suite {name}: {', '.join(tasks)}")
    return 0


def _answer_key(args: argparse.Namespace) -> int:
    from llmops.eval import answer_key

    if args.check:
        stale = answer_key.SAMPLES_KEY.read_text(encoding="utf-8") != answer_key.samples_key()
        print(f"{answer_key.SAMPLES_KEY}: {'stale (llmops eval answer-key -o FILE)' if stale else 'current'}")
        return 1 if stale else 0
    specs = select(args.tasks, args.suite or (None if args.tasks else "sample"))
    text = answer_key.dumps(answer_key.build(specs, data_dir(args.data_dir)))
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "tasks":
        return _list_tasks()
    if args.action == "answer-key":
        return _answer_key(args)
    from llmops.eval.session import EXIT_INTERRUPTED, evaluate

    if args.every is None:
        return evaluate(args)
    count = 0
    while True:
        started = time.monotonic()
        status = evaluate(args)
        count += 1
        if status == EXIT_INTERRUPTED or (args.times and count >= args.times):
            return status
        wait = max(0.0, args.every - (time.monotonic() - started))
        print(f"llmops eval: next run in {wait:.0f} s", file=sys.stderr)
        try:
            time.sleep(wait)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
