"""The ``llmops`` command line: one console script with a subcommand per component.

Each subcommand imports its component lazily, so ``llmops gateway`` never pays for what the monitors import.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from llmops.config import ConfigError
from llmops.eval.catalog import EvalError
from llmops.simulator.errors import SimulatorSettingsError

# What a command raises for a mistake of its user: printed as one line (no traceback), exit status 2.
USAGE_ERRORS = (ConfigError, SimulatorSettingsError, EvalError)


def _runs(module: str) -> Callable[[argparse.Namespace], int]:
    """The handler of a command whose component ``module`` has ``run(args)``: imported when the command runs."""

    def handler(args: argparse.Namespace) -> int:
        return int(importlib.import_module(module).run(args))

    return handler


def _add_gateway(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gateway", help="run the OpenAI-compatible gateway", description="Run the gateway.")
    p.add_argument("--config", required=True, help="YAML configuration file (see docs/configuration.md)")
    p.add_argument("--host", help="listen address (default: server.host from the config)")
    p.add_argument("--port", type=int, help="listen port (default: server.port from the config)")
    p.add_argument(
        "--workers",
        type=_worker_count,
        metavar="N",
        help="worker processes serving the port, or auto (one per CPU); default: server.workers from the config (1)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(handler=_run_gateway)


def _worker_count(value: str) -> int | str:
    from llmops.config_server import parse_workers

    try:
        return parse_workers(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _run_gateway(args: argparse.Namespace) -> int:
    from gateway.workers import run_gateway

    return run_gateway(args.config, host=args.host, port=args.port, log_level=args.log_level, workers=args.workers)


def _add_monitors(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitors",
        help="run a monitors worker (judges over sampled traffic), or show one request's results",
        description="Run a monitors worker in the Redis consumer group (several may run side by side), or "
        "`llmops monitors show REQUEST_ID` to print every judge result kept for one sampled request.",
    )
    p.add_argument("--config", help="YAML configuration file (the gateway's; its monitors and redis sections)")
    p.add_argument("--metrics-port", type=int, help="port of /metrics (default: monitors.metrics_port, 9101)")
    p.add_argument("--metrics-host", help="listen address of /metrics (default: monitors.metrics_host, 0.0.0.0)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="print every judge result kept for one sampled request")
    show.add_argument("request_id", help="the request id (the x-request-id response header)")
    show.add_argument("--config", dest="show_config", help="config file to take redis.url from")
    show.add_argument("--redis-url", help="Redis URL (default: redis.url from --config, or redis://127.0.0.1:6379/0)")
    p.set_defaults(handler=_run_monitors)


def _run_monitors(args: argparse.Namespace) -> int:
    if args.action == "show":
        from monitors.server import show

        redis_url, source = args.redis_url, "--redis-url"
        config_path = args.show_config or args.config
        if redis_url is None and config_path:
            from llmops.config import load_config

            config = load_config(config_path)
            if config.redis is None:
                raise ConfigError(f"{config_path} has no redis section: give --redis-url")
            redis_url, source = config.redis.url, f"redis.url of {config_path}"
        return show(args.request_id, redis_url or "redis://127.0.0.1:6379/0", source if redis_url else "the default")
    if not args.config:
        raise ConfigError("--config FILE is required to run a monitors worker")
    from monitors.server import serve

    serve(args.config, metrics_port=args.metrics_port, log_level=args.log_level, metrics_host=args.metrics_host)
    return 0


def _add_drift(sub: argparse._SubParsersAction) -> None:
    from monitors.drift.pin import add_arguments

    p = sub.add_parser(
        "drift",
        help="drift detection: pin a model's reference window",
        description="Drift detection (docs/drift.md). `llmops drift pin` pins a model's reference: a time range of "
        "its sampled traffic, or a file of feature rows.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    pin = actions.add_parser("pin", help="pin a model's drift reference: a time range of sampled traffic, or a file")
    add_arguments(pin)
    pin.set_defaults(handler=_runs("monitors.drift.pin"))


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from llmops.eval.command import add_arguments

    p = sub.add_parser(
        "eval",
        help="run benchmark tasks (lm-evaluation-harness) through the gateway; results to reports, Prometheus, MLflow",
        description="Evaluate the gateway's models on benchmark tasks (docs/eval.md). Needs the eval extra: "
        "pip install 'llmops-stack[eval]'.",
    )
    add_arguments(p)
    p.set_defaults(handler=_runs("llmops.eval.command"))


def _add_slo(sub: argparse._SubParsersAction) -> None:
    from llmops.slo import add_arguments

    p = sub.add_parser(
        "slo",
        help="quality SLOs: generate their Prometheus rules from the config",
        description="Quality SLOs (docs/observability.md). `llmops slo rules --config FILE` prints the recording and "
        "alert rules of models[].slos (prometheus/rules/quality_slo.yml); --check FILE compares instead.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    rules = actions.add_parser("rules", help="print the Prometheus rules of the config's quality SLOs")
    add_arguments(rules)
    rules.set_defaults(handler=_runs("llmops.slo"))


def _add_judges(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "judges",
        help="LLM judges: check them against a labelled set",
        description="`llmops judges calibrate` runs the configured judge prompts (pairwise, single-answer) over a "
        "labelled set of English and Korean pairs and graded answers, through the gateway, and reports their "
        "agreement with the labels (docs/review.md).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    calibrate = actions.add_parser("calibrate", help="judge agreement with a labelled set (the shipped one by default)")
    calibrate.add_argument(
        "--config", required=True, help="YAML configuration file (monitors.judge_model, gateway_url)"
    )
    calibrate.add_argument("--set", dest="set_path", help="a labelled set in the shipped set's format")
    calibrate.add_argument(
        "--judges", default="pairwise,llm_single", help="which judges: pairwise, llm_single (default both)"
    )
    calibrate.add_argument("--json", action="store_true", help="print the report as JSON")
    calibrate.add_argument(
        "--min-agreement", type=float, help="exit 1 when the pairwise agreement without ties is below this (0-1)"
    )
    calibrate.set_defaults(handler=_run_judges_calibrate)


def _run_judges_calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from llmops.config import load_config
    from monitors.review.calibrate import run

    judges = {name.strip() for name in args.judges.split(",") if name.strip()}
    unknown = judges - {"pairwise", "llm_single"}
    if unknown:
        raise ConfigError(f"--judges: unknown judges {', '.join(sorted(unknown))} (pairwise, llm_single)")
    set_path = Path(args.set_path) if args.set_path else None
    return run(load_config(args.config), set_path, judges, args.json, args.min_agreement)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    from llmops.simulator.command import add_arguments

    p = sub.add_parser(
        "simulate",
        help="run a vLLM-like upstream (no GPU), or with --api anthropic an Anthropic-like one, for demos and tests",
    )
    add_arguments(p)
    p.set_defaults(handler=_runs("llmops.simulator.command"))


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole stack on this machine (Redis, simulators, gateway, monitors), send traffic, summarise",
        description="The whole stack on embedded defaults, no GPU, no Docker: starts Redis, a vLLM-like simulator, a "
        "judge-model simulator, the gateway and a monitors worker, sends traffic with the openai SDK, and prints what "
        "the gateway and the monitors measured (latency, tokens, cost, judge scores, drift).",
    )
    p.add_argument("--requests", type=int, default=300, help="how many requests to send (default 300)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight at once (default 16)")
    p.add_argument("--gateway-port", type=int, default=8080)
    p.add_argument("--simulator-port", type=int, default=8000)
    p.add_argument("--once", action="store_true", help="stop everything after the summary instead of staying up")
    p.add_argument(
        "--gateway-workers",
        type=int,
        default=1,
        metavar="N",
        help="run the gateway as N worker processes on one port (llmops gateway --workers N; default 1)",
    )
    p.add_argument(
        "--redis",
        default="auto",
        choices=["auto", "server", "local", "embedded"],
        help="auto (default): a private redis-server if installed, else the Redis on 127.0.0.1:6379, else an "
        "embedded in-process stand-in (demo only)",
    )
    p.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from llmops.demo import run_demo

    return run_demo(
        requests=args.requests,
        concurrency=args.concurrency,
        gateway_port=args.gateway_port,
        simulator_port=args.simulator_port,
        stay_up=not args.once,
        redis=args.redis,
        gateway_workers=args.gateway_workers,
    )


def _add_gpu_exporter(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gpu-exporter",
        help="export NVML GPU readings to Prometheus (on a GPU host)",
        description="Prometheus exporter of NVML readings (llm_gpu_* series). Without GPUs it exports llm_gpu_up 0.",
    )
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=9835)
    p.set_defaults(handler=_run_gpu_exporter)


def _run_gpu_exporter(args: argparse.Namespace) -> int:
    from llmops.gpu_exporter import serve

    serve(host=args.host, port=args.port)
    return 0


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_gateway,
    _add_monitors,
    _add_drift,
    _add_judges,
    _add_slo,
    _add_simulate,
    _add_eval,
    _add_demo,
    _add_gpu_exporter,
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``llmops`` with every subcommand."""
    parser = argparse.ArgumentParser(prog="llmops", description="llmops-stack: gateway, monitors and tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llmops`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except USAGE_ERRORS as error:
        print(f"llmops {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
