"""Shared by the evaluation tests: skip without lm-evaluation-harness (fail under CI, which installs the eval extra),
the simulator of known skill behind a real gateway, and ``llmops eval`` as a subprocess."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from llmops.eval.answer_key import SAMPLES_KEY
from tests.support import LLMOPS, REPO, gateway, gateway_config, simulator


def need_lm_eval() -> None:
    if importlib.util.find_spec("lm_eval") is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs the eval extra (pip install '.[eval]'), but lm_eval is not importable")
        pytest.skip("lm-evaluation-harness is not installed (pip install '.[eval]')")


MODEL = "sim-model"
PRICING = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


def skilled_simulator(skill: float, port: int | None = None, *extra: str) -> Any:
    """``llmops simulate`` playing a model that gets ``skill`` of every shipped sample task right."""
    return simulator(
        "--model", MODEL, "--ttft-ms", "0", "--tokens-per-second", "0", "--enable-tokenizer-info-endpoint",
        "--skill", str(skill), "--answer-key", str(SAMPLES_KEY), *extra, port=port,
    )  # fmt: skip


@contextmanager
def gateway_for(sim: str, folder: Path, **sections: Any) -> Iterator[str]:
    config = gateway_config(
        folder / "gateway.yaml",
        [
            {
                "name": MODEL,
                "deployments": [{"name": "vllm-sim", "base_url": f"{sim}/v1", "model": MODEL}],
                "pricing": PRICING,
                "sampling": {"rate": 1.0},
            }
        ],
        **sections,
    )
    with gateway(config) as url:
        yield url


def llmops_eval(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.run(
        [*LLMOPS, "eval", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start_eval(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [*LLMOPS, "eval", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def results(runs: Path, run_id: str) -> dict[str, dict[str, float]]:
    """``{task: {metric: score}}`` of the run's first model."""
    data = json.loads((runs / run_id / "results.json").read_text(encoding="utf-8"))
    return {t["task"]: {s["metric"]: s["value"] for s in t["scores"]} for t in data["models"][0]["tasks"]}
