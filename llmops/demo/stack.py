"""What the demo runs: its models, the gateway's and the monitors' configuration, and the command line of each
part (two simulators, the gateway, a monitors worker), each on a port of its own."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from llmops.demo.ports import free_port
from llmops.demo.processes import DemoProcess

#: The demo's models: one self-hosted (priced by GPU time) and one priced from the shipped price table.
DEMO_MODELS = ("llama-3-8b", "gpt-4o-mini")


DRIFT_WINDOW = 50  # samples per model in the demo's drift windows
DRIFT_EVERY = 20  # a drift run every this many samples of a model
#: The first run comes at the first multiple of DRIFT_EVERY past the reference window (a run at the reference's own
#: last sample would compare the reference with itself).
DRIFT_FIRST_RUN = (DRIFT_WINDOW // DRIFT_EVERY + 1) * DRIFT_EVERY


@dataclass(frozen=True)
class Urls:
    """Where the demo's parts answer (``http://127.0.0.1:PORT``)."""

    gateway: str
    simulator: str
    judge: str
    monitors: str

    def port(self, part: str) -> int:
        """The port of ``part`` (``gateway``, ``simulator``, ``judge`` or ``monitors``)."""
        url: str = getattr(self, part)
        return int(url.rsplit(":", 1)[1])


def pick_urls(gateway_port: int, simulator_port: int) -> Urls:
    """The parts' URLs: the ports asked for when free (the judge next to the simulator, the monitors on 9101), each
    port picked once, so that two parts never get the same one."""
    taken: set[int] = set()
    simulator_port = free_port(simulator_port, taken)
    return Urls(
        gateway=f"http://127.0.0.1:{free_port(gateway_port, taken)}",
        simulator=f"http://127.0.0.1:{simulator_port}",
        judge=f"http://127.0.0.1:{free_port(simulator_port + 1, taken)}",
        monitors=f"http://127.0.0.1:{free_port(9101, taken)}",
    )


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


def _copy_data(name: str, path: Path) -> Path:
    path.write_text(resources.files("llmops").joinpath(f"data/{name}").read_text(encoding="utf-8"), encoding="utf-8")
    return path


def parts(urls: Urls, workdir: Path, config_path: Path, gateway_workers: int = 1) -> list[DemoProcess]:
    """The demo's processes in start order: the simulator (scripted answers for the prompts with a reference, ~3%
    injected faults), the judge simulator (scripted verdicts), the gateway (``gateway_workers`` processes on one
    port, one ``/metrics`` for them all) and a monitors worker; logs in ``workdir``."""
    answers = _copy_data("demo_answers.yaml", workdir / "answers.yaml")
    judge = _copy_data("demo_judge.yaml", workdir / "judge.yaml")
    simulator = ["simulate", "--port", str(urls.port("simulator")), "--ttft-ms", "60"]
    simulator += ["--tokens-per-second", "400", "--error-rate", "0.02", "--midstream-error-rate", "0.01"]
    simulator += ["--enable-prompt-tokens-details", "--seed", "7", "--script", str(answers)]
    for model in DEMO_MODELS:
        simulator += ["--model", model]
    judge_args = ["simulate", "--port", str(urls.port("judge")), "--model", "judge"]
    judge_args += ["--script", str(judge), "--ttft-ms", "20", "--tokens-per-second", "0"]
    config = str(config_path)
    gateway = ["gateway", "--config", config, *(["--workers", str(gateway_workers)] if gateway_workers > 1 else [])]
    return [
        DemoProcess("simulator", simulator, f"{urls.simulator}/health", workdir / "simulator.log"),
        DemoProcess("judge simulator", judge_args, f"{urls.judge}/health", workdir / "judge-simulator.log"),
        DemoProcess("gateway", gateway, f"{urls.gateway}/ready", workdir / "gateway.log"),
        DemoProcess("monitors", ["monitors", "--config", config], f"{urls.monitors}/health", workdir / "monitors.log"),
    ]
