"""Conformance of the gateway's spans to the OpenTelemetry GenAI conventions, in both naming modes (issue 20, item 6).

By default the attempt (CLIENT) span carries today's usage names only: ``gen_ai.usage.input_tokens`` and
``gen_ai.usage.output_tokens``. With ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` it also carries the
latest names for the parts of those counts: ``gen_ai.usage.cache_read.input_tokens``,
``gen_ai.usage.cache_write.input_tokens`` and ``gen_ai.usage.reasoning.output_tokens``. In both modes: usage never
on the SERVER span, never a deprecated name (``gen_ai.system``, ``gen_ai.usage.prompt_tokens``, ...). Real requests
through the gateway to upstreams answering with Anthropic-style cache usage and OpenAI-style reasoning usage."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import Gateway
from gateway.tracing import GatewayTracer, latest_genai_names
from llmops.config import parse_config
from tests.support import ScriptedUpstream

DEPRECATED = {"gen_ai.system", "gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens"}
TODAY = {"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"}
LATEST = {
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.reasoning.output_tokens",
}
REQUIRED_CLIENT = {"gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "server.address"}


def test_the_opt_in_is_read_as_opentelemetry_reads_it() -> None:
    assert latest_genai_names({}) is False
    assert latest_genai_names({"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}) is True
    assert latest_genai_names({"OTEL_SEMCONV_STABILITY_OPT_IN": "http, gen_ai_latest_experimental"}) is True
    assert latest_genai_names({"OTEL_SEMCONV_STABILITY_OPT_IN": "http,database"}) is False


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[ScriptedUpstream, ScriptedUpstream]]:
    with ScriptedUpstream() as anthropic, ScriptedUpstream() as openai_up:
        anthropic.reply = (
            200,
            {"Content-Type": "application/json"},
            orjson.dumps(
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-x",
                    "content": [{"type": "text", "text": "hi"}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 10,
                        "cache_read_input_tokens": 300,
                        "cache_creation_input_tokens": 100,
                        "output_tokens": 5,
                    },
                }
            ),
        )
        openai_up.reply = (
            200,
            {"Content-Type": "application/json"},
            orjson.dumps(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "o-x",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
                    ],
                    "usage": {
                        "prompt_tokens": 20,
                        "completion_tokens": 50,
                        "total_tokens": 70,
                        "completion_tokens_details": {"reasoning_tokens": 40},
                    },
                }
            ),
        )
        yield anthropic, openai_up


async def _spans(upstreams: tuple[ScriptedUpstream, ScriptedUpstream], model: str) -> tuple[dict, dict]:
    anthropic, openai_up = upstreams
    config = parse_config(
        {
            "models": [
                {
                    "name": "claude",
                    "deployments": [
                        {"name": "a", "provider": "anthropic", "base_url": anthropic.url, "model": "claude-x"}
                    ],
                },
                {"name": "reasoner", "deployments": [{"name": "o", "base_url": openai_up.url, "model": "o-x"}]},
            ]
        }
    )
    exporter = InMemorySpanExporter()
    gw = Gateway(config, tracer=GatewayTracer.from_config(None, exporter=exporter))
    await gw.client.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.asgi), base_url="http://gw") as client:
            body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    finally:
        await gw.client.close()
    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.kind == SpanKind.SERVER]
    (attempt,) = [s for s in spans if s.kind == SpanKind.CLIENT]
    return dict(server.attributes or {}), dict(attempt.attributes or {})


@pytest.mark.parametrize("latest", [False, True], ids=["default names", "gen_ai_latest_experimental"])
@pytest.mark.parametrize(
    ("model", "parts"),
    [
        (
            "claude",
            {
                "gen_ai.usage.input_tokens": 410,
                "gen_ai.usage.output_tokens": 5,
                "gen_ai.usage.cache_read.input_tokens": 300,
                "gen_ai.usage.cache_write.input_tokens": 100,
            },
        ),
        (
            "reasoner",
            {
                "gen_ai.usage.input_tokens": 20,
                "gen_ai.usage.output_tokens": 50,
                "gen_ai.usage.reasoning.output_tokens": 40,
            },
        ),
    ],
)
async def test_usage_attribute_names(
    upstreams: tuple[ScriptedUpstream, ScriptedUpstream],
    monkeypatch: pytest.MonkeyPatch,
    latest: bool,
    model: str,
    parts: dict[str, int],
) -> None:
    if latest:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    else:
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    server, attempt = await _spans(upstreams, model)
    usage = {name: value for name, value in attempt.items() if name.startswith("gen_ai.usage.")}
    expected = {name: value for name, value in parts.items() if latest or name in TODAY}
    assert usage == expected
    assert set(attempt) >= REQUIRED_CLIENT
    assert not any(name.startswith("gen_ai.usage.") for name in server)  # usage counted once, on the attempt
    assert not (DEPRECATED | (set() if latest else LATEST)) & (set(server) | set(attempt))
    assert server["llmops.usage.input_tokens"] == parts["gen_ai.usage.input_tokens"]
