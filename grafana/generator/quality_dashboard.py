"""LLM Quality & Drift (uid ``llmops-quality``): judge scores, pairwise comparisons of variants, user feedback and
the monitors' data drift, with links to the monitors' Evidently reports."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard, table
from grafana_foundation_sdk.models.dashboard import DataTransformerConfig, DynamicConfigValue, VariableOption

from .panels import (
    DATASOURCE,
    RI,
    BarGauge,
    M,
    Rows,
    Series,
    add_rows,
    links_override,
    model_variable,
    new_dashboard,
    organize,
    query,
    table_panel,
)

# Where an operator's browser reaches the monitors' Evidently reports (docker-compose publishes port 9101).
MONITORS_URL_DEFAULT = "http://localhost:9101"
DRIFT_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "no drift", "color": "green", "index": 0},
            "1": {"text": "drifted", "color": "red", "index": 1},
        },
    }
]


def report_link(field: str) -> Any:
    """Data link to the Evidently drift report of the model in ``field`` (a series label or a table column)."""
    return (
        dashboard.DashboardLink(f"Evidently drift report for ${{{field}}}")
        .url(f"${{monitors_url}}/reports/${{{field}}}")
        .target_blank(True)
    )


def monitors_url_variable() -> Any:
    return (
        dashboard.TextBoxVariable("monitors_url")
        .label("Monitors URL")
        .description("Base URL of a monitors worker as the browser reaches it; drift links open <url>/reports/<model>")
        .default_value(MONITORS_URL_DEFAULT)
        .current(VariableOption(selected=True, text=MONITORS_URL_DEFAULT, value=MONITORS_URL_DEFAULT))
    )


def judge_score_table() -> Any:
    return (
        table_panel(
            "Judge scores: last hour vs last day",
            "A drop of more than 0.15 below the day's average, with at least 20 scores in the hour, raises "
            "LLMJudgeScoreDrop.",
            [
                f"llmops:judge_score:avg_1h{{{M}}}",
                f"llmops:judge_score:avg_1d{{{M}}}",
                f"llmops:judge_score_count:increase1h{{{M}}}",
            ],
            unit="percentunit",
        )
        .decimals(1)
        .with_transformation(DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            organize(("Time", "__name__"), {"Value #A": "1h", "Value #B": "1d", "Value #C": "scores in 1h"})
        )
        .override_by_name("scores in 1h", [DynamicConfigValue(id_val="unit", value="short")])
    )


def judges() -> list[Any]:
    return [
        Series(
            "Judge scores (1h average)",
            "Average score (0..1) by model, judge and criterion over the last hour. Dashed: the default floor "
            "(llmops:judge_score_floor, alert LLMJudgeScoreBelowFloor); some criteria (chrF, BLEU per tokenizer, "
            "ROUGE-L, perplexity, lexical answer relevancy) have a lower floor of their own "
            "(llmops:judge_score_floor:criterion). Criteria are defined in docs/judges.md.",
            [
                (f"llmops:judge_score:avg_1h{{{M}}}", "{{model}} {{judge}}/{{criterion}}"),
                ("llmops:judge_score_floor", "floor"),
            ],
            "percentunit",
            max_val=1,
            dashed=("name", "floor"),
        ),
        judge_score_table(),
        Series(
            "Judge errors/s",
            "Judge failures by judge and reason (judge model errors, unparsable verdicts, timeouts).",
            [(f"sum by (judge, reason) (rate(llm_judge_errors_total[{RI}]))", "{{judge}} {{reason}}")],
            "ops",
        ),
        Series(
            "Samples processed/s",
            "Samples the monitors processed, by model and outcome. Alert LLMMonitorSampleErrors above 20% errors. "
            "'deferred': attempts left for later because the judge model was unavailable (judged again within "
            "monitors.max_deliveries attempts).",
            [
                (
                    f"sum by (model, outcome) (rate(llm_monitor_samples_processed_total{{{M}}}[{RI}]))",
                    "{{model}} {{outcome}}",
                ),
                (f"sum by (model) (rate(llm_monitor_samples_deferred_total{{{M}}}[{RI}]))", "{{model}} deferred"),
            ],
            "ops",
        ),
        Series(
            "Monitors stream backlog",
            "Entries in the Redis stream not yet processed by the monitors. Alert LLMMonitorsBacklogGrowing above "
            "1000 and growing.",
            [("max by (stream) (llm_monitor_stream_backlog)", "{{stream}}")],
            "short",
            w=24,
            lines=((None, "green"), (1000, "red")),
        ),
    ]


VARIANTS_AND_FEEDBACK = [
    BarGauge(
        "Pairwise win rate (1d)",
        "Share of pairwise judgements over the last day won by variant_a against variant_b; ties count half. "
        "50% = no difference.",
        f"llmops:pairwise_win_rate:ratio_1d{{{M}}}",
        "{{model}}: {{variant_a}} vs {{variant_b}}",
        "percentunit",
        steps=((None, "red"), (0.45, "yellow"), (0.55, "green")),
    ),
    Series(
        "Pairwise judgements per hour by winner",
        "How many pairwise verdicts each variant pair of each model got per hour, by winner (a, b, tie) and whether "
        "the two orders agreed: 'tie (disagree)' is an order-inconsistent verdict (the judge preferred whichever "
        "answer it read first), counted as a tie; 'tie (agree)' a real tie.",
        [
            (
                f"sum by (model, variant_a, variant_b, winner, orders) (increase(llm_judge_pairwise_total{{{M}}}[1h]))",
                "{{model}}: {{variant_a}} vs {{variant_b}}: {{winner}} ({{orders}})",
            )
        ],
        "short",
    ),
    Series(
        "Feedback positive share (1h)",
        "Share of user feedback that is positive, by model and variant, over the last hour.",
        [(f"llmops:feedback_positive:ratio_1h{{{M}}}", "{{model}} {{variant}}")],
        "percentunit",
        max_val=1,
    ),
    Series(
        "Feedback per hour",
        "User feedback received per hour, by model, variant and rating.",
        [
            (
                f"sum by (model, variant, rating) (increase(llm_gateway_feedback_total{{{M}}}[1h]))",
                "{{model}} {{variant}} {{rating}}",
            )
        ],
        "short",
    ),
    Series(
        "Variant ratings (Bradley-Terry)",
        "Chatbot-Arena-style rating of each A/B variant (1000 = even; +191 = wins 3 of 4), one per source, rated "
        "apart: pairwise (the judge's verdicts), feedback (user thumbs), human (reviewers' votes on the review page) "
        "and human_and_pairwise (votes and verdicts together). When they disagree, that is the finding; the "
        "Leaderboard table gives each rating's 95% interval.",
        [
            (
                f"max by (model, variant, source) (llm_judge_variant_rating{{{M}}})",
                "{{model}} {{variant}} ({{source}})",
            )
        ],
        "short",
        min_val=None,
    ),
    Series(
        "Pairwise judge consistency (1d)",
        "Share of the last day's pairwise verdicts whose two orders (a, b) and (b, a) agreed. The rest are ties "
        "that only show position bias: a low or falling share means the win rates and ratings rest on few real "
        "judgements (change the judge model or its prompt).",
        [(f"llmops:pairwise_consistency:ratio_1d{{{M}}}", "{{model}}")],
        "percentunit",
        max_val=1,
    ),
]


def leaderboard() -> Any:
    """Ratings with their 95% bootstrap intervals and battles, per model, contestant and source."""
    exprs = [
        f"max by (model, variant, source) ({name}{{{M}}})"
        for name in (
            "llm_judge_variant_rating",
            "llm_judge_variant_rating_lower",
            "llm_judge_variant_rating_upper",
            "llm_judge_variant_battles",
        )
    ]
    p = (
        table.Panel()
        .title("Leaderboard (ratings with 95% intervals)")
        .description(
            "Bradley-Terry ratings as Chatbot Arena computes them (maximum likelihood, 400*log10 scale, 1000 = the "
            "contestants' mean), with the 2.5th-97.5th percentiles over bootstrap resamples of the battles. Two "
            "contestants whose intervals overlap are not told apart yet. Sources: human (reviewers), pairwise (the "
            "LLM judge), human_and_pairwise, feedback (thumbs). See docs/review.md."
        )
        .datasource(DATASOURCE)
        .span(24)
        .height(8)
        .decimals(0)
    )
    for i, expr in enumerate(exprs):
        p = p.with_target(
            query(expr, "{{model}} {{variant}} {{source}}", ref=chr(ord("A") + i), instant=True, fmt_table=True)
        )
    return (
        p.with_transformation(DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            organize(
                ("Time",),
                {"Value #A": "rating", "Value #B": "lower (2.5%)", "Value #C": "upper (97.5%)", "Value #D": "battles"},
            )
        )
        .with_transformation(
            DataTransformerConfig(id_val="sortBy", options={"sort": [{"field": "rating", "desc": True}]})
        )
    )


def review() -> list[Any]:
    judge = "{{model}} {{judge}}"
    return [
        leaderboard(),
        Series(
            "Judge-human agreement",
            "Share of (judge verdict, reviewer vote) pairs on the same items that agree, with ties counted as an "
            "outcome and without the pairs where either side said tie (MT-Bench: GPT-4 vs experts 66% / 85%, expert "
            "vs expert 63% / 81%), over each judge's latest monitors.review.agreement_window_items reviewed items. "
            "Dashed: reviewer vs reviewer (the ceiling) and the alert floor (monitors.review.agreement_floor, alert "
            "LLMJudgeHumanAgreementLow on agreement without ties).",
            [
                (f"max by (model, judge, ties) (llm_judge_human_agreement_ratio{{{M}}})", judge + " ties {{ties}}"),
                (
                    f"max by (model, ties) (llm_review_inter_reviewer_agreement_ratio{{{M}}})",
                    "{{model}} reviewer vs reviewer ties {{ties}}",
                ),
                ("max(llm_judge_human_agreement_floor_ratio)", "floor"),
            ],
            "percentunit",
            max_val=1,
            dashed=("regexp", "reviewer vs reviewer|floor"),
        ),
        Series(
            "Judge-human kappa, position bias and rank correlation",
            "Cohen's kappa of the pairwise judge vs reviewers (agreement beyond chance: 0 chance, 1 perfect); the "
            "share of reviewed pairs whose judge verdict changed when the answers were swapped (position bias); "
            "Spearman's rho of the single-answer judge's ratings vs reviewers' grades; over the same window as the "
            "agreement.",
            [
                (f"max by (model, judge) (llm_judge_human_kappa{{{M}}})", judge + " kappa"),
                (f"max by (model, judge) (llm_judge_human_position_bias_ratio{{{M}}})", judge + " position bias"),
                (f"max by (model, judge) (llm_judge_human_spearman{{{M}}})", judge + " Spearman"),
            ],
            "short",
            min_val=-1,
            max_val=1,
        ),
        Series(
            "Review votes and queues",
            "Reviewer votes per hour (side by side, single answer), items of each review queue still taking votes, "
            "items both a judge and a reviewer scored in the agreement window (the base of the agreement figures), "
            "and sign-in attempts per hour by outcome (limited_address, limited_overall: refused by the sign-in "
            "limits; unavailable: Redis unreachable).",
            [
                (f"sum by (model, kind) (increase(llm_review_votes_total{{{M}}}[1h]))", "{{model}} {{kind}} votes/h"),
                ("max by (queue) (llm_review_queue_items)", "queue {{queue}}"),
                (f"max by (model, judge) (llm_judge_human_items{{{M}}})", judge + " items compared"),
                ("sum by (outcome) (increase(llm_review_sign_ins_total[1h]))", "sign-ins {{outcome}}/h"),
            ],
            "short",
        ),
        Series(
            "Shadow comparisons",
            "Shadow requests per hour by outcome (sent, rate_limited, over_budget, error) and what the gateway "
            "charged for shadow traffic per hour (llm_gateway_traffic_cost_usd_total, kind shadow).",
            [
                (
                    f"sum by (model, target, outcome) (increase(llm_shadow_requests_total{{{M}}}[1h]))",
                    "{{model}} -> {{target}} {{outcome}}",
                ),
                (
                    'sum by (model) (increase(llm_gateway_traffic_cost_usd_total{kind="shadow"}[1h])) * 1000',
                    "{{model}} shadow cost (milli-USD/h)",
                ),
            ],
            "short",
        ),
    ]


def drift_tables() -> list[Any]:
    """The latest verdict per feature, and the time since each model's last drift run; models link to reports."""
    model_link = links_override(report_link("__data.fields.model"))
    verdicts = (
        table_panel(
            "Drifted features",
            "Latest drift verdict per model and feature. Click a model for its Evidently report.",
            [f"max by (model, feature) (llm_drift_detected{{{M}}})"],
        )
        .with_transformation(organize(("Time",), {"Value": "drift"}))
        .with_transformation(
            DataTransformerConfig(id_val="sortBy", options={"sort": [{"field": "drift", "desc": True}]})
        )
        .override_by_name(
            "drift",
            [
                DynamicConfigValue(id_val="mappings", value=DRIFT_MAPPINGS),
                DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ],
        )
        .override_by_name("model", model_link)
    )
    last_run = (
        table_panel(
            "Time since last drift run",
            "Drift runs every `drift.every` samples: a long gap means little traffic or a stuck worker.",
            [f"time() - max by (model) (llm_drift_last_run_timestamp_seconds{{{M}}})"],
            unit="s",
        )
        .with_transformation(organize(("Time",), {"Value": "since last run"}))
        .override_by_name("model", model_link)
    )
    return [verdicts, last_run]


def drift() -> list[Any]:
    links = [report_link("__field.labels.model")]
    return [
        Series(
            "Drift share by model",
            "Share of monitored features whose distribution drifted from the reference window, per model. "
            "LLMDriftDetected alerts on the model's verdict (Drift by group, 'all'). Click a series for its "
            "Evidently report.",
            [(f"max by (model) (llm_drift_share{{{M}}})", "{{model}}")],
            "percentunit",
            max_val=1,
            lines=((None, "green"), (0.5, "red")),
            links=links,
        ),
        Series(
            "Drift by group",
            "The worker's verdict per group of features (1 = drifted): input (prompts changed), output and quality "
            "(answers changed), performance (latency, cost); 'all' is the model's verdict, which LLMDriftDetected "
            "alerts on.",
            [(f"max by (model, group) (llm_drift_group_detected{{{M}}})", "{{model}} {{group}}")],
            "short",
            max_val=1,
            links=links,
        ),
        Series(
            "Drift score by feature",
            "The statistical test's score for each feature (its meaning depends on the test, named in stattest: "
            "p-value or distance).",
            [(f"max by (model, feature, stattest) (llm_drift_score{{{M}}})", "{{model}} {{feature}} ({{stattest}})")],
            "short",
            min_val=None,
            links=links,
        ),
        *drift_tables(),
    ]


def rows() -> Rows:
    return [
        ("Judges", judges()),
        ("Variants and feedback", VARIANTS_AND_FEEDBACK),
        ("Human review", review()),
        ("Drift", drift()),
    ]


def build() -> Any:
    d = new_dashboard(
        "LLM Quality & Drift",
        "llmops-quality",
        "Online judge scores, pairwise comparisons of variants, user feedback and data drift of the monitors.",
    )
    d = d.with_variable(model_variable()).with_variable(monitors_url_variable())
    return add_rows(d, rows())
