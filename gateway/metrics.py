"""The gateway's Prometheus series (names and labels as docs/metrics.md lists them), on a private registry.

Buckets follow the OpenTelemetry GenAI metric advice (duration 0.01…81.92 s doubling; time to first token and time
per output token as advised), so dashboards built on OTel-exported metrics and on these agree.

With several worker processes (``server.workers``), each worker's series live in prometheus_client's multiprocess
files (``multiprocess_dir``) and ``/metrics`` serves them merged (:mod:`gateway.metrics_workers`): counters and
histograms summed, each gauge by the ``multiprocess_mode`` it declares here (docs/metrics.md, "Several workers").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from gateway.metrics_workers import REFRESH_SECONDS, WorkerSeries, multiprocess_registry

log = logging.getLogger("llmops.gateway")

DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

UPSTREAM_ERROR_REASONS = ("timeout", "connect", "http_4xx", "http_5xx", "invalid_response")

_MAX_CHILDREN = 10_000  # label combinations one LabelCache keeps (past that it starts again: still correct)


class LabelCache:
    """A labelled metric's children by label values, each looked up once: ``labels()`` takes a lock and converts
    every value with ``str()`` on each call (~1-2 µs with eight labels, several times per request). The values must
    be strings. A child stays valid as long as nobody removes it from its metric (the gateway never does)."""

    __slots__ = ("children", "metric")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def get(self, *labels: str) -> Any:
        child = self.children.get(labels)
        if child is None:
            if len(self.children) >= _MAX_CHILDREN:
                self.children.clear()
            child = self.children[labels] = self.metric.labels(*labels)
        return child


class GatewayMetrics:
    """Every series the gateway exports. One instance per app; ``render()`` is the ``/metrics`` body.

    ``multiprocess_dir``: this process is one of several workers whose series prometheus_client keeps in that
    directory (``PROMETHEUS_MULTIPROC_DIR``, set before prometheus_client was imported); ``scrape_registry`` then
    merges every worker's, the process collectors give way to per-worker series, and exemplars are not kept.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        process_metrics: bool = True,
        multiprocess_dir: str | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir
        self._sampled: list[tuple[Gauge, Callable[[], float]]] = []
        # what /metrics serves: this registry, or (several workers) every worker's files merged
        self.scrape_registry = self.registry if multiprocess_dir is None else multiprocess_registry(multiprocess_dir)
        if process_metrics and multiprocess_dir is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "llm_gateway_requests",
            "Requests handled, by outcome status (499: the client went away; errors inside a 200 stream are "
            "counted with the error's status).",
            ["model", "provider", "deployment", "endpoint", "stream", "status", "key", "variant"],
            registry=r,
        )
        self.duration = Histogram(
            "llm_gateway_request_duration_seconds",
            "Time from the request's arrival to the last byte of the response.",
            ["model", "provider", "endpoint", "stream"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "llm_gateway_time_to_first_token_seconds",
            "Streaming requests: time from the request's arrival to the first upstream event that carries output "
            "(text, a tool call or a refusal).",
            ["model", "provider"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "llm_gateway_time_per_output_token_seconds",
            "Streaming requests: (duration - time to first token) / (output tokens - 1).",
            ["model", "provider"],
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "llm_gateway_overhead_seconds",
            "The gateway's own time per request, the upstream exchange excluded.",
            ["endpoint", "stream"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "llm_gateway_tokens",
            "Tokens from the upstream's usage; types are disjoint: input (neither read from nor written to a prompt "
            "cache), cached_input (read), cache_write (written), output (not reasoning), reasoning. All prompt tokens "
            "= input + cached_input + cache_write; all output tokens = output + reasoning.",
            ["model", "provider", "key", "type"],
            registry=r,
        )
        self.traffic_requests = Counter(
            "llm_gateway_traffic_requests",
            "Requests by kind: user (applications), judge (the monitors' judges), eval (llmops eval), shadow (the "
            "monitors' shadow comparisons); only user traffic is sampled.",
            ["model", "kind"],
            registry=r,
        )
        self.traffic_cost = Counter(
            "llm_gateway_traffic_cost_usd",
            "Cost in USD by kind of traffic (see llm_gateway_traffic_requests_total).",
            ["model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "llm_gateway_cost_usd",
            "Cost in USD from the model's pricing (per-token prices or GPU time).",
            ["model", "provider", "key", "variant"],
            registry=r,
        )
        self.in_flight = Gauge(
            "llm_gateway_requests_in_flight",
            "Requests being handled now.",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.upstream_errors = Counter(
            "llm_gateway_upstream_errors",
            "Failed upstream exchanges, by reason.",
            ["deployment", "reason"],
            registry=r,
        )
        self.samples = Counter(
            "llm_gateway_samples",
            "Traffic samples: queued (handed to the Redis writer), dropped (queue full or Redis unavailable), "
            "skipped (not selected by the model's sampling rate, or judge traffic).",
            ["model", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "llm_gateway_retries",
            "Requests tried again on another deployment after this deployment failed (connect, timeout, 429, 5xx).",
            ["deployment"],
            registry=r,
        )
        self.fallbacks = Counter(
            "llm_gateway_fallbacks",
            "Requests handed to a fallback model after the model's own deployments failed.",
            ["model", "fallback_model"],
            registry=r,
        )
        self.deployment_healthy = Gauge(
            "llm_gateway_deployment_healthy",
            "1 while a deployment takes traffic, 0 while it cools down after failures (passive health).",
            ["model", "deployment"],
            registry=r,
            multiprocess_mode="livemax",  # 1 while any worker sends it traffic (as max by over gateway hosts)
        )
        self.rate_limited = Counter(
            "llm_gateway_rate_limited", "Requests refused by a key's rpm or tpm limit.", ["key"], registry=r
        )
        self.budget_exceeded = Counter(
            "llm_gateway_budget_exceeded",
            "Requests refused because the key's spend budget is used up.",
            ["key"],
            registry=r,
        )
        self.limits_unavailable = Counter(
            "llm_gateway_limits_unavailable",
            "Requests let through without rate-limit and budget checks because Redis was unreachable (fail open).",
            registry=r,
        )
        self.limits_busy = Counter(
            "llm_gateway_limits_busy",
            "Requests refused with 503 because no Redis connection for their limit check was free in time (the "
            "gateway is overloaded; Redis is up).",
            registry=r,
        )
        self.uncharged_spend = Gauge(
            "llm_gateway_uncharged_spend_usd",
            "Spend kept in this process's memory because Redis was unreachable when it was charged; added to the "
            "keys' spend when Redis is back.",
            registry=r,
            multiprocess_mode="livesum",  # each worker holds its own; a dead worker's is lost with it
        )
        self.key_spend = Gauge(
            "llm_gateway_key_spend_usd",
            "Spend of a key in its current budget period (from Redis).",
            ["key"],
            registry=r,
            multiprocess_mode="mostrecent",  # the latest reading from Redis, whichever worker made it
        )
        self.key_budget = Gauge(
            "llm_gateway_key_budget_usd",
            "A key's configured spend budget per period (0: none).",
            ["key"],
            registry=r,
            multiprocess_mode="livemax",  # configuration: the same in every worker
        )
        self.feedback = Counter(
            "llm_gateway_feedback",
            "User feedback (thumbs) on answers, by the answering model and variant.",
            ["model", "variant", "rating"],
            registry=r,
        )
        self.client_disconnects = Counter(
            "llm_gateway_client_disconnects",
            "Requests whose client went away before the response was complete (the upstream call is cancelled).",
            ["model", "endpoint"],
            registry=r,
        )
        self.client_stalls = Counter(
            "llm_gateway_client_stalls",
            "Requests whose client stopped reading its response: cut off after server.client_stall_seconds (499), "
            "counted as the client's, never against the deployment (also in llm_gateway_client_disconnects_total).",
            ["model", "endpoint"],
            registry=r,
        )
        self.shutdown_cut = Counter(
            "llm_gateway_shutdown_cut",
            "Requests still running when the shutdown deadline (server.drain_seconds) passed, ended by the gateway "
            "(a stream with an error event, a request waiting for its upstream with 503).",
            ["model", "endpoint"],
            registry=r,
        )
        self.usage_estimated = Counter(
            "llm_gateway_usage_estimated",
            "Streams that ended without the upstream's usage (client gone, cut, or a host ignoring include_usage): "
            "their tokens and cost are the gateway's estimate (gateway/usage_estimate.py).",
            ["model"],
            registry=r,
        )
        self.estimated_cost = Counter(
            "llm_gateway_estimated_cost_usd",
            "The part of llm_gateway_cost_usd_total charged from the gateway's usage estimate (streams that ended "
            "without the upstream's usage).",
            ["model"],
            registry=r,
        )
        self.cache_savings = Counter(
            "llm_gateway_cache_savings_usd",
            "Per-token-priced models: USD prompt caching saved against uncached prices (cached input tokens x "
            "(input - cached input price), plus cache writes priced below input). GPU-priced models: none.",
            ["model"],
            registry=r,
        )
        self.cache_write_premium = Counter(
            "llm_gateway_cache_write_premium_usd",
            "Per-token-priced models: USD paid above the input price for tokens written to a prompt cache "
            "(cache writes x (cache write - input price)); net saving = llm_gateway_cache_savings_usd_total - this.",
            ["model"],
            registry=r,
        )
        self.pii_masked = Counter(
            "llm_gateway_pii_masked",
            "Personal data masked in traffic samples and traced content, by type (email, phone, rrn, card, secret).",
            ["model", "type"],
            registry=r,
        )
        self.gpu_served_tokens = Gauge(
            "llm_gateway_gpu_served_tokens_per_second",
            "GPU-priced deployments: tokens per second served over the last 60 s, the divisor of their GPU-time cost "
            "(counted by every gateway process sharing the Redis while llm_gateway_gpu_throughput_shared is 1, by "
            "this process alone otherwise).",
            ["model", "deployment"],
            registry=r,
            multiprocess_mode="livemax",  # shared: every worker's is the fleet's; else the busiest worker's own
        )
        self.gpu_throughput_shared = Gauge(
            "llm_gateway_gpu_throughput_shared",
            "GPU-priced deployments: 1 while the served throughput is the fleet's (synced through Redis), 0 while it "
            "is this process's own (no redis configured, or Redis unreachable).",
            ["model", "deployment"],
            registry=r,
            multiprocess_mode="livemin",  # 0 while any worker prices from its own throughput
        )
        self.unpriced = Gauge(
            "llm_gateway_model_unpriced",
            "1 for a model with neither a configured price nor an entry in the price table (its cost counts 0).",
            ["model", "deployment"],
            registry=r,
            multiprocess_mode="livemax",  # configuration: the same in every worker
        )
        self.info = Gauge(
            "llm_gateway_deployment_info",
            "1 per configured deployment: which provider serves which model.",
            ["model", "deployment", "provider"],
            registry=r,
            multiprocess_mode="livemax",  # configuration: the same in every worker
        )
        # several workers: per-worker process series (label pid) instead of the process collectors
        self.workers = WorkerSeries(self.requests, r) if multiprocess_dir is not None else None

    def track(self, gauge: Gauge, value: Callable[[], float]) -> None:
        """``gauge`` shows ``value()``: read at each scrape in one process (``set_function``); with several workers,
        whose files hold only values that were set, set now and every second by :meth:`refresh`."""
        if self.multiprocess_dir is None:
            gauge.set_function(value)
        else:
            gauge.set(value())
            self._sampled.append((gauge, value))

    def refresh(self) -> None:
        """Several workers: set the tracked gauges and this worker's own series (the refresher calls this)."""
        for gauge, value in self._sampled:
            gauge.set(value())
        if self.workers is not None:
            self.workers.refresh()

    async def refresh_forever(self, seconds: float = REFRESH_SECONDS) -> None:
        """Several workers: :meth:`refresh` every ``seconds`` (a task of the app's lifespan)."""
        while True:
            await asyncio.sleep(seconds)
            try:
                self.refresh()
            except Exception:  # a gauge that cannot be read must not stop the others
                log.exception("refreshing this worker's gauges failed")

    def render(self) -> bytes:
        """The text exposition of every series (every worker's, with several)."""
        return generate_latest(self.scrape_registry)


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The ``/metrics`` body and its content type for a scraper's ``Accept`` header: the OpenMetrics format (which
    carries the latency histograms' exemplars, and ends with ``# EOF``) when it asks for
    ``application/openmetrics-text``, as Prometheus does; the classic text format otherwise."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
