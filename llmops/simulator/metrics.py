"""The simulator's ``/metrics``: vLLM's ``vllm:*`` series, in a private registry per app.

Labels ``model_name`` (the first served name) and ``engine`` (``"0"``), as vLLM exports them. Buckets are vLLM's.

Gauges (read when scraped):
  - ``vllm:num_requests_running``, ``vllm:num_requests_waiting``: sequences admitted / queued (``--max-num-seqs``)
  - ``vllm:kv_cache_usage_perc``: tokens held by running sequences / ``--kv-cache-tokens``, 0..1
    (``vllm:gpu_cache_usage_perc`` with ``--legacy-metric-names``)
Counters (exported with ``_total``):
  - ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``
  - ``vllm:request_success_total{finished_reason}``: ``stop``, ``length``, ``abort`` (client went away),
    ``error`` (injected mid-stream error); injected HTTP errors are not counted, as they never reach vLLM's engine
  - ``vllm:num_preemptions_total``: a sequence whose KV cache does not fit any more is preempted once
  - ``vllm:prefix_cache_queries_total``, ``vllm:prefix_cache_hits_total``: prompt tokens looked up / found
Histograms:
  - ``vllm:time_to_first_token_seconds`` (from arrival, queue included)
  - ``vllm:inter_token_latency_seconds``: one observation per token after the first
    (``vllm:time_per_output_token_seconds`` with ``--legacy-metric-names``)
  - ``vllm:request_time_per_output_token_seconds``: per sequence, decode time / (tokens - 1)
  - ``vllm:e2e_request_latency_seconds``, ``vllm:request_queue_time_seconds``, ``vllm:request_prefill_time_seconds``,
    ``vllm:request_decode_time_seconds``, ``vllm:request_inference_time_seconds``
  - ``vllm:request_prompt_tokens``, ``vllm:request_generation_tokens``
Simulator only:
  - ``llm_simulator_faults_total{fault}``: injected faults (``error``, ``slow``, ``midstream_error``, ``disconnect``)

The values are plain numbers updated on the event loop (no locks, a few hundred nanoseconds per token) and turned
into Prometheus families by a ``prometheus_client`` collector when ``/metrics`` is scraped.

As in vLLM V1, each choice (``n``) and each prompt of a batched completion is one engine request: every per-request
series counts per sequence, and ``vllm:prompt_tokens_total`` counts the prompt once per sequence.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

FINISHED_REASONS = ("stop", "length", "abort", "error")
FAULTS = ("error", "slow", "midstream_error", "disconnect")
LABELS = ["model_name", "engine"]

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)  # fmt: skip
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                   240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


def token_buckets(max_model_len: int) -> tuple[float, ...]:
    """vLLM's 1-2-5 buckets up to the context length: 1, 2, 5, 10, 20, 50, ..."""
    buckets: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_model_len:
                return tuple(buckets)
            buckets.append(float(value))
        exponent += 1


class Count:
    """A counter value."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount``."""
        self.value += amount


class Distribution:
    """A histogram's bucket counts and sum (``bounds`` are the upper bounds, +Inf implied)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Record one value."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, +Inf last."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((floatToGoString(bound), total))
        return out


class EngineMetrics(Collector):
    """The ``vllm:*`` series of one simulated engine, and the collector that exports them."""

    def __init__(
        self,
        model_name: str,
        *,
        max_model_len: int,
        legacy_names: bool,
        running: Callable[[], float],
        waiting: Callable[[], float],
        kv_usage: Callable[[], float],
    ) -> None:
        self._labels = [model_name, "0"]
        kv_name = "vllm:gpu_cache_usage_perc" if legacy_names else "vllm:kv_cache_usage_perc"
        self._gauges = [
            ("vllm:num_requests_running", "Number of requests in model execution batches.", running),
            ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting),
            (kv_name, "KV-cache usage. 1 means 100 percent usage.", kv_usage),
        ]
        self.prompt_tokens = Count()
        self.generation_tokens = Count()
        self.preemptions = Count()
        self.prefix_queries = Count()
        self.prefix_hits = Count()
        self._counters = [
            ("vllm:prompt_tokens", "Number of prefill tokens processed.", self.prompt_tokens),
            ("vllm:generation_tokens", "Number of generation tokens processed.", self.generation_tokens),
            ("vllm:num_preemptions", "Cumulative number of preemption from the engine.", self.preemptions),
            (
                "vllm:prefix_cache_queries",
                "Prefix cache queries, in terms of number of queried tokens.",
                self.prefix_queries,
            ),
            ("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", self.prefix_hits),
        ]
        self.success = {reason: Count() for reason in FINISHED_REASONS}
        self.faults = {fault: Count() for fault in FAULTS}

        tokens = token_buckets(max_model_len)
        itl_name = "vllm:time_per_output_token_seconds" if legacy_names else "vllm:inter_token_latency_seconds"
        self.ttft = Distribution(TTFT_BUCKETS)
        self.itl = Distribution(ITL_BUCKETS)
        self.tpot = Distribution(ITL_BUCKETS)
        self.e2e = Distribution(LATENCY_BUCKETS)
        self.queue = Distribution(LATENCY_BUCKETS)
        self.prefill = Distribution(LATENCY_BUCKETS)
        self.decode = Distribution(LATENCY_BUCKETS)
        self.inference = Distribution(LATENCY_BUCKETS)
        self.request_prompt_tokens = Distribution(tokens)
        self.request_generation_tokens = Distribution(tokens)
        self._histograms = [
            ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", self.ttft),
            (itl_name, "Histogram of inter-token latency in seconds.", self.itl),
            (
                "vllm:request_time_per_output_token_seconds",
                "Histogram of time_per_output_token_seconds per request.",
                self.tpot,
            ),
            ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", self.e2e),
            ("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", self.queue),
            (
                "vllm:request_prefill_time_seconds",
                "Histogram of time spent in PREFILL phase for request.",
                self.prefill,
            ),
            ("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", self.decode),
            (
                "vllm:request_inference_time_seconds",
                "Histogram of time spent in RUNNING phase for request.",
                self.inference,
            ),
            ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", self.request_prompt_tokens),
            (
                "vllm:request_generation_tokens",
                "Number of generation tokens processed.",
                self.request_generation_tokens,
            ),
        ]
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        """The families, as ``prometheus_client`` expects from a collector."""
        labels = self._labels
        for name, doc, source in self._gauges:
            gauge = GaugeMetricFamily(name, doc, labels=LABELS)
            gauge.add_metric(labels, float(source()))
            yield gauge
        for name, doc, count in self._counters:
            counter = CounterMetricFamily(name, doc, labels=LABELS)
            counter.add_metric(labels, count.value)
            yield counter
        success = CounterMetricFamily(
            "vllm:request_success", "Count of successfully processed requests.", labels=[*LABELS, "finished_reason"]
        )
        for reason, count in self.success.items():
            success.add_metric([*labels, reason], count.value)
        yield success
        for name, doc, distribution in self._histograms:
            histogram = HistogramMetricFamily(name, doc, labels=LABELS)
            histogram.add_metric(labels, distribution.buckets(), distribution.sum)
            yield histogram
        faults = CounterMetricFamily("llm_simulator_faults", "Faults injected by the simulator.", labels=["fault"])
        for fault, count in self.faults.items():
            faults.add_metric([fault], count.value)
        yield faults

    def exposition(self) -> bytes:
        """The text exposition of every series."""
        return generate_latest(self.registry)
