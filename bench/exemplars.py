#!/usr/bin/env python3
"""What exemplars cost: the recorder's histogram observations of one streamed request (duration, time to first token,
time per output token), and one ``/metrics`` scrape in each format.

Not a test. Setups, alternated in rounds (so a busy box slows all alike), microseconds per request (median):

- ``before``: the observations as before issue 20 (``observe(value)``);
- ``tracing off``: as now with no span (``exemplar = None``, ``observe(value, None)``): no exemplar work at all;
- ``traced, unsampled``: a span whose trace is not recorded (``RequestSpan.exemplar`` answers None);
- ``traced, recorded``: the exemplar labels built and stored with each observation.

Then the scrape: the gateway's registry with the series of 20 models rendered in the classic text format and in
OpenMetrics (which carries the exemplars), ratio to classic.

    .venv/bin/python bench/exemplars.py [--requests 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.metrics import GatewayMetrics, exposition
from gateway.tracing import GatewayTracer, RequestSpan
from llmops.config import TelemetryConfig

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def observations(metrics: GatewayMetrics, span: RequestSpan | None, before: bool) -> Callable[[], None]:
    duration = metrics.duration.labels("m", "openai_compatible", "chat", "true")
    ttft = metrics.ttft.labels("m", "openai_compatible")
    tpot = metrics.tpot.labels("m", "openai_compatible")

    if before:

        def run() -> None:
            duration.observe(1.2)
            ttft.observe(0.2)
            tpot.observe(0.02)

        return run

    def run_now() -> None:
        exemplar = span.exemplar("req-0123456789abcdef") if span is not None else None
        duration.observe(1.2, exemplar)
        ttft.observe(0.2, exemplar)
        tpot.observe(0.02, exemplar)

    return run_now


def timed(run: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        run()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    recorded = GatewayTracer.from_config(None, exporter=InMemorySpanExporter())
    unsampled = GatewayTracer.from_config(TelemetryConfig(sample_ratio=0.0), exporter=InMemorySpanExporter())
    spans = {
        "recorded": recorded.start_request(operation="chat", headers=[]),
        "unsampled": unsampled.start_request(operation="chat", headers=[]),
    }
    setups = {
        "before (observe(value))": observations(GatewayMetrics(process_metrics=False), None, before=True),
        "tracing off": observations(GatewayMetrics(process_metrics=False), None, before=False),
        "traced, unsampled": observations(GatewayMetrics(process_metrics=False), spans["unsampled"], before=False),
        "traced, recorded": observations(GatewayMetrics(process_metrics=False), spans["recorded"], before=False),
    }
    times: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(args.rounds):
        for name, run in setups.items():
            times[name].append(timed(run, args.requests))
    base = statistics.median(times["before (observe(value))"])
    print(f"{args.requests} requests x {args.rounds} rounds; µs per request for its 3 observations (median)")
    for name, values in times.items():
        print(f"  {name:<26} {statistics.median(values):7.2f} µs  {statistics.median(values) / base:5.2f}x")

    metrics = GatewayMetrics()
    span = spans["recorded"]
    assert span is not None
    for i in range(20):
        for endpoint in ("chat", "completions"):
            for stream in ("true", "false"):
                metrics.duration.labels(f"m{i}", "openai_compatible", endpoint, stream).observe(1.0, span.exemplar("r"))
                metrics.requests.labels(f"m{i}", "p", "d", endpoint, stream, "200", "k", "").inc()
        metrics.ttft.labels(f"m{i}", "p").observe(0.2, span.exemplar("r"))
        metrics.tpot.labels(f"m{i}", "p").observe(0.02, span.exemplar("r"))
    scrape: dict[str, list[float]] = {"classic": [], "openmetrics": []}
    for _ in range(args.rounds):
        scrape["classic"].append(timed(lambda: exposition(metrics.registry, ""), 50))
        scrape["openmetrics"].append(timed(lambda: exposition(metrics.registry, OPENMETRICS), 50))
    classic = statistics.median(scrape["classic"])
    sizes = {
        name: len(exposition(metrics.registry, accept)[0])
        for name, accept in (("classic", ""), ("openmetrics", OPENMETRICS))
    }
    print("one /metrics scrape, 20 models, every bucket with an exemplar (median):")
    for name, values in scrape.items():
        value = statistics.median(values)
        print(f"  {name:<12} {value / 1000:7.2f} ms  {value / classic:5.2f}x  {sizes[name]} bytes")


if __name__ == "__main__":
    main()
