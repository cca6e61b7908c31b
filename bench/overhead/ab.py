"""A/B mode (``--baseline-ref GIT_REF``): the same gateway steps against this checkout's gateway ("new") and one
from another git commit ("old", checked out with ``git worktree`` into the run's temp folder), both running at once
on the gateway CPUs, alternated step by step (the order flips every round), and the CPU per request new/old."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from .load import REPO
from .processes import Gateway, Upstream, log
from .report import fmt
from .runner import Runner, plan, progress_bar

BUILDS = {"gateway": "new", "baseline": "old"}


def git(*args: str) -> str:
    r = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip()


def head_commit() -> str:
    """This checkout's commit, with ``+dirty`` when tracked files have changes."""
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "HEAD") + ("+dirty" if dirty else "")


class BaselineCheckout:
    """A detached ``git worktree`` of ``ref`` at ``dest``, removed again by ``remove()``."""

    def __init__(self, ref: str, dest: Path) -> None:
        try:
            self.commit = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except RuntimeError:
            sys.exit(f"--baseline-ref {ref}: not a commit of {REPO}")
        self.ref = ref
        self.dest = dest
        git("worktree", "add", "--detach", str(dest), self.commit)

    def remove(self) -> None:
        try:
            git("worktree", "remove", "--force", str(self.dest))
        except RuntimeError as e:  # left for `git worktree prune` once the temp folder is gone
            print(f"could not remove the baseline worktree: {e}", file=sys.stderr)


def code_origin(env: dict[str, str], cwd: Path | None) -> str:
    """Where a gateway started with ``env`` in ``cwd`` imports the ``gateway`` package from (to log and check the
    A/B). ``-P``: like the ``llmops`` script, nothing is put before PYTHONPATH."""
    code = "import gateway, os; print(os.path.dirname(os.path.dirname(gateway.__file__)))"
    cmd = [sys.executable, "-P", "-c", code]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def start_ab(
    a: argparse.Namespace, console: Any, upstream: Upstream, tmp: Path, stack: contextlib.ExitStack
) -> tuple[dict[str, Gateway], dict[str, str]]:
    """Both builds for the A/B mode: this checkout's gateway and the baseline ref's, from a temporary worktree; and
    what they are (refs and commits)."""
    checkout = BaselineCheckout(a.baseline_ref, tmp / "baseline")
    stack.callback(checkout.remove)
    gateways = {
        "gateway": Gateway(a, upstream, tmp, source=REPO),
        "baseline": Gateway(a, upstream, tmp, port=a.baseline_port, source=checkout.dest, name="baseline"),
    }
    for name, gw in gateways.items():
        origin = code_origin(gw.env(), gw.source)
        expected = REPO if name == "gateway" else checkout.dest
        if Path(origin).resolve() != expected.resolve():
            sys.exit(f"the {name} gateway would import its code from {origin}, not {expected}")
        stack.callback(gw.stop)
        gw.launch(console, f"{name} ({origin})")
    return gateways, {"baseline_ref": a.baseline_ref, "baseline_commit": checkout.commit, "new_commit": head_commit()}


def run_ab(a: argparse.Namespace, console: Any, runner: Runner) -> dict[str, Any]:
    """``--ab-rounds`` rounds of every planned gateway step against both builds; the results and their summary."""
    steps = plan(a, targets=("gateway",))
    for target in BUILDS:
        log(console, f"warm-up ({BUILDS[target]}): {a.warmup:g} s of closed-loop load through the gateway")
        runner.warm_up(a.warmup, target)
    results: list[dict[str, Any]] = []
    with progress_bar(console) as progress:
        for rnd in range(1, a.ab_rounds + 1):
            order = ("gateway", "baseline") if rnd % 2 else ("baseline", "gateway")
            for step in steps:
                for target in order:
                    r = runner.run_step(dataclasses.replace(step, target=target), progress)
                    r.update(round=rnd, build=BUILDS[target])
                    results.append(r)
    return {"steps": results, "summary": summarize_ab(results)}


def _pooled(rs: list[dict[str, Any]]) -> float | None:
    """Gateway CPU ms per request over all rounds: total CPU over total requests."""
    total = sum(r.get("completed_total") or 0 for r in rs)
    return round(sum(r["gw_cpu_s"] for r in rs) * 1e3 / total, 4) if total else None


def summarize_ab(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per step (``mode/load``): each build's CPU ms/req per round and pooled, the ratio new/old of the pooled values
    and the range of the per-round ratios; rps and p99 medians."""
    out: dict[str, dict[str, Any]] = {}
    keys = dict.fromkeys(f"{r['mode']}/{r['load']}" for r in results)
    for key in keys:
        rs = [r for r in results if f"{r['mode']}/{r['load']}" == key]
        by = {b: [r for r in rs if r["build"] == b] for b in ("new", "old")}
        s: dict[str, Any] = {}
        for b, brs in by.items():
            s[f"{b}_cpu_ms_per_req"] = [r["gw_cpu_ms_per_req"] for r in brs]
            s[f"{b}_cpu_ms_per_req_pooled"] = _pooled(brs)
            s[f"{b}_rps_median"] = statistics.median(r["rps"] for r in brs) if brs else None
            p99 = [r["p99_ms"] for r in brs if r.get("p99_ms") is not None]
            s[f"{b}_p99_ms_median"] = statistics.median(p99) if p99 else None
        new, old = s["new_cpu_ms_per_req_pooled"], s["old_cpu_ms_per_req_pooled"]
        s["cpu_ratio_new_old"] = round(new / old, 3) if new and old else None
        pairs = [
            (n["gw_cpu_ms_per_req"], o["gw_cpu_ms_per_req"])
            for n in by["new"]
            for o in by["old"]
            if n["round"] == o["round"] and n["gw_cpu_ms_per_req"] and o["gw_cpu_ms_per_req"]
        ]
        s["cpu_ratio_per_round"] = [round(n / o, 3) for n, o in pairs]
        s["noisy_steps"] = sum(1 for r in rs if r.get("noisy"))
        out[key] = s
    return out


def overall_ratio(summary: dict[str, dict[str, Any]]) -> float | None:
    """Geometric mean of the steps' CPU ratios new/old."""
    ratios = [s["cpu_ratio_new_old"] for s in summary.values() if s["cpu_ratio_new_old"]]
    return round(math.exp(sum(math.log(r) for r in ratios) / len(ratios)), 3) if ratios else None


def print_ab(console: Any, ab: dict[str, Any]) -> None:
    """The A/B table and the CPU-per-request ratio new/old."""
    from rich.table import Table

    summary = ab["summary"]
    t = Table(title=f"A/B: new {ab['new_commit'][:12]} vs old {ab['baseline_commit'][:12]} ({ab['baseline_ref']})")
    for col in ("mode/load", "new CPU ms/req", "old CPU ms/req", "new/old", "per round", "rps new/old", "p99 new/old"):
        t.add_column(col, justify="left" if col == "mode/load" else "right")
    for key, s in summary.items():
        rounds = (
            ", ".join(fmt(x, 3) for x in s["new_cpu_ms_per_req"]),
            ", ".join(fmt(x, 3) for x in s["old_cpu_ms_per_req"]),
        )
        t.add_row(
            key + (f" [yellow]({s['noisy_steps']} noisy)" if s["noisy_steps"] else ""),
            f"{fmt(s['new_cpu_ms_per_req_pooled'], 3)} ({rounds[0]})",
            f"{fmt(s['old_cpu_ms_per_req_pooled'], 3)} ({rounds[1]})",
            fmt(s["cpu_ratio_new_old"], 3),
            ", ".join(fmt(x, 3) for x in s["cpu_ratio_per_round"]),
            f"{fmt(s['new_rps_median'])}/{fmt(s['old_rps_median'])}",
            f"{fmt(s['new_p99_ms_median'])}/{fmt(s['old_p99_ms_median'])}",
        )
    console.print(t)
    parts = [f"{k} {fmt(s['cpu_ratio_new_old'], 3)}" for k, s in summary.items()]
    console.print(
        f"  CPU per request, new/old: {fmt(ab['cpu_ratio_new_old'], 3)} (geometric mean of the steps: "
        f"{', '.join(parts)}; {ab['rounds']} rounds, pooled per build)"
    )
