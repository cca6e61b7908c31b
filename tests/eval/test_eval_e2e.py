"""Acceptance of ``llmops eval``, end to end with real processes: ``llmops eval`` → the gateway → the simulator
playing a model of known skill (``--skill 0.75``: exactly 6 of each task's 8 shipped items right) on the shipped
ARC, MMLU, HellaSwag, TruthfulQA, KMMLU, HAE-RAE, KoBEST and GSM8K samples. The scores equal the skill; the gateway
counts the traffic as ``kind="eval"`` with its cost and samples none of it (Redis stream empty, sampling rate 1.0);
the Pushgateway holds the results, a real Prometheus (the repository's ``prometheus.yml`` and ``rules/eval.yml``)
scrapes them and every query of the LLM Evaluation dashboard returns data. Then the simulated model gets worse
(``--skill 0.25``, the same port): the second run's scores fall and ``LLMEvalAccuracyRegression`` fires."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis

from llmops.contract import SAMPLES_STREAM
from tests.e2e.test_e2e_dashboards import panel_queries, variable_queries
from tests.eval.support import MODEL, gateway_for, llmops_eval, need_lm_eval, results, skilled_simulator
from tests.prometheus_support import (
    RULES_DIR,
    finite,
    get_json,
    prometheus,
    prometheus_config,
    pushgateway,
    pushgateway_binary,
    vector,
    wait_targets_up,
    wait_until,
)
from tests.support import free_port, metric, redis_server, scrape

pytestmark = pytest.mark.slow

SAMPLE_TASKS = ["arc_challenge", "gsm8k", "haerae", "hellaswag", "kmmlu", "kobest_boolq", "kobest_copa", "mmlu",
                "truthfulqa_mc1"]  # fmt: skip
# one request per choice of each multiple-choice item, one chat request per GSM8K item
REQUESTS = 8 * (4 + 5 + 4 + 4 + 2 + 2 + 4 + 4) + 8


def _host(url: str) -> str:
    return urlparse(url).netloc


def test_eval_through_the_gateway_to_prometheus_and_a_regression_alert(tmp_path: Path) -> None:
    need_lm_eval()
    pushgateway_binary()
    runs = tmp_path / "runs"
    port = free_port()
    with redis_server() as redis_url, pushgateway(tmp_path / "pgw") as pgw:
        with skilled_simulator(0.75, port) as sim, gateway_for(sim, tmp_path, redis={"url": redis_url}) as gw:
            before = scrape(gw)
            run = llmops_eval(
                "--gateway", gw, "--models", MODEL, "--suite", "sample", "--runs-dir", str(runs), "--run-id", "first",
                "--pushgateway", pgw, "--gateway-config", str(tmp_path / "gateway.yaml"),
            )  # fmt: skip
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
            scores = results(runs, "first")
            assert sorted(scores) == SAMPLE_TASKS
            for task, values in scores.items():
                assert values, task
                for name, value in values.items():
                    assert value == pytest.approx(0.75), (task, name)
            assert set(scores["arc_challenge"]) == {"acc", "acc_norm"}
            assert set(scores["gsm8k"]) == {"exact_match_strict_match", "exact_match_flexible_extract"}
            after = scrape(gw)
            eval_requests = metric(after, "llm_gateway_traffic_requests_total", model=MODEL, kind="eval") - metric(
                before, "llm_gateway_traffic_requests_total", model=MODEL, kind="eval"
            )
            assert eval_requests == REQUESTS
            assert metric(after, "llm_gateway_traffic_requests_total", model=MODEL, kind="user") == 0
            cost = metric(after, "llm_gateway_traffic_cost_usd_total", model=MODEL, kind="eval")
            assert cost > 0
            # the monitors never see evaluation traffic: nothing sampled at rate 1.0
            assert metric(after, "llm_gateway_samples_total", model=MODEL, outcome="queued") == 0
            assert redis.Redis.from_url(redis_url).xlen(SAMPLES_STREAM) == 0
            report = (runs / "first" / "report.md").read_text(encoding="utf-8")
            assert "| arc_challenge | ARC | acc 0.7500 ± 0.1637 |" in report
            assert "vllm-sim" in report and "wrong" in report and "right" in report
            assert (runs / "first" / "report.html").read_text(encoding="utf-8").startswith("<!doctype html>")
            held = get_json(f"{pgw}/api/v1/metrics")["data"]
            pushed = {
                (s["labels"]["task"], s["labels"]["metric"]): float(s["value"])
                for group in held
                for s in group.get("llm_eval_score", {}).get("metrics", [])
            }
            assert pushed == {(task, name): 0.75 for task, values in scores.items() for name in values}
            run_cost = next(g for g in held if "llm_eval_run_cost_usd" in g)["llm_eval_run_cost_usd"]["metrics"][0]
            assert float(run_cost["value"]) == pytest.approx(cost)

        # the simulated model gets worse: same port, a quarter of the items right
        tmp_path.joinpath("again").mkdir()
        with skilled_simulator(0.25, port) as sim, gateway_for(sim, tmp_path / "again") as gw2:
            config = prometheus_config(
                tmp_path / "prometheus.yml",
                {"llm-gateway": [_host(gw2)], "pushgateway": [_host(pgw)]},
                [RULES_DIR / "eval.yml"],
            )
            with prometheus(config, tmp_path / "prom") as prom:
                wait_targets_up(prom, {"pushgateway", "llm-gateway"})
                run = llmops_eval(
                    "--gateway", gw2, "--models", MODEL, "--tasks", "arc_challenge,kmmlu", "--runs-dir", str(runs),
                    "--run-id", "second", "--pushgateway", pgw,
                )  # fmt: skip
                assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
                assert results(runs, "second") == {
                    "arc_challenge": {"acc": 0.25, "acc_norm": 0.25},
                    "kmmlu": {"acc": 0.25},
                }
                _check_alert(prom)
                _check_dashboard(prom)


def _check_alert(prom: str) -> None:
    def firing() -> set[tuple[str, str, str]]:
        alerts = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
        return {
            (a["labels"]["task"], a["labels"]["metric"], a["labels"]["model"])
            for a in alerts
            if a["labels"]["alertname"] == "LLMEvalAccuracyRegression" and a["state"] == "firing"
        }

    found = wait_until(lambda: firing() >= {("arc_challenge", "acc", MODEL), ("kmmlu", "acc", MODEL)}, 90, "the alert")
    assert found
    assert {task for task, _, _ in firing()} == {"arc_challenge", "kmmlu"}  # the tasks not rerun did not regress
    previous = vector(prom, f'llm_eval_previous_score{{model="{MODEL}", task="kmmlu"}}')
    assert [float(s["value"][1]) for s in previous] == [0.75]


def _check_dashboard(prom: str) -> None:
    names = ["llm-evaluation.json"]
    queries = panel_queries(names)
    assert len(queries) >= 9

    def without_data() -> list[str]:
        return [f"{title} [{ref}]: {expr}" for _, title, ref, expr in queries if not finite(vector(prom, expr))]

    # a series born during the run (the eval traffic's cost) has a rate() only after its second scrape
    deadline = time.monotonic() + 20
    missing = without_data()
    while missing and time.monotonic() < deadline:
        time.sleep(0.5)
        missing = without_data()
    assert not missing, "queries without data:\n" + "\n".join(missing)
    for _, name, selector, label in variable_queries(names):
        values = get_json(f"{prom}/api/v1/label/{label}/values?match[]={selector}")["data"]
        assert values, f"variable {name}: no values of {label} in {selector}"
