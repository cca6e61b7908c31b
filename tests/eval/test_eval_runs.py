"""A long run: interrupted (SIGINT) midway and resumed, it asks no item twice and ends with the results of an
uninterrupted run; ``--budget-usd`` stops it with a clear message (exit 3); ``--every`` reruns it."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.eval.support import MODEL, gateway_for, llmops_eval, need_lm_eval, results, skilled_simulator, start_eval
from tests.support import metric, scrape

pytestmark = pytest.mark.slow

TASKS = "arc_challenge,mmlu,kmmlu"
REQUESTS = 3 * 8 * 4  # one request per choice


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    need_lm_eval()
    folder = tmp_path_factory.mktemp("stack")
    with skilled_simulator(0.75) as sim, gateway_for(sim, folder) as gw:
        yield sim, gw


def _faults(sim: str, method: str, body: dict | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{sim}/admin/faults", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    urllib.request.urlopen(request, timeout=5).read()


def _eval_requests(gw: str) -> float:
    return metric(scrape(gw), "llm_gateway_traffic_requests_total", model=MODEL, kind="eval")


def test_interrupted_run_resumes_without_asking_any_item_twice(stack: tuple[str, str], tmp_path: Path) -> None:
    sim, gw = stack
    runs = str(tmp_path / "runs")
    _faults(sim, "POST", {"ttft_ms": 40})  # slow enough to stop midway
    try:
        start = _eval_requests(gw)
        process = start_eval(
            "--gateway", gw, "--models", MODEL, "--tasks", TASKS, "--runs-dir", runs, "--run-id", "long",
            "--max-concurrency", "2",
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while _eval_requests(gw) - start < 20 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 130, out[-2000:] + err[-4000:]
        assert "interrupted" in err and "llmops eval --resume long" in err
        asked_first = _eval_requests(gw) - start
        assert 20 <= asked_first < REQUESTS
        state = json.loads((tmp_path / "runs" / "long" / "state.json").read_text())
        assert state["status"] == "interrupted"
    finally:
        _faults(sim, "DELETE")
    resumed = llmops_eval("--runs-dir", runs, "--resume", "long")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    total = _eval_requests(gw) - start
    assert total == REQUESTS  # every item asked exactly once over both invocations
    assert results(tmp_path / "runs", "long") == {
        "arc_challenge": {"acc": 0.75, "acc_norm": 0.75},
        "mmlu": {"acc": 0.75},
        "kmmlu": {"acc": 0.75},
    }
    summary = json.loads((tmp_path / "runs" / "long" / "results.json").read_text())["models"][0]
    assert summary["requests"] == REQUESTS  # the stopped invocation's requests carried over
    assert summary["cost_usd"] > 0


def test_budget_stops_the_run_with_a_clear_message(stack: tuple[str, str], tmp_path: Path) -> None:
    sim, gw = stack
    _faults(sim, "POST", {"ttft_ms": 20})
    try:
        start = _eval_requests(gw)
        run = llmops_eval(
            "--gateway", gw, "--models", MODEL, "--tasks", TASKS, "--runs-dir", str(tmp_path), "--run-id", "capped",
            "--max-concurrency", "1", "--budget-usd", "0.0002",
        )  # fmt: skip
    finally:
        _faults(sim, "DELETE")
    assert run.returncode == 3, run.stderr[-4000:]
    assert "budget reached" in run.stderr and "--budget-usd 0.0002" in run.stderr
    assert 0 < _eval_requests(gw) - start < REQUESTS
    assert not (tmp_path / "capped" / "results.json").exists()


def test_every_reruns_the_suite(stack: tuple[str, str], tmp_path: Path) -> None:
    _, gw = stack
    run = llmops_eval(
        "--gateway", gw, "--models", MODEL, "--tasks", "kmmlu", "--limit", "4", "--runs-dir", str(tmp_path),
        "--every", "1s", "--times", "2",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    folders = sorted(path.name for path in tmp_path.iterdir() if (path / "results.json").exists())
    assert len(folders) == 2
    for folder in folders:
        assert results(tmp_path, folder)["kmmlu"]["acc"] in (0.5, 0.75, 1.0)  # 4 of 8 items: a subset
