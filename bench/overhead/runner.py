"""Steps: one bounded load (open loop at a rate, or closed loop at max throughput) against one target (the upstream
directly, the gateway, or the A/B mode's baseline gateway), measured with the CPU meter and re-run when noisy."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from .cpu import CpuWindow, tree_mem_kb
from .load import API_KEY, CHAT_PATH, ENTRY, STEP_MAX_S, load_command
from .processes import Gateway, Upstream, log, parse_cpus, pin_prefix
from .report import compare, short

WRK_SCRIPT = ENTRY.parent / "wrk_chat.lua"


@dataclass
class Step:
    target: str  # direct | gateway | baseline (the A/B mode's other build)
    stream: bool
    load: str  # "max" or "rN"
    rate: float = 0.0
    conns: int = 0

    @property
    def mode(self) -> str:
        return "stream" if self.stream else "unary"

    @property
    def key(self) -> str:
        return f"{self.mode}/{self.load}"


def plan(a: argparse.Namespace, targets: tuple[str, ...] | None = None) -> list[Step]:
    """The steps the flags ask for: per mode (unary, stream), per load (rates, then max), per target."""
    if targets is None:
        targets = ("gateway",) if a.no_direct else ("direct", "gateway")
    steps = []
    modes = [False, True] if not a.no_stream else [False]
    if a.stream_only:
        modes = [True]
    for stream in modes:
        loads: list[tuple[str, float, int]] = [(f"r{r:g}", r, 0) for r in a.rates]
        loads += [("max", 0.0, c) for c in a.conns]
        for name, rate, conns in loads:
            if a.only and name not in a.only:
                continue
            for target in targets:
                steps.append(Step(target, stream, name, rate, conns))
    return steps


class Runner:
    """Runs steps against the upstream and the gateways (target name -> gateway; "gateway", or else the first, is the
    one under test)."""

    def __init__(
        self,
        a: argparse.Namespace,
        console: Any,
        upstream: Upstream,
        gateways: dict[str, Gateway],
        extra_pids: list[int] | None = None,
    ) -> None:
        self.a = a
        self.console = console
        self.upstream = upstream
        self.gateways = gateways
        self.pids = {name: gw.proc.pid for name, gw in gateways.items() if gw.proc is not None}
        first = "gateway" if "gateway" in gateways else next(iter(gateways))
        self.gw = gateways[first]
        self.gw_pid = self.pids[first]
        self.ours = [*self.pids.values(), *upstream.pids, *(extra_pids or [])]  # extra: the bench's Redis
        self.gw_cpus = parse_cpus(a.gw_cpus) if a.gw_cpus else set()
        self.wrk = None if a.no_wrk else shutil.which(a.wrk)
        self.label_width = max(7, *(len(t) for t in gateways))

    def base(self, target: str) -> str:
        return self.upstream.base if target == "direct" else self.gateways[target].base

    def pid(self, target: str) -> int:
        """The gateway whose CPU a step measures (direct steps: the gateway under test, idle)."""
        return self.pids.get(target, self.gw_pid)

    def load_cmd(self, step: Step, duration: float, warmup: float) -> tuple[list[str], dict[str, str]]:
        base = self.base(step.target)
        port = int(base.rsplit(":", 1)[1])
        env = dict(
            os.environ, BENCH_MODEL=self.a.model, BENCH_STREAM="1" if step.stream else "0", BENCH_API_KEY=API_KEY
        )
        pin = pin_prefix(self.a.load_cpus)
        if step.load == "max" and self.wrk:
            cmd = [self.wrk, "-t1", f"-c{step.conns}", f"-d{round(duration)}s", "--latency", "--timeout", "10s"]
            return [*pin, *cmd, "-s", str(WRK_SCRIPT), base + CHAT_PATH], env
        cmd = [*pin, *load_command(port, self.a.model, "--duration", str(duration), "--warmup", str(warmup))]
        cmd += ["--concurrency", str(step.conns)] if step.load == "max" else ["--rate", str(step.rate)]
        return [*cmd, *(["--stream"] if step.stream else [])], env

    def wait_quiet(self, pid: int) -> dict[str, Any]:
        """Until the gateway is idle (backlog drained) and foreign CPU is under --noise-max, at most --quiet-wait s."""
        end = time.monotonic() + self.a.quiet_wait
        while True:
            w = CpuWindow(pid, self.ours, self.gw_cpus)
            w.start()
            time.sleep(1.0)
            r = w.stop()
            if (r["foreign_cores"] <= self.a.noise_max and r["gw_cpu_cores"] <= 0.05) or time.monotonic() > end:
                r["quiet"] = r["foreign_cores"] <= self.a.noise_max
                return r

    def _span(self, step: Step) -> float:
        return self.a.duration + (0 if step.load == "max" and self.wrk else self.a.ol_warmup)

    def run_once(self, step: Step, progress: Any, task: Any) -> dict[str, Any]:
        """One attempt: wait for a quiet box, run the load, meter the CPU; the load's numbers plus the CPU's."""
        pid = self.pid(step.target)
        before = self.wait_quiet(pid)
        cmd, env = self.load_cmd(step, self.a.duration, self.a.ol_warmup)
        span = self._span(step)
        w = CpuWindow(pid, self.ours, self.gw_cpus)
        w.start()
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        out, err = "", ""
        while True:
            try:
                out, err = p.communicate(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                progress.update(task, completed=min(time.monotonic() - t0, span))
        cpu = w.stop()
        progress.update(task, completed=span)
        res = None
        for line in out.splitlines():
            if line.startswith("BENCH_JSON "):
                res = json.loads(line[len("BENCH_JSON ") :])
        if res is None:
            raise RuntimeError(f"{step.target} {step.key}: no result (rc={p.returncode}):\n{out}\n{err}")
        if "err_status" in res:  # wrk
            res["tool"] = "wrk"
            res["errors"] = sum(v for k, v in res.items() if k.startswith("err_"))
            res["ok"] = res["requests"] - res["err_status"]
            res["completed_total"] = res["ok"]
        total = res.get("completed_total") or 0
        res.update(cpu)
        per_request = bool(total) and step.target != "direct"  # the gateway's own figures, over its requests
        res["gw_cpu_ms_per_req"] = round(cpu["gw_cpu_s"] * 1e3 / total, 4) if per_request else None
        res["gw_wakeups_per_req"] = round(cpu["gw_wakeups"] / total, 3) if per_request else None
        res["foreign_before"] = before["foreign_cores"]
        mem = tree_mem_kb(pid)
        res["gw_rss_kb"] = mem.get("VmRSS")
        res["gw_hwm_kb"] = mem.get("VmHWM")
        return res

    def run_step(self, step: Step, progress: Any) -> dict[str, Any]:
        """A step with its noise re-runs (the quietest attempt is kept), labelled with the step's fields."""
        label = f"{step.target:<{self.label_width}} {step.mode:<6} {step.load}"
        task = progress.add_task(label, total=self._span(step))
        best = self.run_once(step, progress, task)
        attempts = 1
        while best["foreign_cores"] > self.a.noise_max and attempts <= self.a.retries:
            log(
                self.console,
                f"[yellow]{label}: foreign CPU {best['foreign_cores']} cores {best['foreign_top']}, re-run",
            )
            progress.reset(task)
            r = self.run_once(step, progress, task)
            attempts += 1
            if r["foreign_cores"] < best["foreign_cores"]:
                best = r
        best["attempts"] = attempts
        best["noisy"] = best["foreign_cores"] > self.a.noise_max
        best.update(
            target=step.target, mode=step.mode, load=step.load, rate=step.rate or None, conns=step.conns or None
        )
        progress.update(task, description=label + "  " + short(best))
        return best

    def warm_up(self, seconds: float, target: str = "gateway") -> None:
        """Closed-loop load through a gateway (both modes) so pools, caches and allocators are warm."""
        for stream in (False, True):
            step = Step(target, stream, "max", conns=16)
            cmd, env = self.load_cmd(step, max(1.0, seconds / 2), 0)
            subprocess.run(cmd, capture_output=True, env=env, timeout=STEP_MAX_S + 30)


def progress_bar(console: Any) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=20), TimeElapsedColumn(), console=console)


def run_steps(a: argparse.Namespace, console: Any, runner: Runner) -> dict[str, Any]:
    """Every planned step, then the gateway-vs-direct comparisons and the gateway's RSS."""
    steps = plan(a)
    results: list[dict[str, Any]] = []
    log(console, f"warm-up: {a.warmup:g} s of closed-loop load through the gateway")
    runner.warm_up(a.warmup)
    rss_start = tree_mem_kb(runner.gw_pid)
    with progress_bar(console) as progress:
        for step in steps:
            results.append(runner.run_step(step, progress))
    comparisons = {}
    by_key = {(r["target"], f"{r['mode']}/{r['load']}"): r for r in results}
    for (target, key), r in by_key.items():
        if target == "gateway" and ("direct", key) in by_key:
            comparisons[key] = compare(by_key[("direct", key)], r)
    rss_end = tree_mem_kb(runner.gw_pid)
    return {
        "steps": results,
        "comparisons": comparisons,
        "gw_rss_kb_after_warmup": rss_start.get("VmRSS"),
        "gw_rss_kb_end": rss_end.get("VmRSS"),
        "gw_peak_rss_kb": rss_end.get("VmHWM"),
    }
