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
            "source=pairwise (the pairwise judge's verdicts), feedback (user thumbs), human (reviewers' votes), "
            "human_and_pairwise (votes and verdicts together).",
            ["model", "variant", "source"],
            registry=r,
        )
        self.variant_rating_lower = Gauge(
            "llm_judge_variant_rating_lower",
            "The 2.5th percentile of llm_judge_variant_rating over bootstrap resamples of the battles (with "
            "llm_judge_variant_rating_upper: the rating's 95% interval).",
            ["model", "variant", "source"],
            registry=r,
        )
        self.variant_rating_upper = Gauge(
            "llm_judge_variant_rating_upper",
            "The 97.5th percentile of llm_judge_variant_rating over bootstrap resamples of the battles.",
            ["model", "variant", "source"],
            registry=r,
        )
        self.variant_battles = Gauge(
            "llm_judge_variant_battles",
            "Battles (verdicts, votes or thumbs) behind each rating in llm_judge_variant_rating.",
            ["model", "variant", "source"],
            registry=r,
        )
        review_series(self, r)
        self.last_processed = Gauge(
            "llm_monitor_last_processed_timestamp_seconds",
            "When this worker last finished a sample.",
            registry=r,
        )

    agreement: Gauge
    kappa: Gauge
    position_bias: Gauge
    spearman: Gauge
    agreement_items: Gauge
    agreement_comparisons: Gauge
    reviewer_agreement: Gauge
    agreement_floor: Gauge
    agreement_min_items: Gauge
    agreement_window_items: Gauge
    votes: Counter
    sign_ins: Counter
    queue_items: Gauge
    queued: Counter
    shadow_requests: Counter
    shadow_cost: Counter

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The ``/metrics`` body and content type for a scraper's ``Accept`` header: OpenMetrics (with the judge
        scores' exemplars: trace and request id of a judged sample) when asked for, the classic text format
        otherwise."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def review_series(m: MonitorMetrics, r: CollectorRegistry) -> None:
    """The series of human review, judge-human agreement and shadow comparisons (docs/review.md)."""
    judge = ["model", "judge"]
    specs: list[tuple[str, type, str, str, list[str]]] = [
        (
            "agreement",
            Gauge,
            "llm_judge_human_agreement_ratio",
            "Share of (judge verdict, reviewer vote) comparisons on the judge's latest "
            "monitors.review.agreement_window_items items that agree; ties=included counts a tie (or both bad) as an "
            "outcome, ties=excluded leaves out every comparison where either side said tie (MT-Bench's two setups).",
            ["model", "judge", "ties"],
        ),
        (
            "kappa",
            Gauge,
            "llm_judge_human_kappa",
            "Cohen's kappa of judge verdicts vs reviewer votes (a, b, tie): "
            "agreement beyond chance; 0 = chance, 1 = perfect (over the window, as the agreement).",
            judge,
        ),
        (
            "position_bias",
            Gauge,
            "llm_judge_human_position_bias_ratio",
            "Share of the reviewed pairs (in the window) whose pairwise verdict changed when the two answers were "
            "swapped.",
            judge,
        ),
        (
            "spearman",
            Gauge,
            "llm_judge_human_spearman",
            "Spearman's rank correlation of the single-answer judge's "
            "1-10 ratings with reviewers' grades of the same answers (in the window).",
            judge,
        ),
        (
            "agreement_items",
            Gauge,
            "llm_judge_human_items",
            "Items both the judge and at least one reviewer scored, in the window (at most "
            "monitors.review.agreement_window_items).",
            judge,
        ),
        (
            "agreement_comparisons",
            Gauge,
            "llm_judge_human_comparisons",
            "(judge verdict, reviewer vote) pairs behind the agreement figures (in the window).",
            judge,
        ),
        (
            "reviewer_agreement",
            Gauge,
            "llm_review_inter_reviewer_agreement_ratio",
            "Share of pairs of reviewers "
            "voting on the same item who agree (ties included or excluded), over the latest "
            "monitors.review.agreement_window_items pair items two reviewers voted on: the ceiling to read judge "
            "agreement against.",
            ["model", "ties"],
        ),
        (
            "agreement_floor",
            Gauge,
            "llm_judge_human_agreement_floor_ratio",
            "monitors.review.agreement_floor: the "
            "judge-human agreement (ties excluded) below which LLMJudgeHumanAgreementLow fires.",
            [],
        ),
        (
            "agreement_min_items",
            Gauge,
            "llm_judge_human_agreement_min_items",
            "monitors.review.agreement_min_items: items needed before LLMJudgeHumanAgreementLow may fire.",
            [],
        ),
        (
            "agreement_window_items",
            Gauge,
            "llm_judge_human_agreement_window_items",
            "monitors.review.agreement_window_items: the judge-human figures cover each judge's latest this many "
            "items both it and a reviewer scored (reviewer vs reviewer: the latest this many pair items two "
            "reviewers voted on).",
            [],
        ),
        (
            "votes",
            Counter,
            "llm_review_votes",
            "Reviewer votes recorded through this worker's review page.",
            ["model", "kind"],
        ),
        (
            "sign_ins",
            Counter,
            "llm_review_sign_ins",
            "Sign-in attempts on this worker's review page by outcome: ok, unknown_key, limited_address (the "
            "client address made too many failed attempts), limited_overall (too many failed attempts from all "
            "addresses this minute), unavailable (Redis could not be reached).",
            ["outcome"],
        ),
        ("queue_items", Gauge, "llm_review_queue_items", "Items of a review queue still taking votes.", ["queue"]),
        (
            "queued",
            Counter,
            "llm_review_items_queued",
            "Items this worker added to a review queue, by source "
            "(variants, shadow, random, low_score, negative_feedback).",
            ["queue", "source"],
        ),
        (
            "shadow_requests",
            Counter,
            "llm_shadow_requests",
            "Shadow comparisons: sent, or not sent because of the "
            "rate limit (rate_limited) or the daily budget (over_budget), or failed (error); target is the target "
            "model, or target@variant for a pinned variant.",
            ["model", "target", "outcome"],
        ),
        (
            "shadow_cost",
            Counter,
            "llm_shadow_cost_usd",
            "The monitors' estimate of their shadow requests' cost (the "
            'gateway meters it as llm_gateway_traffic_cost_usd_total{kind="shadow"}).',
            ["model", "target"],
        ),
    ]
    for attribute, kind, name, help_text, labels in specs:
        setattr(m, attribute, kind(name, help_text, labels, registry=r))
