"""The command line of ``gateway_overhead.py``: its flags, and one run (steps, soak or A/B) from start to clean-up."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .ab import overall_ratios, print_matrix, run_matrix, start_matrix
from .configs import CONFIGS
from .load import MODEL, SOAK_MAX_S, STEP_MAX_S, load_main
from .processes import BenchRedis, Gateway, Upstream, log, parse_cpus
from .report import machine_meta, print_results
from .runner import Runner, run_steps
from .soak import print_soak, run_soak


def parse_args(argv: list[str], description: str | None = None) -> argparse.Namespace:
    """The flags of ``gateway_overhead.py`` (``description``: its docstring, for ``--help``)."""
    ap = argparse.ArgumentParser(
        prog="gateway_overhead.py", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=15.0, help="measured seconds per step (default 15, max 60)")
    ap.add_argument("--ol-warmup", type=float, default=2.0, help="open-loop warm-up seconds per step, not measured")
    ap.add_argument("--warmup", type=float, default=4.0, help="closed-loop warm-up through the gateway at start")
    ap.add_argument("--rates", default="100,300", help="fixed rates, requests/s, comma-separated")
    ap.add_argument("--conns", default="16", help="wrk connections for the max-throughput steps, comma-separated")
    ap.add_argument("--only", default="", help="only these loads, e.g. 'r300,max'")
    ap.add_argument("--no-stream", action="store_true", help="non-streaming steps only")
    ap.add_argument("--no-direct", action="store_true", help="gateway steps only (no baseline: for A/B of builds)")
    ap.add_argument("--stream-only", action="store_true", help="streaming steps only")
    ap.add_argument("--soak", type=float, default=0.0, metavar="SECONDS", help="soak mode: RSS over a long run")
    ap.add_argument("--soak-rate", type=float, default=1000.0, help="soak: requests/s (default 1000)")
    ap.add_argument("--soak-stream-every", type=int, default=2, help="soak: every Nth request streams (default 2)")
    ap.add_argument("--soak-interval", type=float, default=5.0, help="soak: seconds between RSS samples")
    ap.add_argument("--gw-cpus", default="0", help="taskset CPU list for the gateway ('' = no pinning)")
    ap.add_argument("--load-cpus", default="1", help="CPU list for this script, the load and the upstream")
    ap.add_argument("--gw-port", type=int, default=18080)
    ap.add_argument(
        "--upstream",
        choices=("auto", "nginx", "nginx-one-write", "simulate"),
        default="auto",
        help="the fake upstream: gwbench's nginx (auto, when there), the same with each stream in one write "
        "(overhead/one_write.py), or llmops simulate",
    )
    ap.add_argument("--upstream-port", type=int, default=18000)
    ap.add_argument(
        "--gwbench",
        default=os.environ.get("GWBENCH_DIR"),
        help="folder of the gwbench harness, whose nginx is the near-zero-cost upstream (default: $GWBENCH_DIR; "
        "without it the upstream is llmops simulate)",
    )
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--gateway-env", action="append", default=[], metavar="K=V", help="extra env for the gateway")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--no-wrk", action="store_true", help="max throughput with our closed-loop generator")
    ap.add_argument("--noise-max", type=float, default=0.15, help="foreign CPU (cores) that makes a step noisy")
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a noisy step (the quietest attempt is kept)")
    ap.add_argument("--quiet-wait", type=float, default=20.0, help="max seconds to wait for a quiet box per step")
    ap.add_argument("--json", metavar="OUT", help="write every number to this JSON file")
    ap.add_argument(
        "--baseline-ref",
        metavar="GIT_REF",
        help="A/B: also run a gateway from this commit (git worktree) and report CPU per request new/old",
    )
    ap.add_argument(
        "--ab-rounds", type=int, default=3, metavar="N", help="A/B: rounds, the order alternating (default 3)"
    )
    ap.add_argument(
        "--baseline-port",
        type=int,
        default=0,
        metavar="PORT",
        help="A/B: the old gateway's port, then one per further config (default: after the new gateways' ports)",
    )
    ap.add_argument(
        "--configs",
        default="bare",
        help="gateway configurations, comma-separated: bare (no keys, no Redis), production (keys with rpm/tpm "
        "limits and a budget in Redis, 10%% sampling); two of them run side by side with the ratio production/bare",
    )
    ap.add_argument("--redis-port", type=int, default=18379, help="the production config's private redis-server")
    a = ap.parse_args(argv)
    a.rates = [float(x) for x in a.rates.split(",") if x.strip()]
    a.conns = [int(x) for x in a.conns.split(",") if x.strip()]
    a.only = {x.strip() for x in a.only.split(",") if x.strip()}
    if not 0 < a.duration <= STEP_MAX_S or a.ol_warmup > 10 or a.warmup > 30:
        ap.error(f"bounded loads only: --duration <= {STEP_MAX_S}, --ol-warmup <= 10, --warmup <= 30")
    if a.soak < 0 or a.soak > SOAK_MAX_S:
        ap.error(f"--soak must be <= {SOAK_MAX_S} s")
    a.configs = [x.strip() for x in a.configs.split(",") if x.strip()]
    if not a.configs or any(c not in CONFIGS for c in a.configs) or len(set(a.configs)) != len(a.configs):
        ap.error(f"--configs: one or more of {', '.join(CONFIGS)}")
    a.side_by_side = bool(a.baseline_ref) or len(a.configs) > 1
    if a.side_by_side and (a.soak or not 1 <= a.ab_rounds <= 20):
        ap.error("--baseline-ref or several --configs: not with --soak, and 1 <= --ab-rounds <= 20")
    a.baseline_port = a.baseline_port or a.gw_port + len(a.configs)
    return a


def run(a: argparse.Namespace, console: Any, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Start the upstream and the gateway(s), run the steps, the soak or the A/B, print, return every number."""
    upstream = Upstream.running(a, console, tmp, stack)
    meta: dict[str, Any] = {}
    extra_pids: list[int] = []
    if a.side_by_side:
        gateways, meta, extra_pids = start_matrix(a, console, upstream, tmp, stack)
    else:
        redis_url = None
        if a.configs[0] == "production":
            redis = BenchRedis(a.redis_port, a.load_cpus, tmp)
            stack.callback(redis.stop)
            redis_url, extra_pids = redis.url(0), [redis.proc.pid]
        gw = Gateway(a, upstream, tmp, config=a.configs[0], redis_url=redis_url)
        stack.callback(gw.stop)
        gateways = {"gateway": gw}
        gw.launch(console, f"gateway ({a.configs[0]})")
    runner = Runner(a, console, upstream, gateways, extra_pids)
    result: dict[str, Any] = {"meta": machine_meta(a, upstream)}
    if a.soak:
        result["soak"] = run_soak(a, console, runner)
        print_soak(console, result["soak"])
    elif a.side_by_side:
        side = {**meta, "rounds": a.ab_rounds, **run_matrix(a, console, runner)}
        side["overall"] = overall_ratios(side["summary"])
        result["side_by_side"] = side
        print_matrix(console, side)
    else:
        result.update(run_steps(a, console, runner))
        print_results(console, result, a)
    return result


RunFn = Callable[[argparse.Namespace, Any, Path, contextlib.ExitStack], dict[str, Any]]


def run_session(a: argparse.Namespace, run_fn: RunFn, prefix: str, width: int = 200) -> int:
    """What every bench entry point does around its run: a rich console, this script (progress display, /proc
    sampling) off the gateway's CPU (``--load-cpus``), a temporary folder removed at the end, SIGTERM taken as Ctrl+C,
    then ``run_fn(a, console, tmp, stack)`` (its clean-ups go on ``stack``) and its result written to ``--json``."""
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else width)
    if a.load_cpus:
        with contextlib.suppress(OSError, ValueError):
            os.sched_setaffinity(0, parse_cpus(a.load_cpus))
    tmp = Path(tempfile.mkdtemp(prefix=prefix))

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    with contextlib.ExitStack() as stack:  # unwinds in reverse: gateways, upstream, baseline worktree, temp folder
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        try:
            result = run_fn(a, console, tmp, stack)
            if a.json:
                Path(a.json).write_text(json.dumps(result, indent=1))
                log(console, f"results written to {a.json}")
        except KeyboardInterrupt:
            console.print("[red]interrupted")
            return 130
    return 0


def main(argv: list[str], description: str | None = None) -> int:
    """``_load ...`` runs the load generator; anything else is a benchmark run."""
    if argv[:1] == ["_load"]:
        load_main(argv[1:])
        return 0
    return run_session(parse_args(argv, description), run, "gw-overhead-")
