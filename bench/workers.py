#!/usr/bin/env python3
"""Gateway workers benchmark: one process against two workers, and what multiprocess metrics cost, measured in one
run. Not part of the test suite.

    .venv/bin/python bench/workers.py                            # 3 gateways x 6 steps of 10 s: ~5 min on a quiet box
    .venv/bin/python bench/workers.py --duration 2 --ol-warmup 0.5 --warmup 1 --quiet-wait 1 --retries 0  # runs?
    .venv/bin/python bench/workers.py --json /tmp/workers.json

Gateways (--variants; single,mp1,w2 by default), one after the other, on the same port, the same upstream and the
same CPUs (--cpus, "0,1"):

  single  ``llmops gateway``: one process, the plain registry (today's gateway, exemplars possible)
  mp1     ``python -m gateway.workers --workers 1``: a supervisor and one worker whose series are prometheus_client
          multiprocess files, merged at each scrape (what every worker of a multi-worker gateway does)
  w2      ``llmops gateway --workers 2``: a supervisor and two workers on one port (SO_REUSEPORT)
  w2pin   the same with ``server.pin_workers``: each worker on one of the CPUs

Everything is pinned with taskset to --cpus: the gateway's processes, the upstream (gwbench's nginx when GWBENCH_DIR
names it, else ``llmops simulate``) and the load generator share those cores, so a second worker competes with the
load and the upstream for them; the output says so. For each gateway, non-streaming and streaming: open loop at the
fixed rates (--rates, 1000 and 2000 requests/s, our generator) and max throughput (closed loop, --conns
connections; wrk when installed). Per step: requests/s, latency, and the gateway's CPU per request (utime + stime of
its whole process tree from /proc, over the step, divided by the requests completed) and its wake-ups per request
(voluntary context switches, the same way). Then the ratios of this run:
w2 / single (throughput at max, CPU per request) and mp1 / single (CPU per request: the multiprocess metrics' cost);
at max load also what the upstream and the load generator cost per request and the w2 / single ratio that leaves
room for. --rounds N runs every variant N times (order reversed every other round) and reports medians; --upstream
nginx-one-write writes each stream in one piece (overhead/one_write.py says why).
Steps, warm-up, noise handling and loopback-only bounds are bench/overhead's (bench/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from overhead.cli import parse_args, run_session
from overhead.load import REPO
from overhead.processes import Gateway, Upstream, listeners, log, parse_cpus, port_busy
from overhead.report import fmt, machine_meta
from overhead.runner import Runner, plan, progress_bar

VARIANTS = {
    "single": "llmops gateway (one process, plain registry)",
    "mp1": "python -m gateway.workers --workers 1 (supervisor + 1 worker, multiprocess metrics)",
    "w2": "llmops gateway --workers 2 (supervisor + 2 workers)",
    "w2pin": "llmops gateway --workers 2 with server.pin_workers (each worker on one of the CPUs)",
}
WORKERS = {"single": 1, "mp1": 1, "w2": 2, "w2pin": 2}


class VariantGateway(Gateway):
    """A gateway of one of the :data:`VARIANTS` (bench/overhead's gateway with another command line)."""

    def __init__(self, a: argparse.Namespace, upstream: Upstream, tmp: Path, variant: str) -> None:
        super().__init__(a, upstream, tmp, name=variant)
        self.variant = variant
        if variant == "w2pin":
            self.config.write_text(self.config.read_text() + "server: {pin_workers: true}\n")

    def command(self) -> list[str]:
        if self.variant == "single":
            return super().command()
        if self.variant in ("w2", "w2pin"):
            return [*super().command(), "--workers", "2"]
        where = ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        return [sys.executable, "-m", "gateway.workers", "--config", str(self.config), *where, "--workers", "1"]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        return env


def run_variant(a: argparse.Namespace, console: Any, upstream: Upstream, tmp: Path, variant: str) -> dict[str, Any]:
    """Start one gateway, wait for every worker to listen, warm it up, run every step, stop it."""
    gw = VariantGateway(a, upstream, tmp, variant)
    try:
        gw.launch(console, f"{variant}: {VARIANTS[variant]}")
        deadline = time.monotonic() + 30
        while shutil.which("ss") and len(listeners(gw.port)) < WORKERS[variant] and time.monotonic() < deadline:
            time.sleep(0.2)
        runner = Runner(a, console, upstream, {"gateway": gw})
        runner.warm_up(a.warmup)
        steps = {}
        with progress_bar(console) as progress:
            for step in plan(a, targets=("gateway",)):
                steps[step.key] = runner.run_step(step, progress)
        return steps
    finally:
        gw.stop()
        deadline = time.monotonic() + 15
        while port_busy(gw.port) and time.monotonic() < deadline:
            time.sleep(0.2)


_POOLED = (
    "rps",
    "gw_cpu_ms_per_req",
    "gw_wakeups_per_req",
    "gw_cpu_cores",
    "machine_busy_cores",
    "foreign_cores",
    "p50_ms",
    "p99_ms",
)


def run_rounds(
    a: argparse.Namespace, console: Any, upstream: Upstream, tmp: Path, variants: list[str], rounds: int
) -> dict[str, dict[str, Any]]:
    """Every variant ``rounds`` times, the order reversed every other round (a VM's speed drifts over minutes); per
    step the median of the rounds for each figure, and every round's step under ``rounds``."""
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in variants}
    for number in range(rounds):
        order = variants if number % 2 == 0 else variants[::-1]
        if rounds > 1:
            log(console, f"round {number + 1} of {rounds}: {', '.join(order)}")
        for variant in order:
            runs[variant].append(run_variant(a, console, upstream, tmp, variant))
    if rounds == 1:
        return {variant: steps[0] for variant, steps in runs.items()}
    results: dict[str, dict[str, Any]] = {}
    for variant, per_round in runs.items():
        results[variant] = {}
        for key in per_round[0]:
            steps = [r[key] for r in per_round if key in r]
            merged = dict(steps[0], rounds=steps)
            for field in _POOLED:
                found = [s[field] for s in steps if s.get(field) is not None]
                merged[field] = statistics.median(found) if found else None
            merged["errors"] = sum(s.get("errors") or 0 for s in steps)
            merged["noisy"] = any(s.get("noisy") for s in steps)
            results[variant][key] = merged
    return results


def ratio(new: float | None, old: float | None) -> float | None:
    return round(new / old, 3) if new and old else None


def others_ms_per_request(step: dict[str, Any]) -> float | None:
    """CPU ms per request of everything on the cores but the gateway and foreign work: the upstream and the load
    generator (this script's generators or wrk)."""
    busy, gateway, rps = step.get("machine_busy_cores"), step.get("gw_cpu_cores"), step.get("rps")
    if busy is None or gateway is None or not rps:
        return None
    return max(busy - gateway - (step.get("foreign_cores") or 0.0), 0.0) / rps * 1000


def scaling_bound(single: dict[str, Any], w2: dict[str, Any], cores: int) -> float | None:
    """The w2 / single throughput ratio if the two workers spent exactly the single process's CPU per request, with
    the upstream and the load generator costing what they did in w2's run: ``cores / (g1 + u2)`` over single's
    requests/s. Whatever the gateway does, its scaling on shared cores stays below this."""
    g1, u2, r1 = single.get("gw_cpu_ms_per_req"), others_ms_per_request(w2), single.get("rps")
    if not g1 or u2 is None or not r1:
        return None
    return round(cores * 1000 / (g1 + u2) / r1, 3)


def summarize(results: dict[str, dict[str, Any]], cores: int = 2) -> dict[str, dict[str, float | None]]:
    """Per step: w2 / single and w2pin / single (rps at max; CPU per request) and mp1 / single (CPU per request); at
    max load, what the upstream and the load generator cost per request in w2's run, and the ratio they leave room
    for (:func:`scaling_bound`)."""
    out: dict[str, dict[str, float | None]] = {}
    for key in results.get("single", {}):
        row: dict[str, float | None] = {}
        single = results["single"][key]
        for variant in ("w2", "w2pin", "mp1"):
            other = results.get(variant, {}).get(key)
            if other is None:
                continue
            row[f"{variant}/single cpu per req"] = ratio(
                other.get("gw_cpu_ms_per_req"), single.get("gw_cpu_ms_per_req")
            )
            if key.endswith("/max"):
                row[f"{variant}/single rps"] = ratio(other.get("rps"), single.get("rps"))
                if variant == "w2":
                    others = others_ms_per_request(other)
                    row["w2 upstream+load ms/req"] = round(others, 3) if others is not None else None
                    row["w2/single rps bound"] = scaling_bound(single, other, cores)
        out[key] = row
    return out


def print_report(console: Any, a: argparse.Namespace, upstream: Upstream, result: dict[str, Any]) -> None:
    from rich.table import Table

    results, ratios = result["variants"], result["ratios"]
    table = Table(title="One process vs workers (rps; gateway CPU ms per request, all its processes)")
    table.add_column("step")
    for variant in results:
        table.add_column(f"{variant} rps", justify="right")
        table.add_column(f"{variant} CPU ms/req", justify="right")
        table.add_column(f"{variant} wake-ups/req", justify="right")
    columns = [
        column
        for column in (
            "w2/single rps",
            "w2pin/single rps",
            "w2/single rps bound",
            "w2 upstream+load ms/req",
            "w2/single cpu per req",
            "w2pin/single cpu per req",
            "mp1/single cpu per req",
        )
        if any(column in row for row in ratios.values())
    ]
    for column in columns:
        table.add_column(column, justify="right")
    for key in next(iter(results.values()), {}):
        row = [key]
        for steps in results.values():
            r = steps.get(key, {})
            errors = f" [red]({r['errors']} errors)[/red]" if r.get("errors") else ""
            row += [
                f"{r.get('rps', 0):.0f}{errors}",
                fmt(r.get("gw_cpu_ms_per_req"), 3),
                fmt(r.get("gw_wakeups_per_req"), 2),
            ]
        row += [fmt(ratios.get(key, {}).get(c), 3) for c in columns]
        table.add_row(*row)
    console.print(table)
    console.print(
        f"  Everything ran pinned with taskset to CPUs {a.gw_cpus}: the gateway's processes, the upstream "
        f"({upstream.kind}) and the load generator share those {len(parse_cpus(a.gw_cpus))} cores, so a second "
        "worker competes with the load and the upstream. Ratios are from this run, variant against single. "
        "Bound: the w2/single rps that two workers spending single's CPU per request would reach, with the upstream "
        "and the load costing what they did in w2's run (cores / (single CPU ms/req + upstream+load ms/req)). "
        "Wake-ups: the gateway's voluntary context switches per request (each costs CPU on a VM: below saturation "
        "an event loop wakes about once per request and per upstream answer, a busy one handles several per wake-up)."
    )
    noisy = [f"{v} {k}" for v, steps in results.items() for k, r in steps.items() if r.get("noisy")]
    if noisy:
        console.print(f"  [yellow]noisy steps (foreign CPU > {a.noise_max} cores): {', '.join(noisy)}")


def main(argv: list[str]) -> int:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--cpus", default="0,1", help="taskset CPU list shared by everything (default 0,1)")
    own.add_argument("--variants", default="single,mp1,w2", help="which gateways, in order (single, mp1, w2, w2pin)")
    own.add_argument("--rounds", type=int, default=1, help="run every variant this often, alternating; medians")
    mine, rest = own.parse_known_args(argv)
    if mine.rounds < 1:
        sys.exit("--rounds: at least 1")
    variants = [v.strip() for v in mine.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown or not variants:
        sys.exit(f"--variants: unknown {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    defaults = ["--rates", "1000,2000", "--conns", "16", "--duration", "10", "--no-direct"]
    a = parse_args([*defaults, *rest, "--gw-cpus", mine.cpus, "--load-cpus", mine.cpus], __doc__)
    if a.baseline_ref or a.soak:
        sys.exit("bench/workers.py runs steps only (no --baseline-ref, no --soak)")

    def run(a: argparse.Namespace, console: Any, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
        upstream = Upstream.running(a, console, tmp, stack)
        log(console, f"all on CPUs {a.gw_cpus} (taskset): gateway, upstream ({upstream.kind}) and load generator")
        results = run_rounds(a, console, upstream, tmp, variants, mine.rounds)
        result = {
            "meta": machine_meta(a, upstream),
            "variants": results,
            "ratios": summarize(results, len(parse_cpus(a.gw_cpus))),
        }
        print_report(console, a, upstream, result)
        return result

    return run_session(a, run, "gw-workers-")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
