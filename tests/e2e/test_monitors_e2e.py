"""End to end: openai SDK → gateway (sampling 1.0) → real Redis → `llmops monitors` → judge calls through the
gateway to a simulator whose answers are scripted → `llm_judge_score` on the worker's /metrics."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.support import (
    free_port,
    gateway,
    gateway_config,
    metric,
    monitors,
    redis_server,
    scrape,
    simulator,
    wait_for,
)


def test_sdk_to_gateway_to_redis_to_monitors_to_judge(tmp_path: Path) -> None:
    script = tmp_path / "judge.yaml"
    script.write_text('- {match: ".*", response: "Helpful, correct and concise. Rating: [[8]]"}\n')
    with (
        redis_server() as redis_url,
        simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "app-model") as app_sim,
        simulator(
            "--script", str(script), "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "judge"
        ) as judge_sim,
    ):
        gw_port = free_port()
        config = gateway_config(
            tmp_path / "config.yaml",
            [
                {
                    "name": "app",
                    "deployments": [{"name": "app-sim", "base_url": f"{app_sim}/v1", "model": "app-model"}],
                    "sampling": {"rate": 1.0},
                },
                {
                    "name": "judge",
                    "deployments": [{"name": "judge-sim", "base_url": f"{judge_sim}/v1", "model": "judge"}],
                    "pricing": {"input_per_mtok": 1, "output_per_mtok": 1},
                    "sampling": {"rate": 1.0},  # judge traffic is still never sampled
                },
            ],
            redis={"url": redis_url},
            monitors={
                "gateway_url": f"http://127.0.0.1:{gw_port}/v1",
                "judge_model": "judge",
                "judges": ["rules", "reference", "llm_single"],
            },
        )
        with gateway(config, port=gw_port) as gw, monitors(config) as worker:
            client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)
            questions = ["what is two plus two", "name a primary colour", "서울은 어느 나라의 수도인가요"]
            for i, question in enumerate(questions):
                client.chat.completions.create(
                    model="app",
                    messages=[{"role": "user", "content": question}],
                    stream=i % 2 == 1,
                    extra_body={"metadata": {"reference": question}},  # echo answers equal their reference
                )
            wait_for(lambda: metric(scrape(worker), "llm_monitor_samples_processed_total", model="app") == 3)
            judged = scrape(worker)
            single = {"model": "app", "judge": "llm_single", "criterion": "overall"}
            assert metric(judged, "llm_judge_score_count", **single) == 3
            assert metric(judged, "llm_judge_score_sum", **single) == pytest.approx(3 * 7 / 9)  # [[8]] → (8-1)/9
            for criterion in ("chrf", "rouge_l"):
                assert metric(judged, "llm_judge_score_sum", judge="reference", criterion=criterion) == pytest.approx(3)
            # BLEU per tokenizer: two English references (13a), one Korean (character, and MeCab-ko morphemes)
            assert metric(judged, "llm_judge_score_sum", judge="reference", criterion="bleu_13a") == pytest.approx(2)
            assert metric(judged, "llm_judge_score_sum", judge="reference", criterion="bleu_char") == pytest.approx(1)
            assert metric(judged, "llm_judge_score_sum", judge="rules", criterion="empty_answer") == 3
            assert metric(judged, "llm_judge_errors_total") == 0
            at_gateway = scrape(gw)
            # judge calls are metered like any traffic, and never sampled again
            assert metric(at_gateway, "llm_gateway_requests_total", model="judge", status="200") == 3
            assert metric(at_gateway, "llm_gateway_cost_usd_total", model="judge") > 0
            assert metric(at_gateway, "llm_gateway_samples_total", model="judge", outcome="queued") == 0
            assert metric(at_gateway, "llm_gateway_samples_total", model="app", outcome="queued") == 3
