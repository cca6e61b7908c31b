"""EleutherAI's lm-evaluation-harness (``lm_eval``, the ``eval`` extra) as a client of the gateway, downloading
nothing: a multiple-choice task through ``local-completions`` (echo + prompt logprobs, token-id prompts, the
tokenizer found at ``/m/MODEL/tokenizer_info``) and a generative one through ``local-chat-completions``. The
simulator is scripted to prefer chosen answers, and the harness's scores equal what the script makes them.
Without the extra these tests skip, except under CI (``CI`` set), where they fail."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import gateway, gateway_config, metric, scrape, simulator

if importlib.util.find_spec("lm_eval") is None:
    if os.environ.get("CI"):
        pytest.fail("CI installs the eval extra (pip install '.[eval]'), but lm_eval is not importable")
    pytest.skip("lm-evaluation-harness is not installed (pip install '.[eval]')", allow_module_level=True)

MULTIPLE_CHOICE = [
    {"question": "What is the capital of France?", "choices": ["London", "Paris", "Rome", "Berlin"], "answer": 1},
    {"question": "대한민국의 수도는 어디입니까?", "choices": ["부산", "서울", "대구", "인천"], "answer": 1},
]
GENERATIVE = [
    {"question": "What is the capital of France?", "answer": "Paris"},
    {"question": "대한민국의 수도는?", "answer": "서울"},
    {"question": "What is 2+2?", "answer": "4"},
]
# The simulator's script: the right answer wins the first question, a wrong one the second (accuracy 1/2); two
# of three generated answers are right (exact match 2/3).
SCRIPT = [
    {"match": "(?<=Answer:) Paris$", "logprob": -0.01},
    {"match": "(?<=Answer:) 부산$", "logprob": -0.01},
    {"match": "capital of France", "response": "Paris"},
    {"match": "대한민국의 수도", "response": "서울"},
    {"match": r"2\+2", "response": "5"},
]


def _task(folder: Path, name: str, rows: list[dict], spec: dict) -> None:
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    task = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}}}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({**task, "test_split": "test", **spec}, allow_unicode=True))


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tasks")
    metric_list = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]
    _task(
        folder,
        "llmops_mc_sample",
        MULTIPLE_CHOICE,
        {
            "output_type": "multiple_choice",
            "doc_to_text": "Question: {{question}}\nAnswer:",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{answer}}",
            "metric_list": metric_list,
        },
    )
    _task(
        folder,
        "llmops_gen_sample",
        GENERATIVE,
        {
            "output_type": "generate_until",
            "doc_to_text": "{{question}}",
            "doc_to_target": "{{answer}}",
            "generation_kwargs": {"until": ["\n"], "max_gen_toks": 16},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        },
    )
    return folder


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("gw")
    script = folder / "script.yaml"
    script.write_text(yaml.safe_dump(SCRIPT, allow_unicode=True))
    flags = ("--ttft-ms", "0", "--tokens-per-second", "0", "--enable-tokenizer-info-endpoint", "--script", str(script))
    with simulator("--model", "sim-model", *flags) as sim:
        config = gateway_config(
            folder / "config.yaml",
            [
                {
                    "name": "sim-model",
                    "deployments": [{"name": "vllm-sim", "base_url": f"{sim}/v1", "model": "sim-model"}],
                    "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
                }
            ],
        )
        with gateway(config) as url:
            yield url


def _lm_eval(tasks: Path, out: Path, model: str, task: str, base_url: str, *extra: str) -> dict:
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        model,
        "--tasks",
        task,
        "--include_path",
        str(tasks),
        "--model_args",
        f"model=sim-model,base_url={base_url},num_concurrent=1",
        "--output_path",
        str(out),
        *extra,
    ]
    run = subprocess.run(command, cwd=out.parent, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = sorted(out.rglob("results_*.json"))
    assert results, run.stderr[-3000:]
    return json.loads(results[-1].read_text())["results"][task]


def test_multiple_choice_through_completions(gw: str, tasks: Path, tmp_path: Path) -> None:
    before = scrape(gw)
    # The harness finds the tokenizer at the root of its base_url: /m/sim-model/tokenizer_info.
    base_url = f"{gw}/m/sim-model/v1/completions"
    result = _lm_eval(tasks, tmp_path / "mc", "local-completions", "llmops_mc_sample", base_url)
    assert result["acc,none"] == pytest.approx(0.5)
    after = scrape(gw)
    requests = metric(after, "llm_gateway_requests_total", endpoint="completions", status="200") - metric(
        before, "llm_gateway_requests_total", endpoint="completions", status="200"
    )
    assert requests == 8  # one loglikelihood request per choice
    # an echo request's prompt tokens are input tokens, metered and costed
    assert metric(after, "llm_gateway_tokens_total", model="sim-model", type="input") > metric(
        before, "llm_gateway_tokens_total", model="sim-model", type="input"
    )


def test_generation_through_chat_completions(gw: str, tasks: Path, tmp_path: Path) -> None:
    base_url = f"{gw}/v1/chat/completions"
    result = _lm_eval(
        tasks, tmp_path / "gen", "local-chat-completions", "llmops_gen_sample", base_url, "--apply_chat_template"
    )
    assert result["exact_match,none"] == pytest.approx(2 / 3)
