"""gateway/tracing.py: span names, kinds and GenAI attributes, W3C trace context, content capture, the disabled
no-op path, and a real OTLP/HTTP export to a receiver in this process."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.tracing import GatewayTracer, RequestSpan
from llmops.config import TelemetryConfig

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
SECRET_PROMPT = "my secret prompt about project nightingale"
SECRET_ANSWER = "the confidential answer"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def make_tracer(exporter: InMemorySpanExporter, **telemetry: Any) -> GatewayTracer:
    return GatewayTracer.from_config(TelemetryConfig(**telemetry), exporter=exporter)


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind == kind]


def start_chat(
    tracer: GatewayTracer,
    operation: str = "chat",
    headers: list[tuple[bytes, bytes]] | None = None,
    **described: Any,
) -> RequestSpan:
    """A request span started and described as the gateway does (``described``: :meth:`RequestSpan.set_request`'s
    arguments, over a plain non-streaming ``llama-3-8b`` chat)."""
    request = tracer.start_request(operation=operation, headers=headers or [(b"content-type", b"application/json")])
    assert isinstance(request, RequestSpan)
    values: dict[str, Any] = {"request_model": "llama-3-8b", "provider": "openai_compatible", "stream": False}
    values.update(described)
    request.set_request(**values)
    return request


def test_plain_request_attributes(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter, service_name="gw-test")
    request = start_chat(tracer, max_tokens=64, temperature=0.2)
    attempt = request.start_attempt(
        deployment="vllm-a",
        upstream_model="meta-llama/Meta-Llama-3-8B-Instruct",
        server_address="vllm",
        server_port=8000,
        attempt=1,
    )
    request.set_response(
        response_model="meta-llama/Meta-Llama-3-8B-Instruct",
        response_id="chatcmpl-123",
        finish_reasons=["stop"],
        input_tokens=12,
        output_tokens=34,
    )
    attempt.end(200)
    request.end(200)

    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    (server,) = by_kind(spans, SpanKind.SERVER)
    (client,) = by_kind(spans, SpanKind.CLIENT)
    assert server.name == "chat llama-3-8b"
    assert client.name == "chat meta-llama/Meta-Llama-3-8B-Instruct"
    assert server.resource.attributes["service.name"] == "gw-test"

    assert dict(server.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "llama-3-8b",
        "gen_ai.request.stream": False,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.response.model": "meta-llama/Meta-Llama-3-8B-Instruct",
        "gen_ai.response.id": "chatcmpl-123",
        "gen_ai.response.finish_reasons": ("stop",),
        "http.response.status_code": 200,
    }  # no gen_ai.usage.*: the CLIENT span has it, and a trace must not count the same tokens twice
    assert dict(client.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "meta-llama/Meta-Llama-3-8B-Instruct",
        "gen_ai.request.stream": False,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.2,
        "server.address": "vllm",
        "server.port": 8000,
        "llmops.deployment": "vllm-a",
        "llmops.attempt": 1,
        "gen_ai.response.model": "meta-llama/Meta-Llama-3-8B-Instruct",
        "gen_ai.response.id": "chatcmpl-123",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 34,
        "http.response.status_code": 200,
    }
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    assert client.context.trace_id == server.context.trace_id
    assert server.parent is None  # no traceparent: a new trace
    assert request.trace_id == f"{server.context.trace_id:032x}"
    assert server.status.status_code == client.status.status_code == StatusCode.UNSET


def test_streamed_anthropic_request(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter)
    request = start_chat(tracer, request_model="claude", provider="anthropic", stream=True)
    attempt = request.start_attempt(
        deployment="anthropic-main",
        upstream_model="claude-sonnet-4",
        server_address="api.anthropic.com",
        server_port=None,
        attempt=1,
    )
    request.set_response(
        response_model="claude-sonnet-4",
        response_id=None,
        finish_reasons=["length"],
        input_tokens=5,
        output_tokens=None,
    )
    attempt.end(200)
    request.end(200)
    spans = exporter.get_finished_spans()
    (server,) = by_kind(spans, SpanKind.SERVER)
    (client,) = by_kind(spans, SpanKind.CLIENT)
    for span in (server, client):
        assert span.attributes["gen_ai.request.stream"] is True
        assert span.attributes["gen_ai.provider.name"] == "anthropic"
        assert span.attributes["gen_ai.response.finish_reasons"] == ("length",)
        assert "gen_ai.usage.output_tokens" not in span.attributes
        assert "gen_ai.response.id" not in span.attributes
        assert "gen_ai.request.max_tokens" not in span.attributes
    assert client.attributes["gen_ai.usage.input_tokens"] == 5
    assert "gen_ai.usage.input_tokens" not in server.attributes
    assert "server.port" not in client.attributes
    assert client.attributes["server.address"] == "api.anthropic.com"


def test_failed_request(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter)
    request = start_chat(tracer, operation="embeddings", request_model="embed")
    attempt = request.start_attempt(
        deployment="d1", upstream_model="bge", server_address="10.0.0.5", server_port=9000, attempt=1
    )
    attempt.set_error("timeout")
    attempt.end(None)
    request.set_error("timeout", 504)
    request.end(504)  # the status recorded by set_error is kept
    spans = exporter.get_finished_spans()
    (server,) = by_kind(spans, SpanKind.SERVER)
    (client,) = by_kind(spans, SpanKind.CLIENT)
    assert server.name == "embeddings embed"
    assert client.name == "embeddings bge"
    assert server.attributes["error.type"] == "timeout"
    assert server.attributes["http.response.status_code"] == 504
    assert server.status.status_code == StatusCode.ERROR
    assert client.attributes["error.type"] == "timeout"
    assert "http.response.status_code" not in client.attributes
    assert client.status.status_code == StatusCode.ERROR


def test_request_described_once_its_model_is_known(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter)
    request = tracer.start_request(operation="chat", headers=[])
    assert isinstance(request, RequestSpan)
    request.set_request(request_model="llama-3-8b", provider="anthropic", stream=True, max_tokens=8)
    request.start_attempt(deployment="d", upstream_model="up", server_address="h", server_port=1, attempt=1).end(200)
    request.end(200)
    (server,) = by_kind(exporter.get_finished_spans(), SpanKind.SERVER)
    (client,) = by_kind(exporter.get_finished_spans(), SpanKind.CLIENT)
    assert server.name == "chat llama-3-8b"
    assert server.attributes["gen_ai.request.model"] == "llama-3-8b"
    assert server.attributes["gen_ai.provider.name"] == "anthropic"
    assert client.attributes["gen_ai.request.max_tokens"] == 8  # the attempt copies what set_request described
    assert client.attributes["gen_ai.request.stream"] is True


def test_unknown_model_stays_out_of_the_span_name(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter)
    request = tracer.start_request(operation="chat", headers=[])
    assert isinstance(request, RequestSpan)
    request.set_unknown_model("x" * 1000)
    request.set_error("model_not_found", 404)
    request.end(404)
    (server,) = exporter.get_finished_spans()
    assert server.name == "chat"  # span names stay low-cardinality: a client's typo is an attribute only
    assert server.attributes["gen_ai.request.model"] == "x" * RequestSpan.MAX_UNKNOWN_MODEL_CHARS
    assert server.attributes["error.type"] == "model_not_found"


def test_attempt_http_error_status_sets_error_type(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter)
    request = start_chat(tracer)
    request.start_attempt(deployment="d", upstream_model="m", server_address="h", server_port=1, attempt=1).end(503)
    request.end(502)
    (client,) = by_kind(exporter.get_finished_spans(), SpanKind.CLIENT)
    assert client.attributes["error.type"] == "503"
    assert client.attributes["http.response.status_code"] == 503
    assert client.status.status_code == StatusCode.ERROR


def test_retried_attempts_under_one_request(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter)
    request = start_chat(tracer)
    first = request.start_attempt(
        deployment="vllm-a", upstream_model="llama", server_address="vllm-a", server_port=8000, attempt=1
    )
    first_parent = request.traceparent()
    assert first_parent == first.traceparent()
    first.set_error("http_5xx")
    first.end(500)
    second = request.start_attempt(
        deployment="vllm-b", upstream_model="llama", server_address="vllm-b", server_port=8000, attempt=2
    )
    assert request.traceparent() == second.traceparent() != first_parent
    request.set_response(
        response_model="llama", response_id="x", finish_reasons=["stop"], input_tokens=1, output_tokens=2
    )
    second.end(200)
    request.end(200)

    spans = exporter.get_finished_spans()
    (server,) = by_kind(spans, SpanKind.SERVER)
    clients = sorted(by_kind(spans, SpanKind.CLIENT), key=lambda s: s.attributes["llmops.attempt"])
    assert [c.attributes["llmops.deployment"] for c in clients] == ["vllm-a", "vllm-b"]
    assert all(c.parent is not None and c.parent.span_id == server.context.span_id for c in clients)
    assert clients[0].status.status_code == StatusCode.ERROR
    assert clients[0].attributes["error.type"] == "http_5xx"
    assert clients[0].attributes["http.response.status_code"] == 500
    assert "gen_ai.response.id" not in clients[0].attributes
    assert clients[1].status.status_code == StatusCode.UNSET
    assert "error.type" not in clients[1].attributes
    assert clients[1].attributes["gen_ai.response.id"] == "x"
    assert server.status.status_code == StatusCode.UNSET
    assert "error.type" not in server.attributes


def test_traceparent_is_continued(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter)
    headers = [
        (b"host", b"gateway"),
        (b"traceparent", f"00-{PARENT_TRACE}-{PARENT_SPAN}-01".encode()),
        (b"tracestate", b"vendor=abc"),
    ]
    request = start_chat(tracer, headers=headers)
    assert request.trace_id == PARENT_TRACE
    attempt = request.start_attempt(deployment="d", upstream_model="m", server_address="h", server_port=80, attempt=1)
    sent = attempt.traceparent()
    attempt.end(200)
    request.end(200)

    spans = exporter.get_finished_spans()
    (server,) = by_kind(spans, SpanKind.SERVER)
    (client,) = by_kind(spans, SpanKind.CLIENT)
    assert f"{server.context.trace_id:032x}" == PARENT_TRACE
    assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT_SPAN
    assert server.parent.is_remote
    assert server.context.trace_state.get("vendor") == "abc"
    assert sent == f"00-{PARENT_TRACE}-{client.context.span_id:016x}-01"


def test_unsampled_and_invalid_traceparent(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter)
    # Sampled flag 0: the parent-based sampler drops the trace, but the id is kept and sent upstream unsampled.
    request = start_chat(tracer, headers=[(b"traceparent", f"00-{PARENT_TRACE}-{PARENT_SPAN}-00".encode())])
    attempt = request.start_attempt(deployment="d", upstream_model="m", server_address="h", server_port=1, attempt=1)
    assert request.trace_id == PARENT_TRACE
    assert attempt.traceparent() is not None and attempt.traceparent().endswith("-00")
    request.set_content([{"role": "user", "content": "x"}], "y")
    attempt.end(200)
    request.end(200)
    assert exporter.get_finished_spans() == ()
    # A malformed header starts a new trace.
    request = start_chat(tracer, headers=[(b"traceparent", b"garbage")])
    request.end(200)
    (span,) = exporter.get_finished_spans()
    assert span.parent is None and request.trace_id != PARENT_TRACE and len(request.trace_id or "") == 32


def test_no_content_by_default(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter)
    request = start_chat(tracer)
    attempt = request.start_attempt(deployment="d", upstream_model="m", server_address="h", server_port=1, attempt=1)
    request.set_response(response_model="m", response_id="r", finish_reasons=["stop"], input_tokens=1, output_tokens=1)
    request.set_content([{"role": "user", "content": SECRET_PROMPT}], SECRET_ANSWER)
    attempt.end(200)
    request.end(200)
    for span in exporter.get_finished_spans():
        dumped = span.to_json()
        assert SECRET_PROMPT not in dumped and SECRET_ANSWER not in dumped
        assert "gen_ai.input.messages" not in span.attributes
        assert "gen_ai.output.messages" not in span.attributes
        assert not span.events


def test_content_captured_when_enabled(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter, capture_content=True)
    request = start_chat(tracer)
    request.set_response(response_model="m", response_id="r", finish_reasons=["stop"], input_tokens=1, output_tokens=1)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": SECRET_PROMPT}, {"type": "image_url", "image_url": {}}]},
    ]
    request.set_content(messages, SECRET_ANSWER)
    request.end(200)
    (span,) = exporter.get_finished_spans()
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": SECRET_PROMPT}, {"type": "image_url"}]},
    ]
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": SECRET_ANSWER}], "finish_reason": "stop"}
    ]


def test_content_capture_of_a_completion_prompt(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter, capture_content=True)
    request = start_chat(tracer, operation="text_completion")
    request.set_content("Once upon a time", None)
    request.end(200)
    (span,) = exporter.get_finished_spans()
    assert span.name == "text_completion llama-3-8b"
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Once upon a time"}]}
    ]
    assert "gen_ai.output.messages" not in span.attributes


def test_disabled_tracer_starts_no_span() -> None:
    for tracer in (
        GatewayTracer.from_config(None),
        GatewayTracer.from_config(TelemetryConfig()),
        GatewayTracer.from_config(TelemetryConfig(otlp_endpoint="")),
        GatewayTracer.from_config(TelemetryConfig(otlp_endpoint="  ")),
    ):
        assert tracer.enabled is False
        request = tracer.start_request(
            operation="chat", headers=[(b"traceparent", f"00-{PARENT_TRACE}-{PARENT_SPAN}-01".encode())]
        )
        assert request is None
        assert tracer.capture_content is False
        assert tracer.force_flush() is True
        tracer.shutdown()


def test_shutdown_stops_tracing(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter)
    start_chat(tracer).end(200)
    tracer.shutdown()
    tracer.shutdown()  # twice is fine
    assert tracer.enabled is False
    assert tracer.start_request(operation="chat", headers=[]) is None
    assert len(exporter.get_finished_spans()) == 1


def test_ending_twice_exports_once(exporter: InMemorySpanExporter) -> None:
    tracer = make_tracer(exporter)
    request = start_chat(tracer)
    attempt = request.start_attempt(deployment="d", upstream_model="m", server_address="h", server_port=1, attempt=1)
    request.end(200)  # ends the open attempt too
    attempt.end(200)
    request.end(500)
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    (server,) = by_kind(spans, SpanKind.SERVER)
    assert server.attributes["http.response.status_code"] == 200


# ---- a real OTLP/HTTP receiver ------------------------------------------------------------------------------------
class _Receiver(BaseHTTPRequestHandler):
    requests: list[ExportTraceServiceRequest]
    paths: list[str]
    content_types: list[str]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        encoding = self.headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        self.paths.append(self.path)
        self.content_types.append(self.headers.get("content-type", ""))
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.requests.append(message)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"requests": [], "paths": [], "content_types": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    return getattr(any_value, kind)


def test_exports_to_a_real_otlp_http_receiver(otlp_receiver: tuple[str, type[_Receiver]]) -> None:
    endpoint, handler = otlp_receiver
    tracer = GatewayTracer.from_config(TelemetryConfig(otlp_endpoint=endpoint + "/", service_name="gw-otlp"))
    assert tracer.enabled
    request = tracer.start_request(
        operation="chat", headers=[(b"traceparent", f"00-{PARENT_TRACE}-{PARENT_SPAN}-01".encode())]
    )
    request.set_request(request_model="llama-3-8b", provider="openai_compatible", stream=True, max_tokens=16)
    attempt = request.start_attempt(
        deployment="sim", upstream_model="llama-3-8b-up", server_address="simulator", server_port=8000, attempt=1
    )
    request.set_response(
        response_model="llama-3-8b-up", response_id="cmpl-9", finish_reasons=["stop"], input_tokens=7, output_tokens=3
    )
    attempt.end(200)
    request.end(200)
    tracer.shutdown()  # flushes the batch

    assert handler.paths and set(handler.paths) == {"/v1/traces"}
    assert all(ct == "application/x-protobuf" for ct in handler.content_types)
    spans = {}
    for message in handler.requests:
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            assert resource["service.name"] == "gw-otlp"
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans[span.name] = (span, {a.key: _value(a.value) for a in span.attributes})
    assert set(spans) == {"chat llama-3-8b", "chat llama-3-8b-up"}
    server, server_attrs = spans["chat llama-3-8b"]
    client, client_attrs = spans["chat llama-3-8b-up"]
    assert server.trace_id.hex() == client.trace_id.hex() == PARENT_TRACE
    assert server.parent_span_id.hex() == PARENT_SPAN
    assert client.parent_span_id == server.span_id
    assert server.kind == server.SPAN_KIND_SERVER and client.kind == client.SPAN_KIND_CLIENT
    assert server_attrs["gen_ai.operation.name"] == "chat"
    assert server_attrs["gen_ai.provider.name"] == "openai"
    assert server_attrs["gen_ai.request.stream"] is True
    assert server_attrs["gen_ai.request.max_tokens"] == 16
    assert server_attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert client_attrs["gen_ai.usage.input_tokens"] == 7
    assert client_attrs["gen_ai.usage.output_tokens"] == 3
    assert not any(name.startswith("gen_ai.usage.") for name in server_attrs)
    assert client_attrs["server.address"] == "simulator"
    assert client_attrs["server.port"] == 8000
    assert client_attrs["llmops.deployment"] == "sim"
    assert client_attrs["llmops.attempt"] == 1
    assert client_attrs["gen_ai.response.id"] == "cmpl-9"


def _traced_request(tracer: GatewayTracer, headers: list[tuple[bytes, bytes]]) -> RequestSpan:
    request = tracer.start_request(operation="chat", headers=headers)
    assert isinstance(request, RequestSpan)
    request.set_request(request_model="m", provider="openai_compatible", stream=False)
    attempt = request.start_attempt(deployment="d", upstream_model="u", server_address="h", server_port=1, attempt=1)
    request.set_response(response_model="u", response_id="x", finish_reasons=["stop"], input_tokens=1, output_tokens=1)
    attempt.end(200)
    request.end(200)
    return request


def test_sample_ratio_records_a_share_of_new_traces(exporter: InMemorySpanExporter) -> None:
    """``telemetry.sample_ratio``: new traces are recorded at that ratio; unrecorded ones export nothing but keep a
    valid trace id (``x-trace-id``) and send an unsampled ``traceparent`` upstream."""
    tracer = make_tracer(exporter, sample_ratio=0.0)
    request = _traced_request(tracer, [])
    assert exporter.get_finished_spans() == ()
    assert request.trace_id is not None and len(request.trace_id) == 32 and int(request.trace_id, 16)
    traceparent = request.traceparent()
    assert traceparent is not None and int(traceparent[-2:], 16) & 1 == 0  # the sampled bit is off

    tracer = make_tracer(exporter, sample_ratio=0.25)
    for _ in range(400):
        _traced_request(tracer, [])
    recorded = len(by_kind(exporter.get_finished_spans(), SpanKind.SERVER))
    assert 50 <= recorded <= 150, recorded  # 100 expected (binomial, sd ~9)


def test_sample_ratio_follows_the_callers_decision(exporter: InMemorySpanExporter) -> None:
    """Parent-based: a caller's sampled trace is recorded even at ratio 0, and its unsampled one is not at ratio 1,
    so one trace is never half recorded across services."""
    sampled = [(b"traceparent", f"00-{PARENT_TRACE}-{PARENT_SPAN}-01".encode())]
    unsampled = [(b"traceparent", f"00-{PARENT_TRACE}-{PARENT_SPAN}-00".encode())]
    _traced_request(make_tracer(exporter, sample_ratio=0.0), sampled)
    assert len(exporter.get_finished_spans()) == 2
    exporter.clear()
    _traced_request(make_tracer(exporter, sample_ratio=1.0), unsampled)
    assert exporter.get_finished_spans() == ()


def test_sample_ratio_is_validated() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="sample_ratio"):
        TelemetryConfig(sample_ratio=1.5)
