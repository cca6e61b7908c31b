"""Exemplars on the gateway's latency histograms (issue 20, item 1), in process: the OpenMetrics format when the
scraper asks for it, the classic text format otherwise; exemplars only for recorded traces (none with tracing off,
none for an unsampled trace), with the request id when it fits OpenMetrics' 128 characters."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import Gateway
from gateway.tracing import GatewayTracer
from llmops.config import TelemetryConfig, parse_config
from tests.support import simulator

OPENMETRICS = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
OPENMETRICS += "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"  # what Prometheus 2.x sends
EXEMPLAR = re.compile(r"^(llm_gateway_\w+_bucket)\{[^}]*\} \S+ # \{([^}]*)\} (\S+) \S+$", re.M)


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with simulator("--model", "sim-model", "--ttft-ms", "0", "--tokens-per-second", "0") as url:
        yield url


async def _client(gw: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    await gw.client.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.asgi), base_url="http://gw") as client:
            yield client
    finally:
        await gw.client.close()


def _gateway(sim: str, tracer: GatewayTracer | None) -> Gateway:
    config = parse_config(
        {"models": [{"name": "m", "deployments": [{"name": "d", "base_url": f"{sim}/v1", "model": "sim-model"}]}]}
    )
    return Gateway(config, tracer=tracer or GatewayTracer.from_config(None))


async def _traffic(client: httpx.AsyncClient, request_id: str | None = None) -> None:
    headers = {"x-request-id": request_id} if request_id else {}
    body = {"model": "m", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4}
    assert (await client.post("/v1/chat/completions", json=body, headers=headers)).status_code == 200
    async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}, headers=headers) as r:
        await r.aread()


async def test_openmetrics_with_exemplars_of_traced_requests(sim: str) -> None:
    exporter = InMemorySpanExporter()
    gw = _gateway(sim, GatewayTracer.from_config(None, exporter=exporter))
    async for client in _client(gw):
        await _traffic(client, request_id="req-exemplar-0001")
        classic = await client.get("/metrics")
        assert classic.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert " # {" not in classic.text
        scraped = await client.get("/metrics", headers={"accept": OPENMETRICS})
    assert scraped.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert scraped.text.endswith("# EOF\n")
    found = {(name, labels) for name, labels, _value in EXEMPLAR.findall(scraped.text)}
    trace_ids = {f"{s.context.trace_id:032x}" for s in exporter.get_finished_spans()}
    names = {name for name, _ in found}
    assert names == {
        "llm_gateway_request_duration_seconds_bucket",
        "llm_gateway_time_to_first_token_seconds_bucket",
        "llm_gateway_time_per_output_token_seconds_bucket",
    }
    for _, labels in found:
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        assert pairs["request_id"] == "req-exemplar-0001" and pairs["trace_id"] in trace_ids


async def test_no_exemplars_without_a_recorded_trace(sim: str) -> None:
    off = _gateway(sim, None)  # tracing off: no exemplar work at all
    async for client in _client(off):
        await _traffic(client)
        scraped = await client.get("/metrics", headers={"accept": OPENMETRICS})
    assert "llm_gateway_request_duration_seconds_bucket" in scraped.text and not EXEMPLAR.findall(scraped.text)
    unsampled = _gateway(
        sim, GatewayTracer.from_config(TelemetryConfig(sample_ratio=0.0), exporter=InMemorySpanExporter())
    )
    async for client in _client(unsampled):
        await _traffic(client)
        scraped = await client.get("/metrics", headers={"accept": OPENMETRICS})
    assert not EXEMPLAR.findall(scraped.text)  # the trace id exists, but nothing was recorded: no dead link


async def test_a_long_request_id_is_left_out_of_the_exemplar(sim: str) -> None:
    gw = _gateway(sim, GatewayTracer.from_config(None, exporter=InMemorySpanExporter()))
    long_id = "r" * 100  # a valid client id (up to 128), too long for the exemplar beside a trace id
    async for client in _client(gw):
        await _traffic(client, request_id=long_id)
        scraped = await client.get("/metrics", headers={"accept": OPENMETRICS})
    labels = [dict(re.findall(r'(\w+)="([^"]*)"', found)) for _, found, _ in EXEMPLAR.findall(scraped.text)]
    assert labels and all(set(pairs) == {"trace_id"} for pairs in labels)
