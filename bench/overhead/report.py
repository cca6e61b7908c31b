"""Reporting: the one-line step summary, the direct-vs-gateway comparison, the results table, the checks against
the targets, and the machine's description for the JSON."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from typing import Any


def short(r: dict[str, Any]) -> str:
    """One step's numbers on one line (the progress display)."""
    s = f"{r['rps']:.0f} rps p50 {fmt(r.get('p50_ms'))} p99 {fmt(r.get('p99_ms'))} ms"
    if r.get("ttfb_p50_ms") is not None and r.get("mode") == "stream":
        s += f" ttfb {fmt(r['ttfb_p50_ms'])}/{fmt(r['ttfb_p99_ms'])}"
    if r.get("gw_cpu_ms_per_req") is not None:
        s += f" cpu {r['gw_cpu_ms_per_req']:.3f} ms/req"
    if r.get("errors"):
        s += f" [red]errors {r['errors']}[/red]"
    if r.get("noisy"):
        s += f" [yellow]noisy {r['foreign_cores']}[/yellow]"
    return s


def fmt(x: float | None, digits: int = 2) -> str:
    """A number with about three significant digits; "-" for None."""
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def compare(direct: dict[str, Any], gw: dict[str, Any]) -> dict[str, Any]:
    """What the gateway adds to the direct step of the same load: differences (ms) and ratios."""

    def diff(k: str) -> float | None:
        if direct.get(k) is None or gw.get(k) is None:
            return None
        return round(gw[k] - direct[k], 3)

    def ratio(k: str) -> float | None:
        if not direct.get(k) or gw.get(k) is None:
            return None
        return round(gw[k] / direct[k], 2)

    return {
        "added_p50_ms": diff("p50_ms"),
        "added_p99_ms": diff("p99_ms"),
        "ratio_p50": ratio("p50_ms"),
        "ratio_p99": ratio("p99_ms"),
        "added_ttfb_p50_ms": diff("ttfb_p50_ms") if gw["mode"] == "stream" else None,
        "added_ttfb_p99_ms": diff("ttfb_p99_ms") if gw["mode"] == "stream" else None,
        "rps_ratio": ratio("rps"),
    }


def results_table(steps: list[dict[str, Any]], comparisons: dict[str, dict[str, Any]]) -> Any:
    """The rich table of every step, with the gateway's comparison against direct."""
    from rich.table import Table

    t = Table(title="Direct to upstream vs through the gateway (latency in ms; ratio = gateway / direct)")
    for col, just in (
        ("mode", "left"),
        ("load", "left"),
        ("target", "left"),
        ("rps", "right"),
        ("p50", "right"),
        ("p99", "right"),
        ("ttfb p50/p99", "right"),
        ("added p50/p99", "right"),
        ("ratio p50/p99", "right"),
        ("added ttfb p50/p99", "right"),
        ("gw CPU ms/req", "right"),
        ("gw cores", "right"),
        ("gw RSS MB", "right"),
        ("foreign (on gw CPU) cores", "right"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in steps:
        c = comparisons.get(f"{r['mode']}/{r['load']}", {}) if r["target"] == "gateway" else {}
        stream_ol = r["mode"] == "stream" and r.get("ttfb_p50_ms") is not None
        noisy = "[yellow]" if r.get("noisy") else ""
        t.add_row(
            r["mode"],
            r["load"] + (f" c{r['conns']}" if r["load"] == "max" else ""),
            r["target"],
            f"{r['rps']:.0f}" + (f" ({c['rps_ratio']:.2f}x)" if c.get("rps_ratio") and r["load"] == "max" else ""),
            fmt(r.get("p50_ms")),
            fmt(r.get("p99_ms")),
            f"{fmt(r.get('ttfb_p50_ms'))}/{fmt(r.get('ttfb_p99_ms'))}" if stream_ol else "",
            f"{fmt(c.get('added_p50_ms'))}/{fmt(c.get('added_p99_ms'))}" if c else "",
            f"{fmt(c.get('ratio_p50'))}/{fmt(c.get('ratio_p99'))}" if c else "",
            f"{fmt(c.get('added_ttfb_p50_ms'))}/{fmt(c.get('added_ttfb_p99_ms'))}" if c and stream_ol else "",
            f"{r['gw_cpu_ms_per_req']:.3f}" if r.get("gw_cpu_ms_per_req") is not None else "",
            f"{r['gw_cpu_cores']:.2f}" if r["target"] == "gateway" else "",
            f"{r['gw_rss_kb'] / 1024:.1f}" if r["target"] == "gateway" and r.get("gw_rss_kb") else "",
            f"{noisy}{r['foreign_cores']:.2f}"
            + (f" ({r['gw_core_other_cores']:.2f})" if r.get("gw_core_other_cores") is not None else "")
            + (f" x{r['attempts']}" if r.get("attempts", 1) > 1 else ""),
        )
    return t


def target_checks(steps: list[dict[str, Any]], comparisons: dict[str, dict[str, Any]], a: argparse.Namespace) -> list:
    """(name, measured, limit, ok) against the issue's targets."""
    checks: list[tuple[str, str, str, bool | None]] = []
    gw = {f"{r['mode']}/{r['load']}": r for r in steps if r["target"] == "gateway"}
    unary_max = gw.get("unary/max")
    if unary_max:
        cpu = unary_max.get("gw_cpu_ms_per_req")
        if cpu is not None:
            checks.append(("gateway CPU per request (unary, max load)", f"{cpu:.3f} ms", "<= 0.5 ms", cpu <= 0.5))
        checks.append(("max throughput, one worker (unary)", f"{unary_max['rps']:.0f} rps", ">= 1500", None))
        checks[-1] = (*checks[-1][:3], unary_max["rps"] >= 1500)
    for key, cmp_ in comparisons.items():
        mode, load = key.split("/")
        if load == "r300" and mode == "unary" and cmp_.get("added_p99_ms") is not None:
            v = cmp_["added_p99_ms"]
            checks.append(("added p99 at 300 rps (unary)", f"{v:.2f} ms", "<= 2 ms", v <= 2.0))
        if mode == "stream" and load != "max" and cmp_.get("added_ttfb_p50_ms") is not None:
            v = cmp_["added_ttfb_p50_ms"]
            checks.append((f"added time to first byte, p50 ({load}, stream)", f"{v:.2f} ms", "<= 1 ms", v <= 1.0))
    return checks


def machine_meta(a: argparse.Namespace, upstream: Any) -> dict[str, Any]:
    """Machine, versions and pinning, for the JSON."""
    model_name = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model_name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for pkg in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "orjson", "prometheus_client"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:
            versions[pkg] = None
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host_cpus": os.cpu_count(),
        "cpu_model": model_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gw_cpus": a.gw_cpus,
        "load_cpus": a.load_cpus,
        "upstream": upstream.kind,
        "upstream_url": upstream.base,
        "wrk": shutil.which(a.wrk) if not a.no_wrk else None,
        "duration_s": a.duration,
        "open_loop_warmup_s": a.ol_warmup,
        "versions": versions,
    }


def print_results(console: Any, result: dict[str, Any], a: argparse.Namespace) -> None:
    """The table, the target checks (also stored in ``result["targets"]``), the RSS line and the noisy steps."""
    console.print(results_table(result["steps"], result["comparisons"]))
    checks = target_checks(result["steps"], result["comparisons"], a)
    result["targets"] = [dict(zip(("name", "measured", "target", "ok"), c, strict=True)) for c in checks]
    for name, measured, limit, ok in checks:
        mark = "[green]ok[/green]" if ok else "[red]MISSED[/red]"
        console.print(f"  {mark}  {name}: {measured} (target {limit})")
    console.print(
        f"  gateway RSS: {(result['gw_rss_kb_after_warmup'] or 0) / 1024:.1f} MB after warm-up, "
        f"{(result['gw_rss_kb_end'] or 0) / 1024:.1f} MB at the end, peak (VmHWM) "
        f"{(result['gw_peak_rss_kb'] or 0) / 1024:.1f} MB"
    )
    noisy = [f"{r['target']} {r['mode']} {r['load']}" for r in result["steps"] if r.get("noisy")]
    if noisy:
        console.print(f"  [yellow]noisy steps (foreign CPU > {a.noise_max} cores): {', '.join(noisy)}")
