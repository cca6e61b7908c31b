"""End to end (issue 20, item 2): the simulator's answers get worse, and the quality SLO's burn-rate alert fires.

A gateway samples every request of model ``app`` (SLO ``no_refusals``: 99% of answers are not refusals) to Redis; a
monitors worker runs the rules judge; Prometheus 2.x scrapes both every second and evaluates the rules that
``llmops slo rules`` generates from this test's config (the same generator as prometheus/rules/quality_slo.yml), with
every group evaluated each second and the alerts' ``for`` cut to 0 so the test takes seconds, not minutes. First the
model answers well: the bad share is 0 and nothing fires; then it refuses (the simulator's ``simulate.response``):
the bad share passes 14.4 x the 1% budget over both the 1h and the 5m windows, and the page fires.
"""

from __future__ import annotations

from pathlib import Path

import openai
import yaml

from llmops.config import load_config
from llmops.slo import render_rules
from tests.prometheus_support import (
    get_json,
    prometheus,
    prometheus_binary,
    prometheus_config,
    wait_targets_up,
    wait_until,
    wait_value,
)
from tests.support import free_port, gateway, gateway_config, monitors, redis_server, simulator

REFUSAL = "I'm sorry, but I can't help with that request."


def fast_rules(config: Path, path: Path) -> Path:
    rules = yaml.safe_load(render_rules(load_config(config)))
    for group in rules["groups"]:
        group.pop("interval", None)
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "0s"
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return path


def firing(prom: str) -> list[dict[str, str]]:
    alerts = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
    return [
        a["labels"] for a in alerts if a["state"] == "firing" and a["labels"]["alertname"] == "LLMQualitySLOBurnRate"
    ]


def test_worse_answers_fire_the_quality_slo_page(tmp_path: Path) -> None:
    prometheus_binary()
    worker_port = free_port()
    with redis_server() as redis_url, simulator("--model", "sim", "--ttft-ms", "0", "--tokens-per-second", "0") as sim:
        config = gateway_config(
            tmp_path / "config.yaml",
            [
                {
                    "name": "app",
                    "deployments": [{"name": "d", "base_url": f"{sim}/v1", "model": "sim"}],
                    "sampling": {"rate": 1.0},
                    "slos": [
                        {
                            "name": "no_refusals",
                            "judge": "rules",
                            "criterion": "refusal",
                            "good_above": 0.5,
                            "objective": 0.99,
                        }
                    ],
                }
            ],
            redis={"url": redis_url},
            monitors={"judges": ["rules"]},
        )
        with gateway(config) as gw, monitors(config, port=worker_port) as worker:
            prom_config = prometheus_config(
                tmp_path / "prometheus.yml",
                targets={
                    "llm-gateway": [gw.removeprefix("http://")],
                    "llmops-monitors": [worker.removeprefix("http://")],
                },
                rule_files=[fast_rules(config, tmp_path / "quality_slo.yml")],
            )
            with prometheus(prom_config, tmp_path / "prom") as prom:
                wait_targets_up(prom, {"llm-gateway", "llmops-monitors"})
                client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)

                def ask(n: int, **simulate: str) -> None:
                    for i in range(n):
                        extra = {"simulate": simulate} if simulate else None
                        messages = [{"role": "user", "content": f"question {i}"}]
                        client.chat.completions.create(model="app", messages=messages, max_tokens=8, extra_body=extra)

                # A counter's first scrape is its baseline (increase() counts from there): first let the judge-score
                # series appear, then answer.
                ask(2, response="Paris is the capital of France.")
                wait_value(prom, 'llm_judge_score_count{criterion="refusal"}', lambda v: v >= 2, 30, "the first scores")
                ask(30, response="Paris is the capital of France.")
                wait_value(
                    prom,
                    'llmops:slo_events:increase1h{slo="no_refusals"}',
                    lambda v: v >= 20,
                    30,
                    "20 judged answers",
                )
                wait_value(
                    prom, 'llmops:slo_errors:ratio_rate5m{slo="no_refusals"}', lambda v: v == 0, 10, "no bad answers"
                )
                assert firing(prom) == []

                ask(30, response=REFUSAL)  # the model starts refusing
                labels = wait_until(
                    lambda: [a for a in firing(prom) if a["burn_window"] == "1h"], 30, "the 1h page of the SLO"
                )
                # the page fires as soon as the burn passes 14.4x; the last refusals may still be in the judge's hands
                bad_share = wait_value(
                    prom,
                    'llmops:slo_errors:ratio_rate1h{model="app", slo="no_refusals"}',
                    lambda v: v > 0.4,
                    60,
                    "every refusal judged",
                )
    assert labels == [
        {
            "alertname": "LLMQualitySLOBurnRate",
            "burn_window": "1h",
            "model": "app",
            "severity": "page",
            "slo": "no_refusals",
        }
    ]
    assert 0.4 < bad_share < 0.7  # about half of the judged answers refused (30 of 62)
