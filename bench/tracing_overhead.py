#!/usr/bin/env python3
"""What tracing costs the gateway per request: the span calls one request makes, timed in this process.

Not a test. One request's tracing work is what ``gateway/proxy.py`` does for a plain chat completion: start the
SERVER span (a new trace), describe it, start one CLIENT attempt span and take its
``traceparent``, record the response, end the attempt, set the request's ``llmops.*`` totals, end the request.

Three setups, measured alternately in rounds (so that a busy box slows all of them alike):

- ``off``: no ``telemetry.otlp_endpoint``: the shared no-op objects (the baseline);
- ``on, batch``: the production setup, a ``BatchSpanProcessor`` (its export thread runs beside the loop);
- ``on, batch, 10% / 1% sampled``: the same with ``telemetry.sample_ratio`` 0.1 / 0.01;
- ``on, simple``: a ``SimpleSpanProcessor``, which exports on the caller's thread (what the tests use).

The exporter encodes the spans to OTLP protobuf as the real one does, then drops the bytes: the figures are the
gateway process's own work (the span calls on the request path, and the encoding in the processor's thread, which
competes for the GIL), not the network's. Prints microseconds per request (the median of the rounds) and the ratio to
``off``. Each round ends with a flush, so every span's encoding is timed in its own setup.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from rich.console import Console
from rich.table import Table

from gateway.tracing import GatewayTracer

MAX_SPANS_PER_ROUND = 2 * 200_000  # two spans per request, --requests at most 200,000
HEADERS = [(b"content-type", b"application/json")]  # a new trace (a caller's sampled flag would override the ratio)


class DroppingExporter(SpanExporter):
    """Encodes every span as the OTLP exporter does (protobuf, in the exporting thread of this process), then drops
    the bytes instead of sending them."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        encode_spans(spans).SerializePartialToString()
        return SpanExportResult.SUCCESS


def one_request(tracer: GatewayTracer) -> None:
    """The tracing calls of one plain chat completion, in the order the gateway makes them."""
    request = tracer.start_request(operation="chat", headers=HEADERS)
    if request is None:  # tracing off
        return
    request.set_request(request_model="llama-3-8b", provider="openai_compatible", stream=False, max_tokens=64)
    attempt = request.start_attempt(
        deployment="vllm-a", upstream_model="llama-3-8b", server_address="vllm", server_port=8000, attempt=1
    )
    attempt.traceparent()
    attempt.tracestate()
    request.set_response(
        response_model="llama-3-8b",
        response_id="chatcmpl-1",
        finish_reasons=["stop"],
        input_tokens=12,
        output_tokens=34,
    )
    attempt.end(200)
    request.set_attributes(
        {
            "llmops.request_id": "req-1",
            "llmops.deployment": "vllm-a",
            "llmops.usage.input_tokens": 12,
            "llmops.usage.output_tokens": 34,
            "llmops.usage.cached_input_tokens": 0,
            "llmops.cost_usd": 0.0001,
        }
    )
    request.end(200)


def batch_tracer(sample_ratio: float | None = None) -> GatewayTracer:
    """The production setup (``BatchSpanProcessor``), optionally recording only ``sample_ratio`` of the traces (as
    ``telemetry.sample_ratio`` does)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create({SERVICE_NAME: "bench"})
    if sample_ratio is None:
        provider = TracerProvider(resource=resource)
    else:
        provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
    # A queue that holds a whole round: with the default 2,048 the bench would drop spans, and their encoding.
    provider.add_span_processor(BatchSpanProcessor(DroppingExporter(), max_queue_size=2 * MAX_SPANS_PER_ROUND))
    return GatewayTracer(provider)


def time_per_request(tracer: GatewayTracer, requests: int) -> float:
    """Seconds per request over ``requests`` requests."""
    started = time.perf_counter()
    for _ in range(requests):
        one_request(tracer)
    tracer.force_flush()  # the spans still queued are encoded inside the timing, not in the next setup's
    return (time.perf_counter() - started) / requests


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000, help="requests per round and setup (default 20000)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds, alternating the setups (default 5)")
    a = ap.parse_args(argv)
    if not 0 < a.requests <= MAX_SPANS_PER_ROUND // 2:
        ap.error(f"--requests must be 1..{MAX_SPANS_PER_ROUND // 2}")
    setups: dict[str, Callable[[], GatewayTracer]] = {
        "off": lambda: GatewayTracer(None),
        "on, batch": batch_tracer,
        "on, batch, 10% sampled": lambda: batch_tracer(0.1),
        "on, batch, 1% sampled": lambda: batch_tracer(0.01),
        "on, simple": lambda: GatewayTracer.from_config(None, exporter=DroppingExporter()),
    }
    tracers = {name: make() for name, make in setups.items()}
    for tracer in tracers.values():  # warm-up
        time_per_request(tracer, 1000)
    results: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(a.rounds):
        for name, tracer in tracers.items():
            results[name].append(time_per_request(tracer, a.requests))
    for tracer in tracers.values():
        tracer.shutdown()
    baseline = statistics.median(results["off"])
    table = Table(title=f"Tracing work per request ({a.requests} requests x {a.rounds} rounds, median)")
    for column in ("setup", "µs per request", "added µs", "ratio to off"):
        table.add_column(column, justify="left" if column == "setup" else "right")
    for name, samples in results.items():
        median = statistics.median(samples)
        table.add_row(name, f"{median * 1e6:.1f}", f"{(median - baseline) * 1e6:.1f}", f"{median / baseline:.0f}x")
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
