"""Spans of real requests through the gateway (in-memory exporter): GenAI attributes for plain, streaming, failed
and retried requests, W3C traceparent continued to the upstream, the trace id in the response and the traffic
sample, and no prompt text in spans unless configured."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
import redis
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import Gateway
from gateway.tracing import GatewayTracer
from llmops.config import TelemetryConfig, parse_config
from llmops.contract import SAMPLES_STREAM as STREAM
from llmops.sample import Sample
from tests.support import ScriptedUpstream, free_port, redis_server, simulator, wait_for

PROMPT = "a secret prompt about Paris"


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model") as url:
        yield url


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


def _config(sim: str, scripted: ScriptedUpstream, redis_url: str | None = None) -> dict:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = {
        "models": [
            {
                "name": "echo",
                "deployments": [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}],
                "sampling": {"rate": 1.0},
            },
            {
                "name": "retried",
                "deployments": [
                    {"name": "dead", "base_url": dead, "model": "sim-model", "weight": 1000},
                    {"name": "alive", "base_url": f"{sim}/v1", "model": "sim-model"},
                ],
            },
            {"name": "scripted", "deployments": [{"name": "rec", "base_url": scripted.url, "model": "up-model"}]},
        ],
        "routing": {"backoff_seconds": 0},
    }
    if redis_url:
        config["redis"] = {"url": redis_url}
    return config


@pytest.fixture()
async def traced(sim: str, scripted: ScriptedUpstream) -> AsyncIterator[tuple[httpx.AsyncClient, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    gateway = Gateway(parse_config(_config(sim, scripted)), tracer=GatewayTracer.from_config(None, exporter=exporter))
    await gateway.client.start()
    transport = httpx.ASGITransport(app=gateway.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client, exporter
    await gateway.client.close()


def _spans(exporter: InMemorySpanExporter) -> tuple[object, list]:
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(server) == 1
    attempts = sorted((s for s in spans if s.kind == SpanKind.CLIENT), key=lambda s: s.attributes["llmops.attempt"])
    return server[0], attempts


def _all_text(spans: list) -> str:
    return " ".join(str(v) for s in spans for v in s.attributes.values())


async def test_plain_request_span(traced: tuple[httpx.AsyncClient, InMemorySpanExporter]) -> None:
    client, exporter = traced
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 50, "temperature": 0.2},
    )
    assert response.status_code == 200
    server, attempts = _spans(exporter)
    assert server.name == "chat echo"
    a = server.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    # the request names the public model; the response names the model that answered, as the upstream calls it
    assert a["gen_ai.request.model"] == "echo" and a["gen_ai.response.model"] == "sim-model"
    assert a["gen_ai.request.stream"] is False
    assert a["gen_ai.request.max_tokens"] == 50 and a["gen_ai.request.temperature"] == 0.2
    # usage is the attempt's (GenAI backends sum gen_ai.usage.* over a trace); the request span has its totals
    assert not any(name.startswith("gen_ai.usage.") for name in a)
    assert a["llmops.usage.input_tokens"] == 5 and a["llmops.usage.output_tokens"] == 5
    assert a["llmops.usage.cached_input_tokens"] == 0 and "llmops.usage.estimated" not in a
    assert a["llmops.cost_usd"] == 0.0  # no price configured
    assert a["llmops.deployment"] == "sim" and a["llmops.request_id"] == response.headers["x-request-id"]
    b = attempts[0].attributes
    assert b["gen_ai.usage.input_tokens"] == 5 and b["gen_ai.usage.output_tokens"] == 5
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert a["gen_ai.response.id"].startswith("chatcmpl-")
    assert a["http.response.status_code"] == 200 and "error.type" not in a
    assert len(attempts) == 1 and attempts[0].name == "chat sim-model"
    assert attempts[0].attributes["http.response.status_code"] == 200  # the upstream's status, on the CLIENT span
    assert attempts[0].attributes["server.address"] == "127.0.0.1" and attempts[0].attributes["server.port"] > 0
    assert attempts[0].parent.span_id == server.context.span_id
    assert response.headers["x-trace-id"] == f"{server.context.trace_id:032x}"
    assert "Paris" not in _all_text([server, *attempts]), "prompt text must stay out of spans by default"


async def test_streaming_request_span(traced: tuple[httpx.AsyncClient, InMemorySpanExporter]) -> None:
    client, exporter = traced
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "one two three"}], "stream": True},
    )
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    server, attempts = _spans(exporter)
    assert server.attributes["gen_ai.request.stream"] is True
    assert server.attributes["llmops.usage.output_tokens"] == 3
    assert attempts[0].attributes["gen_ai.usage.output_tokens"] == 3
    assert tuple(server.attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    assert attempts[0].attributes["http.response.status_code"] == 200


async def test_failed_request_span(traced: tuple[httpx.AsyncClient, InMemorySpanExporter]) -> None:
    client, exporter = traced
    response = await client.post(
        "/v1/chat/completions",
        json={
            "model": "echo",
            "messages": [{"role": "user", "content": "x"}],
            "simulate": {"fault": "error", "status": 500},
        },
    )
    assert response.status_code == 502
    server, attempts = _spans(exporter)
    assert server.attributes["error.type"] == "http_5xx"
    assert server.attributes["http.response.status_code"] == 502
    assert server.status.status_code.name == "ERROR"
    assert attempts[0].attributes["error.type"] == "http_5xx"


@pytest.mark.parametrize(
    ("body", "status", "error_type", "name", "model"),
    [
        (b"{not json", 400, "invalid_request_error", "chat", None),
        (
            b'{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "model_not_found",
            "chat",
            "no-such-model",
        ),
        (b'{"model": "echo"}', 400, "invalid_request_error", "chat echo", "echo"),
    ],
)
async def test_refused_request_still_has_a_span(
    traced: tuple[httpx.AsyncClient, InMemorySpanExporter],
    body: bytes,
    status: int,
    error_type: str,
    name: str,
    model: str | None,
) -> None:
    client, exporter = traced
    response = await client.post(
        "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json", "traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"},
    )
    assert response.status_code == status
    server, attempts = _spans(exporter)
    assert attempts == []
    assert server.name == name
    assert server.context.trace_id == int("ab" * 16, 16)  # joins the caller's trace even when refused
    assert response.headers["x-trace-id"] == "ab" * 16  # so the client can find the refusal's trace
    assert server.attributes["http.response.status_code"] == status
    assert server.attributes["error.type"] == error_type
    assert server.attributes.get("gen_ai.request.model") == model
    assert server.status.status_code.name == "ERROR"


async def test_unauthorized_request_has_a_span(sim: str, scripted: ScriptedUpstream) -> None:
    exporter = InMemorySpanExporter()
    config = _config(sim, scripted)
    config["keys"] = [{"name": "team-a", "sha256": hashlib.sha256(b"sk-team-a").hexdigest()}]
    gateway = Gateway(parse_config(config), tracer=GatewayTracer.from_config(None, exporter=exporter))
    await gateway.client.start()
    try:
        transport = httpx.ASGITransport(app=gateway.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            response = await client.post(
                "/v1/chat/completions",
                json={"model": "echo", "messages": [{"role": "user", "content": "x"}]},
                headers={"authorization": "Bearer sk-wrong"},
            )
    finally:
        await gateway.client.close()
    assert response.status_code == 401
    server, attempts = _spans(exporter)
    assert attempts == [] and server.name == "chat"  # refused before the body was read
    assert server.attributes["error.type"] == "invalid_api_key"
    assert server.attributes["http.response.status_code"] == 401
    assert "sk-wrong" not in _all_text([server])


async def test_cancelled_request_ends_its_span(traced: tuple[httpx.AsyncClient, InMemorySpanExporter]) -> None:
    """A request cancelled while it waits on the upstream (the server shutting down) still ends and exports its
    spans, marked 499 ``cancelled``."""
    client, exporter = traced
    request = asyncio.create_task(
        client.post(
            "/v1/chat/completions",
            json={
                "model": "echo",
                "messages": [{"role": "user", "content": "x"}],
                "simulate": {"fault": "slow", "delay_ms": 5000},
            },
        )
    )
    await asyncio.sleep(0.3)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    server, attempts = _spans(exporter)
    assert server.attributes["error.type"] == "cancelled"
    assert server.attributes["http.response.status_code"] == 499
    assert len(attempts) == 1 and attempts[0].end_time is not None


async def test_retried_request_has_one_span_per_attempt(traced: tuple[httpx.AsyncClient, InMemorySpanExporter]) -> None:
    client, exporter = traced
    response = await client.post(
        "/v1/chat/completions", json={"model": "retried", "messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 200
    server, attempts = _spans(exporter)
    assert [s.attributes["llmops.deployment"] for s in attempts] == ["dead", "alive"]
    assert attempts[0].attributes["error.type"] == "connect"
    assert "error.type" not in attempts[1].attributes and "error.type" not in server.attributes
    assert {s.parent.span_id for s in attempts} == {server.context.span_id}


async def test_traceparent_is_continued_to_the_upstream(
    traced: tuple[httpx.AsyncClient, InMemorySpanExporter], scripted: ScriptedUpstream
) -> None:
    client, exporter = traced
    scripted.reply = (
        200,
        {"Content-Type": "application/json"},
        orjson.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "model": "up-model",
                "choices": [],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ),
    )
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await client.post(
        "/v1/chat/completions",
        json={"model": "scripted", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 9},
        headers={"traceparent": incoming, "tracestate": "vendor1=abc,vendor2=xyz"},
    )
    server, attempts = _spans(exporter)
    assert f"{server.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert server.parent.span_id == int("b7ad6b7169203331", 16)
    sent = scripted.received[-1]["headers"]
    assert sent["traceparent"] == f"00-0af7651916cd43dd8448eb211c80319c-{attempts[0].context.span_id:016x}-01"
    assert sent["tracestate"] == "vendor1=abc,vendor2=xyz"  # the caller's vendor state goes on with it
    assert server.attributes["gen_ai.response.model"] == "up-model"  # as the upstream named it
    assert server.attributes["gen_ai.request.max_tokens"] == 9  # max_completion_tokens, the current name


async def test_prompt_text_only_when_configured(sim: str, scripted: ScriptedUpstream) -> None:
    exporter = InMemorySpanExporter()
    tracer = GatewayTracer.from_config(TelemetryConfig(capture_content=True), exporter=exporter)
    gateway = Gateway(parse_config(_config(sim, scripted)), tracer=tracer)
    await gateway.client.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.asgi), base_url="http://gw") as client:
        await client.post(
            "/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": PROMPT}]}
        )
    await gateway.client.close()
    server, _ = _spans(exporter)
    assert "Paris" in server.attributes["gen_ai.input.messages"]
    assert "Paris" in server.attributes["gen_ai.output.messages"]  # the echo answer


async def test_trace_id_reaches_the_traffic_sample(sim: str, scripted: ScriptedUpstream) -> None:
    with redis_server() as redis_url:
        exporter = InMemorySpanExporter()
        gateway = Gateway(
            parse_config(_config(sim, scripted, redis_url)), tracer=GatewayTracer.from_config(None, exporter=exporter)
        )
        await gateway.client.start()
        await gateway.sampler.start()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.asgi), base_url="http://gw") as client:
            response = await client.post(
                "/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
            )
        await gateway.sampler.close()
        await gateway.client.close()
        entries = wait_for(lambda: redis.Redis.from_url(redis_url).xrange(STREAM))
        sample = Sample.from_json(entries[0][1][b"sample"])
        assert sample.trace_id == response.headers["x-trace-id"]
