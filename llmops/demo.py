"""``llmops demo``: the stack on one machine with embedded defaults, real processes and real metrics.

Starts a private Redis, the simulator (a vLLM-like upstream serving two models), a second simulator as the judge
model (scripted verdicts), the gateway and a monitors worker as child processes; sends traffic through the gateway
with the official openai SDK (streaming and not, English and Korean prompts, some with a reference answer); then
reads the gateway's and the worker's ``/metrics`` back and prints what they measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmops.demo_redis import demo_redis, free_port
from llmops.promquery import histogram_quantile

PROMPTS = [
    "Summarise the benefits of continuous batching in two sentences.",
    "What is the capital of France and why is it famous?",
    "Write a haiku about GPUs running hot at night.",
    "Explain time to first token to a product manager.",
    "서울에서 가볼 만한 곳을 세 군데 추천해 주세요.",
    "한국어로 짧은 인사말을 작성해 주세요.",
    "List three ways to reduce the cost of serving large language models.",
    "How does a KV cache speed up autoregressive decoding?",
]

#: The demo's models: one self-hosted (priced by GPU time) and one priced from the shipped price table.
DEMO_MODELS = ("llama-3-8b", "gpt-4o-mini")


DRIFT_WINDOW = 50  # samples per model in the demo's drift windows
DRIFT_EVERY = 20  # a drift run every this many samples of a model
#: The first run comes at the first multiple of DRIFT_EVERY past the reference window (a run at the reference's own
#: last sample would compare the reference with itself).
DRIFT_FIRST_RUN = (DRIFT_WINDOW // DRIFT_EVERY + 1) * DRIFT_EVERY

REFERENCES = {
    "What is the capital of France and why is it famous?": "Paris is the capital of France, famous for its art.",
    "서울에서 가볼 만한 곳을 세 군데 추천해 주세요.": "경복궁, 남산타워, 북촌 한옥마을을 추천합니다.",
}


def demo_config(
    simulator_url: str,
    judge_url: str,
    gateway_port: int,
    redis_url: str,
    monitors_port: int,
    reports_dir: str | None = None,
) -> dict:
    """The embedded default configuration the demo runs the gateway and the monitors with."""
    return {
        "server": {"host": "127.0.0.1", "port": gateway_port},
        "redis": {"url": redis_url},
        "monitors": {
            "gateway_url": f"http://127.0.0.1:{gateway_port}/v1",
            "judge_model": "judge",
            "judges": ["rules", "reference", "llm_single", "perplexity"],
            "metrics_host": "127.0.0.1",  # the demo serves this machine only
            "metrics_port": monitors_port,
            # Small windows, so that a few hundred requests already show drift runs (production: 500 / 100 / 100).
            "drift": {"window": DRIFT_WINDOW, "min_samples": 30, "every": DRIFT_EVERY, "reports_dir": reports_dir},
        },
        "models": [
            {
                "name": "judge",
                "deployments": [{"name": "sim-judge", "base_url": f"{judge_url}/v1", "model": "judge"}],
                "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
            },
            {
                "name": "llama-3-8b",
                "deployments": [
                    {"name": "sim-a", "base_url": f"{simulator_url}/v1", "model": "llama-3-8b", "weight": 3},
                    {"name": "sim-b", "base_url": f"{simulator_url}/v1", "model": "llama-3-8b", "weight": 1},
                ],
                "pricing": {"gpu_hour_usd": 2.5, "gpus": 1},
                "sampling": {"rate": 1.0},
            },
            {
                # No pricing here: the cost comes from the shipped price table (gpt-4o-mini's list price).
                "name": "gpt-4o-mini",
                "deployments": [{"name": "sim-openai", "base_url": f"{simulator_url}/v1", "model": "gpt-4o-mini"}],
                "sampling": {"rate": 0.5},
            },
        ],
    }


@dataclass
class _Process:
    name: str
    args: list[str]
    ready_url: str
    log_path: Path
    popen: subprocess.Popen | None = None
    log_file: object = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self.log_file = self.log_path.open("w")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "llmops.cli", *self.args],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.popen.returncode}; its log:\n{self.log_path.read_text()}"
                )
            with contextlib.suppress(OSError), urllib.request.urlopen(self.ready_url, timeout=1) as response:
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready at {self.ready_url} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.log_file is not None:
            self.log_file.close()  # type: ignore[attr-defined]


@contextlib.contextmanager
def _processes(processes: list[_Process]) -> Iterator[None]:
    """Start ``processes`` in order; stop them all in reverse order however the block ends (Ctrl-C, SIGTERM or
    SIGHUP included; a second Ctrl-C while stopping does not leave any running)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        for process in processes:
            process.start(env)
            process.wait_ready()
        yield
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _in_main_thread() else None
        try:
            for process in reversed(processes):
                process.stop()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _stop_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP end the demo as Ctrl-C does (its children run in their own sessions: nobody else stops
    them)."""
    if not _in_main_thread():
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def _send_traffic(gateway_url: str, requests: int, concurrency: int, progress: Progress) -> dict[str, int]:
    import openai

    task = progress.add_task("sending requests through the gateway", total=requests)
    outcomes = {"ok": 0, "error": 0}
    rng = random.Random(7)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async with openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="demo", max_retries=0) as client:

        async def one() -> None:
            model = rng.choice(DEMO_MODELS)
            prompt = rng.choice(PROMPTS)
            messages = [{"role": "user", "content": prompt}]
            options: dict = {"logprobs": rng.random() < 0.3}
            if rng.random() < 0.2:  # a short limit: these answers end truncated (finish_reason "length")
                options["max_tokens"] = 16
            if prompt in REFERENCES:
                options["extra_body"] = {"metadata": {"reference": REFERENCES[prompt]}}
            try:
                if rng.random() < 0.5:
                    stream = await client.chat.completions.create(
                        model=model, messages=messages, stream=True, **options
                    )
                    async for _ in stream:
                        pass
                else:
                    await client.chat.completions.create(model=model, messages=messages, **options)
                outcomes["ok"] += 1
            except openai.APIError:
                outcomes["error"] += 1

        async def worker() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await one()
                progress.advance(task)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return outcomes


def _scrape(url: str) -> list:
    with urllib.request.urlopen(url, timeout=5) as response:
        return list(text_string_to_metric_families(response.read().decode()))


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


def _sampled_counts(families: list) -> dict[str, float]:
    """Samples the monitors processed, per model."""
    processed: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == "llm_monitor_samples_processed_total" and sample.labels.get("outcome") == "ok":
                model = sample.labels["model"]
                processed[model] = processed.get(model, 0.0) + sample.value
    return processed


def _wait_for_drift(monitors_url: str, timeout: float = 15.0) -> list:
    """The monitors' metrics once every model with enough samples for a drift run has had one (Evidently's first
    import takes a few seconds), or as they are after ``timeout``. No wait when no model has enough."""
    deadline = time.monotonic() + timeout
    while True:
        families = _scrape(f"{monitors_url}/metrics")
        due = {model for model, count in _sampled_counts(families).items() if count >= DRIFT_FIRST_RUN}
        ran = {s.labels["model"] for f in families for s in f.samples if s.name == "llm_drift_runs_total" and s.value}
        if due <= ran or time.monotonic() > deadline:
            return families
        time.sleep(0.5)


def _metric_value(families: list, name: str) -> float:
    return sum(s.value for f in families for s in f.samples if s.name == name)


@dataclass(frozen=True)
class _Urls:
    gateway: str
    simulator: str
    judge: str
    monitors: str


def run_demo(
    requests: int = 300,
    concurrency: int = 16,
    gateway_port: int = 8080,
    simulator_port: int = 8000,
    stay_up: bool = True,
    redis: str = "auto",
) -> int:
    """Run the demo; returns the process exit code."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    taken: set[int] = set()  # every port picked once: two parts never get the same one
    simulator_port = free_port(simulator_port, taken)
    urls = _Urls(
        gateway=f"http://127.0.0.1:{free_port(gateway_port, taken)}",
        simulator=f"http://127.0.0.1:{simulator_port}",
        judge=f"http://127.0.0.1:{free_port(simulator_port + 1, taken)}",
        monitors=f"http://127.0.0.1:{free_port(9101, taken)}",
    )
    workdir = Path(tempfile.mkdtemp(prefix="llmops-demo-"))
    config_path = workdir / "config.yaml"
    judge_script = workdir / "judge.yaml"
    judge_script.write_text(resources.files("llmops").joinpath("data/demo_judge.yaml").read_text(encoding="utf-8"))
    answers_script = workdir / "answers.yaml"
    answers_script.write_text(
        resources.files("llmops").joinpath("data/demo_answers.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    simulator_args = ["simulate", "--port", urls.simulator.rsplit(":", 1)[1], "--ttft-ms", "60"]
    simulator_args += ["--tokens-per-second", "400", "--error-rate", "0.02", "--midstream-error-rate", "0.01"]
    simulator_args += ["--enable-prompt-tokens-details", "--seed", "7", "--script", str(answers_script)]
    for model in DEMO_MODELS:
        simulator_args += ["--model", model]
    judge_args = ["simulate", "--port", urls.judge.rsplit(":", 1)[1], "--model", "judge"]
    judge_args += ["--script", str(judge_script), "--ttft-ms", "20", "--tokens-per-second", "0"]
    console.print(f"[bold]llmops demo[/bold]: config and logs in {workdir}")
    with _stop_on_termination(), demo_redis(redis, workdir, console) as redis_url:
        gateway_port_used = int(urls.gateway.rsplit(":", 1)[1])
        monitors_port_used = int(urls.monitors.rsplit(":", 1)[1])
        config = demo_config(
            urls.simulator, urls.judge, gateway_port_used, redis_url, monitors_port_used, str(workdir / "drift")
        )
        config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        processes = [
            _Process("simulator", simulator_args, f"{urls.simulator}/health", workdir / "simulator.log"),
            _Process("judge simulator", judge_args, f"{urls.judge}/health", workdir / "judge-simulator.log"),
            _Process(
                "gateway", ["gateway", "--config", str(config_path)], f"{urls.gateway}/ready", workdir / "gateway.log"
            ),
            _Process(
                "monitors",
                ["monitors", "--config", str(config_path)],
                f"{urls.monitors}/health",
                workdir / "monitors.log",
            ),
        ]
        with _processes(processes):
            _drive(console, urls, requests, concurrency)
            if stay_up:
                console.print("The stack stays up; press Ctrl+C to stop it.")
                with contextlib.suppress(KeyboardInterrupt):
                    while all(p.popen is not None and p.popen.poll() is None for p in processes):
                        time.sleep(0.5)
    return 0


def _drive(console: Console, urls: _Urls, requests: int, concurrency: int) -> None:
    """Send the traffic, wait for the monitors to catch up, print both summaries and where to look."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        outcomes = asyncio.run(_send_traffic(urls.gateway, requests, concurrency, progress))
    console.print(
        f"client side: {outcomes['ok']} succeeded, {outcomes['error']} failed "
        "(the simulator injects ~3% faults on purpose)"
    )
    console.print(summarise(_scrape(f"{urls.gateway}/metrics")))
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("monitors judging the sampled traffic", total=None)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            families = _scrape(f"{urls.monitors}/metrics")
            backlog = _metric_value(families, "llm_monitor_stream_backlog")
            done = _metric_value(families, "llm_monitor_samples_processed_total")
            progress.update(task, completed=done, total=done + backlog)
            if done and backlog == 0:
                break
            time.sleep(0.5)
    console.print(judge_summary(_scrape(f"{urls.monitors}/metrics")))
    drift = _wait_for_drift(urls.monitors)
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
    console.print("Look at:")
    console.print(f"  OpenAI-compatible endpoint  {urls.gateway}/v1   (model: {' or '.join(DEMO_MODELS)})")
    console.print(f"  gateway metrics             {urls.gateway}/metrics")
    console.print(f"  simulated vLLM metrics      {urls.simulator}/metrics")
    console.print(f"  monitors metrics            {urls.monitors}/metrics")
    console.print(f"  drift report (HTML)         {urls.monitors}/reports/<model>   e.g. /reports/{DEMO_MODELS[0]}")
    console.print("  one request's judge results: llmops monitors show REQUEST_ID --redis-url <the Redis above>")
