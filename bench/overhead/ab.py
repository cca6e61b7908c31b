"""Side by side (``--baseline-ref GIT_REF`` and/or ``--configs bare,production``): the same gateway steps against
several gateways running at once on the gateway CPUs: this checkout's ("new") and, with a baseline ref, another
commit's ("old", checked out with ``git worktree`` into the run's temp folder), each in every configuration asked for
(``new/bare``, ``new/production``, ``old/bare``, ...). Every round runs each step against each of them, one right after
the other, the order rotating every round; rate steps also run against the upstream directly first, for the p99 the
gateways add. Prints CPU per request (pooled over the rounds), p99 and added p99, and the ratios new/old (per
configuration) and production/bare (per build)."""

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
from .processes import BenchRedis, Gateway, Upstream, log
from .report import fmt
from .runner import Runner, plan, progress_bar


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


def start_matrix(
    a: argparse.Namespace, console: Any, upstream: Upstream, tmp: Path, stack: contextlib.ExitStack
) -> tuple[dict[str, Gateway], dict[str, Any], list[int]]:
    """Every build × configuration as a running gateway (named ``build/config``), what they are (refs, commits),
    and the pids of the private Redis (started when a configuration needs it)."""
    builds = {"new": REPO}
    meta: dict[str, Any] = {"new_commit": head_commit(), "configs": list(a.configs)}
    if a.baseline_ref:
        checkout = BaselineCheckout(a.baseline_ref, tmp / "baseline")
        stack.callback(checkout.remove)
        builds["old"] = checkout.dest
        meta.update(baseline_ref=a.baseline_ref, baseline_commit=checkout.commit)
    redis = None
    if "production" in a.configs:
        redis = BenchRedis(a.redis_port, a.load_cpus, tmp)
        stack.callback(redis.stop)
    gateways: dict[str, Gateway] = {}
    for b, (build, source) in enumerate(builds.items()):
        for c, config in enumerate(a.configs):
            name = f"{build}/{config}"
            port = (a.gw_port if build == "new" else a.baseline_port) + c
            redis_url = redis.url(b) if redis is not None and config == "production" else None
            gw = Gateway(a, upstream, tmp, port, source, name.replace("/", "-"), config, redis_url)
            origin = code_origin(gw.env(), gw.source)
            if Path(origin).resolve() != source.resolve():
                sys.exit(f"the {name} gateway would import its code from {origin}, not {source}")
            stack.callback(gw.stop)
            gw.launch(console, f"{name} ({origin})")
            gateways[name] = gw
    return gateways, meta, [redis.proc.pid] if redis is not None else []


def run_matrix(a: argparse.Namespace, console: Any, runner: Runner) -> dict[str, Any]:
    """``--ab-rounds`` rounds of every planned step against every gateway (and the direct upstream for rate
    steps); the results and their summary."""
    steps = plan(a, targets=("gateway",))
    names = list(runner.gateways)
    for name in names:
        log(console, f"warm-up ({name}): {a.warmup:g} s of closed-loop load through the gateway")
        runner.warm_up(a.warmup, name)
    results: list[dict[str, Any]] = []
    with progress_bar(console) as progress:
        for rnd in range(1, a.ab_rounds + 1):
            k = (rnd - 1) % len(names)
            order = names[k:] + names[:k]
            for step in steps:
                direct = ["direct"] if step.load != "max" and not a.no_direct else []
                for target in [*direct, *order]:
                    r = runner.run_step(dataclasses.replace(step, target=target), progress)
                    r.update(round=rnd, variant=target)
                    results.append(r)
    return {"steps": results, "summary": summarize(results, names)}


def _pooled(rs: list[dict[str, Any]]) -> float | None:
    """Gateway CPU ms per request over all rounds: total CPU over total requests."""
    total = sum(r.get("completed_total") or 0 for r in rs)
    return round(sum(r["gw_cpu_s"] for r in rs) * 1e3 / total, 4) if total else None


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


def _ratio(by: dict[str, list[dict[str, Any]]], top: str, bottom: str) -> dict[str, Any]:
    """CPU per request of ``top`` over ``bottom``: pooled, and per round."""
    new, old = _pooled(by[top]), _pooled(by[bottom])
    old_by_round = {r["round"]: r["gw_cpu_ms_per_req"] for r in by[bottom]}
    per_round = [
        round(r["gw_cpu_ms_per_req"] / old_by_round[r["round"]], 3)
        for r in by[top]
        if r["gw_cpu_ms_per_req"] and old_by_round.get(r["round"])
    ]
    return {"pooled": round(new / old, 3) if new and old else None, "per_round": per_round}


def summarize(results: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, Any]]:
    """Per step (``mode/load``): each gateway's CPU ms/req per round and pooled, rps, p99 and added p99 (medians
    over the rounds), and the ratios new/old and production/bare."""
    out: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(f"{r['mode']}/{r['load']}" for r in results):
        rs = [r for r in results if f"{r['mode']}/{r['load']}" == key]
        by = {name: [r for r in rs if r["variant"] == name] for name in ["direct", *names]}
        direct_p99 = {r["round"]: r.get("p99_ms") for r in by["direct"]}
        s: dict[str, Any] = {"gateways": {}, "ratios": {}}
        for name in names:
            vr = by[name]
            added = [r["p99_ms"] - direct_p99[r["round"]] for r in vr if direct_p99.get(r["round"]) is not None]
            s["gateways"][name] = {
                "cpu_ms_per_req": [r["gw_cpu_ms_per_req"] for r in vr],
                "cpu_ms_per_req_pooled": _pooled(vr),
                "rps_median": _median([r["rps"] for r in vr]),
                "p99_ms_median": _median([r["p99_ms"] for r in vr if r.get("p99_ms") is not None]),
                "added_p99_ms_median": _median(added),
                "noisy_steps": sum(1 for r in vr if r.get("noisy")),
            }
        for name in names:
            build, config = name.split("/")
            if build == "new" and f"old/{config}" in by:
                s["ratios"][f"new/old {config}"] = _ratio(by, name, f"old/{config}")
            if config == "production" and f"{build}/bare" in by:
                s["ratios"][f"production/bare {build}"] = _ratio(by, name, f"{build}/bare")
        out[key] = s
    return out


def overall_ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Per ratio name: the geometric mean of the steps' pooled ratios."""
    logs: dict[str, list[float]] = {}
    for s in summary.values():
        for name, ratio in s["ratios"].items():
            if ratio["pooled"]:
                logs.setdefault(name, []).append(math.log(ratio["pooled"]))
    return {name: round(math.exp(sum(v) / len(v)), 3) for name, v in logs.items()}


def print_matrix(console: Any, result: dict[str, Any]) -> None:
    """The per-gateway table and the ratios."""
    from rich.table import Table

    summary = result["summary"]
    title = f"new {result['new_commit'][:12]}"
    if result.get("baseline_commit"):
        title += f" vs old {result['baseline_commit'][:12]} ({result['baseline_ref']})"
    t = Table(title=title)
    for col in ("mode/load", "gateway", "CPU ms/req pooled (per round)", "rps", "p99 ms", "added p99 ms"):
        t.add_column(col, justify="left" if col in ("mode/load", "gateway") else "right")
    for key, s in summary.items():
        for name, g in s["gateways"].items():
            rounds = ", ".join(fmt(x, 3) for x in g["cpu_ms_per_req"])
            noisy = f" [yellow]({g['noisy_steps']} noisy)" if g["noisy_steps"] else ""
            t.add_row(
                key,
                name + noisy,
                f"{fmt(g['cpu_ms_per_req_pooled'], 3)} ({rounds})",
                fmt(g["rps_median"]),
                fmt(g["p99_ms_median"]),
                fmt(g["added_p99_ms_median"]),
            )
    console.print(t)
    for key, s in summary.items():
        for name, ratio in s["ratios"].items():
            rounds = ", ".join(fmt(x, 3) for x in ratio["per_round"])
            console.print(f"  {key}: CPU per request {name}: {fmt(ratio['pooled'], 3)} (per round {rounds})")
    for name, value in result["overall"].items():
        console.print(f"  CPU per request {name}: {fmt(value, 3)} (geometric mean of the steps)")
