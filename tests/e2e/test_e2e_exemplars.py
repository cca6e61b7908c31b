"""Acceptance (issue 20, item 1): from a latency bucket to the request's trace.

A real gateway traces to an OTLP/HTTP receiver in this test and samples every request to Redis; a monitors worker
judges the samples (rules judge); Prometheus 2.x with ``--enable-feature=exemplar-storage`` scrapes both with the
repository's ``prometheus.yml`` (re-targeted). Prometheus asks for OpenMetrics, so the gateway's latency, time to
first token and time per output token histograms and the worker's judge-score histogram carry exemplars. The
exemplars Prometheus returns (``/api/v1/query_exemplars``) name trace ids the receiver holds (the request's SERVER
span), and the request ids the client saw.
"""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

import httpx
import openai

from tests.gateway.test_tracing import _Receiver, otlp_receiver  # noqa: F401 (the fixture)
from tests.prometheus_support import get_json, prometheus, prometheus_binary, prometheus_config, wait_until
from tests.support import free_port, gateway, gateway_config, monitors, redis_server, simulator

HISTOGRAMS = (
    "llm_gateway_request_duration_seconds_bucket",
    "llm_gateway_time_to_first_token_seconds_bucket",
    "llm_gateway_time_per_output_token_seconds_bucket",
    "llm_judge_score_bucket",
)


def exemplars(prom: str, metric: str) -> list[dict[str, str]]:
    """The exemplar labels Prometheus holds for ``metric`` over the last 10 minutes."""
    now = time.time()
    query = urllib.parse.urlencode({"query": metric, "start": now - 600, "end": now + 60})
    answer = get_json(f"{prom}/api/v1/query_exemplars?{query}")
    assert answer.get("status") == "success", answer
    return [e["labels"] for series in answer["data"] for e in series["exemplars"]]


def traced_spans(handler: type[_Receiver]) -> dict[str, set[str]]:
    """trace id -> the names of its spans, from every export the receiver got."""
    out: dict[str, set[str]] = {}
    for message in list(handler.requests):
        for resource_spans in message.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    out.setdefault(span.trace_id.hex(), set()).add(span.name)
    return out


def test_latency_exemplars_lead_to_traces_in_the_receiver(
    tmp_path: Path,
    otlp_receiver: tuple[str, type[_Receiver]],  # noqa: F811
) -> None:
    prometheus_binary()
    endpoint, handler = otlp_receiver
    worker_port = free_port()
    with (
        redis_server() as redis_url,
        simulator("--model", "sim-model", "--ttft-ms", "5", "--tokens-per-second", "2000") as sim,
    ):
        config = gateway_config(
            tmp_path / "config.yaml",
            [
                {
                    "name": "app",
                    "deployments": [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}],
                    "sampling": {"rate": 1.0},
                }
            ],
            redis={"url": redis_url},
            telemetry={"otlp_endpoint": endpoint, "service_name": "gw-exemplars"},
            monitors={"judges": ["rules"]},
        )
        env = {"OTEL_BSP_SCHEDULE_DELAY": "100"}  # export spans within 0.1 s
        with gateway(config, env=env) as gw, monitors(config, port=worker_port) as worker:
            scraped = httpx.get(f"{gw}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
            assert scraped.headers["content-type"].startswith("application/openmetrics-text")
            assert scraped.text.endswith("# EOF\n")
            prom_config = prometheus_config(
                tmp_path / "prometheus.yml",
                targets={"llm-gateway": [gw.removeprefix("http://")], "llmops-monitors": [f"127.0.0.1:{worker_port}"]},
                rule_files=[],
            )
            with prometheus(prom_config, tmp_path / "prom") as prom:
                client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)
                request_ids = set()
                for i in range(6):
                    messages = [{"role": "user", "content": f"question {i}: write a few words"}]
                    raw = client.chat.completions.with_raw_response.create(model="app", messages=messages)
                    raw.parse()
                    request_ids.add(raw.headers["x-request-id"])
                    with client.chat.completions.with_streaming_response.create(
                        model="app", messages=messages, stream=True, max_tokens=8
                    ) as response:
                        list(response.parse())
                        request_ids.add(response.headers["x-request-id"])

                found = {
                    metric: wait_until(lambda m=metric: exemplars(prom, m), 30, f"exemplars of {metric}")
                    for metric in HISTOGRAMS
                }
                assert httpx.get(f"{worker}/health").status_code == 200
                spans = wait_until(
                    lambda: (
                        (t := traced_spans(handler))
                        and all(e["trace_id"] in t for m in found.values() for e in m)
                        and t
                    ),
                    10,
                    "every exemplar's trace in the OTLP receiver",
                )
    for metric, labels in found.items():
        for exemplar in labels:
            assert set(exemplar) == {"trace_id", "request_id"}, (metric, exemplar)
            assert exemplar["request_id"] in request_ids, (metric, exemplar)
            assert "chat app" in spans[exemplar["trace_id"]], (metric, spans[exemplar["trace_id"]])
    print({metric: len(labels) for metric, labels in found.items()})
