"""The monitors worker's Prometheus series (names and labels as docs/metrics.md lists them), on a private registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class MonitorMetrics:
    """Every series one worker exports; ``render()`` is the ``/metrics`` body."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.processed = Counter(
            "llm_monitor_samples_processed",
            "Samples this worker finished: ok, or error (malformed, or given up after repeated failures).",
            ["model", "outcome"],
            registry=r,
        )
        self.duplicates = Counter(
            "llm_monitor_samples_duplicate",
            "Entries delivered again whose sample another delivery had already processed (acknowledged, not counted).",
            ["stream"],
            registry=r,
        )
        self.backlog = Gauge(
            "llm_monitor_stream_backlog",
            "Entries of the stream the consumer group has not finished: not yet delivered plus pending.",
            ["stream"],
            registry=r,
        )
        self.deferred = Counter(
            "llm_monitor_samples_deferred",
            "Attempts that left a sample pending because the judge model was unavailable for some of its judges: "
            "those judges run again on a later attempt.",
            ["model"],
            registry=r,
        )
        self.claimed = Counter(
            "llm_monitor_entries_claimed",
            "Entries claimed after they were left pending too long (XAUTOCLAIM): by a dead or stuck consumer, or "
            "deferred while the judge model was unavailable (see llm_monitor_samples_deferred_total).",
            ["stream"],
            registry=r,
        )
        self.judge_score = Histogram(
            "llm_judge_score",
            "Judge scores, normalised to 0..1 (1 = best).",
            ["model", "judge", "criterion"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.judge_errors = Counter(
            "llm_judge_errors",
            "Judge runs that produced no score, by reason.",
            ["judge", "reason"],
            registry=r,
        )
        self.judge_runs = Counter(
            "llm_judge_runs",
            "Judge runs by outcome: ok (scored or compared), error (no result; reason in llm_judge_errors_total).",
            ["judge", "outcome"],
            registry=r,
        )
        self.verdict_conflicts = Counter(
            "llm_judge_verdict_conflicts",
            "Judge model replies holding verdict tokens that disagree (e.g. [[3]] then Rating: [[6]]): the final "
            "verdict line still decides; a judge that often contradicts itself is worth reading.",
            ["judge"],
            registry=r,
        )
        self.pairwise = Counter(
            "llm_judge_pairwise",
            "Pairwise verdicts between variants answering the same prompt, judged in both orders: a win needs both; "
            "orders=disagree marks the ties that are order-inconsistent verdicts, orders=agree the rest.",
            ["model", "variant_a", "variant_b", "winner", "orders"],
            registry=r,
        )
        self.pairwise_consistency = Gauge(
            "llm_judge_pairwise_consistency_ratio",
            "Share of the model's pairwise verdicts (all workers', since its tally began) whose two orders agreed.",
            ["model"],
            registry=r,
        )
        self.variant_rating = Gauge(
            "llm_judge_variant_rating",
            "Bradley-Terry rating of each variant (Elo-like scale, 1000 = even), per source rated apart: "
            "source=pairwise (the pairwise judge's verdicts) or source=feedback (user thumbs).",
            ["model", "variant", "source"],
            registry=r,
        )
        self.last_processed = Gauge(
            "llm_monitor_last_processed_timestamp_seconds",
            "When this worker last finished a sample.",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The ``/metrics`` body and content type for a scraper's ``Accept`` header: OpenMetrics (with the judge
        scores' exemplars: trace and request id of a judged sample) when asked for, the classic text format
        otherwise."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
