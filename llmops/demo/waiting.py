"""Waiting for the monitors: until they have judged the sampled traffic, and until each model due a drift run has
had one."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import Progress, ProgressColumn

from llmops.demo.report import metric_value, scrape
from llmops.demo.stack import DRIFT_FIRST_RUN


def wait_for_judging(
    console: Console, monitors_url: str, columns: tuple[ProgressColumn, ...], timeout: float = 60
) -> None:
    """Show the monitors' progress through the sampled traffic until their backlog is empty (or ``timeout``)."""
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("monitors judging the sampled traffic", total=None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            families = scrape(f"{monitors_url}/metrics")
            backlog = metric_value(families, "llm_monitor_stream_backlog")
            done = metric_value(families, "llm_monitor_samples_processed_total")
            progress.update(task, completed=done, total=done + backlog)
            if done and backlog == 0:
                break
            time.sleep(0.5)


def sampled_counts(families: list) -> dict[str, float]:
    """Samples the monitors processed, per model."""
    processed: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == "llm_monitor_samples_processed_total" and sample.labels.get("outcome") == "ok":
                model = sample.labels["model"]
                processed[model] = processed.get(model, 0.0) + sample.value
    return processed


def wait_for_drift(monitors_url: str, timeout: float = 15.0) -> list:
    """The monitors' metrics once every model with enough samples for a drift run has had one (Evidently's first
    import takes a few seconds), or as they are after ``timeout``. No wait when no model has enough."""
    deadline = time.monotonic() + timeout
    while True:
        families = scrape(f"{monitors_url}/metrics")
        due = {model for model, count in sampled_counts(families).items() if count >= DRIFT_FIRST_RUN}
        ran = {s.labels["model"] for f in families for s in f.samples if s.name == "llm_drift_runs_total" and s.value}
        if due <= ran or time.monotonic() > deadline:
            return families
        time.sleep(0.5)
