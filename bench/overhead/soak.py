"""Soak mode: a fixed rate through the gateway for a long time, the gateway's RSS sampled as it goes."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from typing import Any

from .cpu import CpuWindow, mem_kb
from .load import load_command
from .processes import log, pin_prefix
from .report import fmt
from .runner import Runner
from .stats import slope


def run_soak(a: argparse.Namespace, console: Any, runner: Runner) -> dict[str, Any]:
    """Warm up, then ``--soak`` seconds at ``--soak-rate``; RSS every ``--soak-interval`` s, first/last/peak, growth."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    log(console, f"warm-up: {a.warmup:g} s of closed-loop load through the gateway")
    runner.warm_up(a.warmup)
    cmd = [*pin_prefix(a.load_cpus), *load_command(runner.gw.port, a.model, "--rate", str(a.soak_rate))]
    cmd += ["--duration", str(a.soak), "--warmup", "0", "--stream-every", str(a.soak_stream_every)]
    samples: list[tuple[float, int]] = []
    w = CpuWindow(runner.gw_pid, runner.ours, runner.gw_cpus)
    w.start()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    next_sample = t0
    out, err = "", ""
    with Progress(
        TextColumn("{task.description}"), BarColumn(bar_width=30), TimeElapsedColumn(), TimeRemainingColumn()
    ) as progress:
        task = progress.add_task("soak", total=a.soak)
        while True:
            now = time.monotonic()
            if now >= next_sample:
                rss = mem_kb(runner.gw_pid).get("VmRSS", 0)
                samples.append((round(now - t0, 1), rss))
                next_sample += a.soak_interval
                progress.update(task, description=f"soak {a.soak_rate:g} rps, gateway RSS {rss / 1024:.1f} MB")
            try:
                out, err = p.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                progress.update(task, completed=min(time.monotonic() - t0, a.soak))
    cpu = w.stop()
    samples.append((round(time.monotonic() - t0, 1), mem_kb(runner.gw_pid).get("VmRSS", 0)))
    load = next((json.loads(x[11:]) for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if load is None:
        raise RuntimeError(f"soak: no result from the load generator:\n{out}\n{err}")
    # "first" = the first sample after 10% of the run (imports, pools and allocator arenas settle first)
    settled = [s for s in samples if s[0] >= max(a.soak * 0.1, a.soak_interval)] or samples
    first, last = settled[0][1], samples[-1][1]
    peak = max(s[1] for s in samples)
    half = [s for s in samples if s[0] >= a.soak / 2]
    rss_slope = slope(half) * 60 / 1024 if len(half) >= 3 else None  # MB per minute over the second half
    growth_2nd_half = last - half[0][1] if half else None  # a leak keeps growing; a bounded cache levels off
    total = load.get("completed_total") or 0
    return {
        "duration_s": a.soak,
        "rate": a.soak_rate,
        "stream_every": a.soak_stream_every,
        "soak_interval": a.soak_interval,
        "load": load,
        "cpu": cpu,
        "gw_cpu_ms_per_req": round(cpu["gw_cpu_s"] * 1e3 / total, 4) if total else None,
        "rss_samples_kb": samples,
        "rss_first_kb": first,
        "rss_first_at_s": settled[0][0],
        "rss_last_kb": last,
        "rss_peak_kb": peak,
        "vm_hwm_kb": mem_kb(runner.gw_pid).get("VmHWM"),
        "rss_growth_kb": last - first,
        "rss_growth_2nd_half_kb": growth_2nd_half,
        "rss_slope_mb_per_min_2nd_half": None if rss_slope is None else round(rss_slope, 3),
    }


def print_soak(console: Any, s: dict[str, Any]) -> None:
    """The soak's table and the RSS minute by minute."""
    from rich.table import Table

    ld = s["load"]
    t = Table(title=f"Soak: {s['duration_s']:g} s at {s['rate']:g} rps through the gateway")
    t.add_column("metric")
    t.add_column("value", justify="right")
    flat = s["rss_growth_kb"] <= max(1024, 0.02 * s["rss_first_kb"])
    g2 = s["rss_growth_2nd_half_kb"]
    flat2 = g2 is not None and g2 <= max(1024, 0.02 * s["rss_last_kb"])
    rows = [
        ("requests ok / errors", f"{ld['ok']} / {ld['errors']}"),
        ("achieved rps", f"{ld['rps']:.0f}"),
        ("latency p50 / p99 ms", f"{fmt(ld['p50_ms'])} / {fmt(ld['p99_ms'])}"),
        ("gateway CPU ms/req", fmt(s["gw_cpu_ms_per_req"], 3)),
        ("foreign CPU (cores)", f"{s['cpu']['foreign_cores']:.2f}"),
        (f"RSS first (at {s['rss_first_at_s']:g} s) MB", f"{s['rss_first_kb'] / 1024:.1f}"),
        ("RSS last MB", f"{s['rss_last_kb'] / 1024:.1f}"),
        ("RSS peak MB (sampled / VmHWM)", f"{s['rss_peak_kb'] / 1024:.1f} / {(s['vm_hwm_kb'] or 0) / 1024:.1f}"),
        ("RSS growth first -> last MB", f"{s['rss_growth_kb'] / 1024:+.2f}"),
        ("RSS slope, 2nd half, MB/min", fmt(s["rss_slope_mb_per_min_2nd_half"], 3)),
        ("RSS growth over the 2nd half MB", "-" if g2 is None else f"{g2 / 1024:+.2f}"),
        ("flat from first sample (growth <= max(1 MB, 2%))", "[green]yes[/green]" if flat else "[red]NO[/red]"),
        ("flat over the 2nd half (same rule)", "[green]yes[/green]" if flat2 else "[red]NO[/red]"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    step = max(1, round(60 / max(s["soak_interval"], 1e-3)))
    series = s["rss_samples_kb"][::step] + ([s["rss_samples_kb"][-1]] if len(s["rss_samples_kb"]) % step != 1 else [])
    console.print("  RSS over time: " + ", ".join(f"{t:g} s {kb / 1024:.1f} MB" for t, kb in series))
