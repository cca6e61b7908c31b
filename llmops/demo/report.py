"""What the demo prints: tables of what the gateway and the monitors measured, read back from their ``/metrics``."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from llmops.demo.promquery import histogram_quantile
from llmops.demo.stack import DEMO_MODELS, DRIFT_EVERY, DRIFT_FIRST_RUN, DRIFT_WINDOW, Urls


def scrape(url: str) -> list:
    """The metric families of the ``/metrics`` page at ``url``."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return list(text_string_to_metric_families(response.read().decode()))


def metric_value(families: list, name: str) -> float:
    """The sum of every sample named ``name``."""
    return sum(s.value for f in families for s in f.samples if s.name == name)


def summarise(families: list) -> Table:
    """A table of what the gateway's ``/metrics`` says, per model."""
    by_name = {family.name: family for family in families}

    def samples(name: str, suffix: str = "") -> list:
        family = by_name.get(name)
        return [s for s in family.samples if s.name == name + suffix] if family else []

    def total(name: str, model: str, suffix: str = "_total", **labels: str) -> float:
        return sum(
            s.value
            for s in samples(name, suffix)
            if s.labels.get("model") == model and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def buckets(name: str, model: str) -> list[tuple[float, float]]:
        merged: dict[float, float] = {}
        for s in samples(name, "_bucket"):
            if s.labels.get("model") == model:
                le = float(s.labels["le"])
                merged[le] = merged.get(le, 0.0) + s.value
        return sorted(merged.items())

    table = Table(title="What the gateway measured (from its own /metrics)")
    for column in (
        "model",
        "requests",
        "errors",
        "p50 latency",
        "p95 latency",
        "p50 TTFT",
        "p95 TTFT",
        "tokens in/out",
        "cost USD",
    ):
        table.add_column(column, justify="left" if column == "model" else "right", overflow="fold")
    for model in DEMO_MODELS:
        requests = total("llm_gateway_requests", model)
        ok = total("llm_gateway_requests", model, status="200")
        latency = buckets("llm_gateway_request_duration_seconds", model)
        ttft = buckets("llm_gateway_time_to_first_token_seconds", model)
        tokens_in = total("llm_gateway_tokens", model, type="input") + total(
            "llm_gateway_tokens", model, type="cached_input"
        )
        tokens_out = total("llm_gateway_tokens", model, type="output")
        cost = total("llm_gateway_cost_usd", model)

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.0f} ms"

        table.add_row(
            model,
            f"{requests:.0f}",
            f"{requests - ok:.0f}",
            ms(histogram_quantile(0.5, latency)),
            ms(histogram_quantile(0.95, latency)),
            ms(histogram_quantile(0.5, ttft)),
            ms(histogram_quantile(0.95, ttft)),
            f"{tokens_in:.0f}/{tokens_out:.0f}",
            f"{cost:.6f}",
        )
    return table


def judge_summary(families: list) -> Table:
    """A table of the judge scores the monitors worker exported."""
    sums: dict[tuple[str, str, str], list[float]] = {}
    for family in families:
        if family.name != "llm_judge_score":
            continue
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                key = (sample.labels["model"], sample.labels["judge"], sample.labels["criterion"])
                slot = sums.setdefault(key, [0.0, 0.0])
                slot[0 if sample.name.endswith("_sum") else 1] += sample.value
    table = Table(title="What the monitors judged (from the worker's /metrics; scores 0..1, 1 = best)")
    for column in ("model", "judge", "criterion", "samples", "mean score"):
        table.add_column(column, justify="right" if column in ("samples", "mean score") else "left", overflow="fold")
    for (model, judge, criterion), (total, count) in sorted(sums.items()):
        if count:
            table.add_row(model, judge, criterion, f"{count:.0f}", f"{total / count:.3f}")
    return table


def drift_summary(families: list) -> Table:
    """A table of each model's latest drift run: how many of the tested features drifted, and which."""
    tested: dict[str, set[str]] = {}
    drifted: dict[str, list[str]] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == "llm_drift_score":
                tested.setdefault(sample.labels["model"], set()).add(sample.labels["feature"])
            elif sample.name == "llm_drift_detected" and sample.value == 1:
                drifted.setdefault(sample.labels["model"], []).append(sample.labels["feature"])
    table = Table(title="Drift: latest window vs reference")
    for column in ("model", "features drifted", "which"):
        table.add_column(column, justify="right" if column == "features drifted" else "left", overflow="fold")
    for model, features in sorted(tested.items()):
        which = sorted(drifted.get(model, []))
        table.add_row(model, f"{len(which)} of {len(features)}", ", ".join(which) or "none")
    return table


def print_drift(console: Console, drift: list) -> None:
    """The drift table of the monitors' metrics ``drift``, or why there is none yet."""
    if any(s.name == "llm_drift_score" for f in drift for s in f.samples):
        console.print(drift_summary(drift))
        drifted = {s.labels["feature"] for f in drift for s in f.samples if s.name == "llm_drift_detected" and s.value}
        if "cost_usd" in drifted:
            console.print(
                "cost_usd drifts at the start of the demo: llama-3-8b is priced by GPU time, and the first requests "
                "found the GPU idle, so their tokens cost more (see the README's Cost section)"
            )
    else:
        console.print(
            f"no drift run yet: a model's first drift run comes after {DRIFT_FIRST_RUN} successful sampled requests "
            f"(the first {DRIFT_WINDOW} make its reference, then a run every {DRIFT_EVERY}); send more with "
            "--requests, or see monitors.log"
        )


def print_where_to_look(console: Console, urls: Urls) -> None:
    """The URLs of what the demo left running."""
    console.print("Look at:")
    console.print(f"  OpenAI-compatible endpoint  {urls.gateway}/v1   (model: {' or '.join(DEMO_MODELS)})")
    console.print(f"  gateway metrics             {urls.gateway}/metrics")
    console.print(f"  simulated vLLM metrics      {urls.simulator}/metrics")
    console.print(f"  monitors metrics            {urls.monitors}/metrics")
    console.print(f"  drift report (HTML)         {urls.monitors}/reports/<model>   e.g. /reports/{DEMO_MODELS[0]}")
    console.print("  one request's judge results: llmops monitors show REQUEST_ID --redis-url <the Redis above>")
