"""``llmops demo``: start the stack, send the traffic, print what was measured, stay up (or stop with ``--once``)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llmops.demo.processes import run_processes, stop_on_termination
from llmops.demo.redis_choice import demo_redis
from llmops.demo.report import judge_summary, print_drift, print_where_to_look, scrape, summarise
from llmops.demo.stack import Urls, demo_config, parts, pick_urls
from llmops.demo.traffic import send_traffic
from llmops.demo.waiting import wait_for_drift, wait_for_judging


def run_demo(
    requests: int = 300,
    concurrency: int = 16,
    gateway_port: int = 8080,
    simulator_port: int = 8000,
    stay_up: bool = True,
    redis: str = "auto",
    gateway_workers: int = 1,
) -> int:
    """Run the demo; returns the process exit code."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    urls = pick_urls(gateway_port, simulator_port)
    workdir = Path(tempfile.mkdtemp(prefix="llmops-demo-"))
    config_path = workdir / "config.yaml"
    console.print(f"[bold]llmops demo[/bold]: config and logs in {workdir}")
    with stop_on_termination(), demo_redis(redis, workdir, console) as redis_url:
        config = demo_config(
            urls.simulator,
            urls.judge,
            urls.port("gateway"),
            redis_url,
            urls.port("monitors"),
            str(workdir / "drift"),
        )
        config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        processes = parts(urls, workdir, config_path, gateway_workers)
        if gateway_workers > 1:
            console.print(f"gateway: {gateway_workers} worker processes on one port, one /metrics for them all")
        with run_processes(processes):
            _drive(console, urls, requests, concurrency)
            if stay_up:
                console.print("The stack stays up; press Ctrl+C to stop it.")
                with contextlib.suppress(KeyboardInterrupt):
                    while all(p.popen is not None and p.popen.poll() is None for p in processes):
                        time.sleep(0.5)
    return 0


def _drive(console: Console, urls: Urls, requests: int, concurrency: int) -> None:
    """Send the traffic, wait for the monitors to catch up, print both summaries and where to look."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        outcomes = asyncio.run(send_traffic(urls.gateway, requests, concurrency, progress))
    console.print(
        f"client side: {outcomes['ok']} succeeded ({outcomes['chat']} chat completions, {outcomes['responses']} "
        f"through the Responses API, {outcomes['messages']} through Anthropic's Messages API), {outcomes['error']} "
        "failed (the simulator injects ~3% faults on purpose)"
    )
    console.print(summarise(scrape(f"{urls.gateway}/metrics")))
    wait_for_judging(console, urls.monitors, columns)
    console.print(judge_summary(scrape(f"{urls.monitors}/metrics")))
    print_drift(console, wait_for_drift(urls.monitors))
    print_where_to_look(console, urls)
