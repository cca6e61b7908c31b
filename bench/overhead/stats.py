"""Small statistics on latency samples and RSS series (pure functions)."""

from __future__ import annotations


def pct(sorted_vals: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, round(p / 100.0 * len(sorted_vals) + 0.5) - 1))
    return sorted_vals[k]


def summarize(vals: list[float], prefix: str = "") -> dict[str, float | None]:
    """p50/p90/p99/p99.9, max and mean in ms of latencies in seconds, keyed ``<prefix>p50_ms`` etc."""
    s = sorted(vals)
    out: dict[str, float | None] = {}
    for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        v = pct(s, p)
        out[f"{prefix}{name}_ms"] = None if v is None else round(v * 1e3, 3)
    out[f"{prefix}max_ms"] = round(s[-1] * 1e3, 3) if s else None
    out[f"{prefix}mean_ms"] = round(sum(s) / len(s) * 1e3, 3) if s else None
    return out


def slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (x, y) points; 0 when x does not vary."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den if den else 0.0
