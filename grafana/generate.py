#!/usr/bin/env python3
"""Generate the Grafana dashboards of llmops-stack into grafana/dashboards/*.json.

    python grafana/generate.py            # write the dashboards
    python grafana/generate.py --check    # exit 1 if the committed dashboards differ from what this script makes

Built with the official grafana-foundation-sdk (pinned, see grafana/README.md). Queries use only the metric names of
the design contract (docs/observability.md) and the recording rules of prometheus/rules/recording.yml;
tests/deploy/test_prometheus_rules.py checks both, and that the committed JSON equals this script's output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import statetimeline as state_timeline
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
TAGS = ["llmops"]
# Where an operator's browser reaches the monitors' Evidently reports (docker-compose publishes port 9101).
MONITORS_URL_DEFAULT = "http://localhost:9101"

ALL = VariableOption(selected=True, text=["All"], value=["$__all"])

# Label filters driven by the template variables.
M = 'model=~"$model"'
MK = 'model=~"$model", key=~"$key"'
RI = "$__rate_interval"


# --------------------------------------------------------------------------------------------------------- helpers
def query(expr: str, legend: str = "", ref: str = "A", instant: bool = False, fmt_table: bool = False):
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    if fmt_table:
        q = q.format(PromQueryFormat.TABLE)
    return q


def thresholds(*steps: tuple[float | None, str]):
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def _targets(panel, targets: list[tuple[str, str]]):
    for i, (expr, legend) in enumerate(targets):
        panel = panel.with_target(query(expr, legend, ref=chr(ord("A") + i)))
    return panel


def ts(
    title: str,
    description: str,
    targets: list[tuple[str, str]],
    unit: str,
    w: int = 12,
    h: int = 8,
    min_val: float | None = 0,
    max_val: float | None = None,
    stack: bool = False,
    lines: tuple[tuple[float | None, str], ...] = (),
):
    """A time series panel; `lines` draws thresholds as dashed lines (first step is the base colour)."""
    p = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(h)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            common.VizLegendOptions()
            .display_mode(common_models.LegendDisplayMode.TABLE)
            .placement(common_models.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(
            common.VizTooltipOptions()
            .mode(common_models.TooltipDisplayMode.MULTI)
            .sort(common_models.SortOrder.DESCENDING)
        )
    )
    if min_val is not None:
        p = p.min(min_val)
    if max_val is not None:
        p = p.max(max_val)
    if stack:
        p = p.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL)).fill_opacity(40)
    if lines:
        p = p.thresholds(thresholds(*lines)).thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.DASHED)
        )
    return _targets(p, targets)


def stat_panel(title: str, description: str, expr: str, unit: str, steps=((None, "green"),), w: int = 4):
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(4)
        .thresholds(thresholds(*steps))
        .graph_mode(common_models.BigValueGraphMode.AREA)
        .color_mode(common_models.BigValueColorMode.VALUE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(query(expr))
    )


def bar_gauge(title: str, description: str, expr: str, legend: str, unit: str, steps, w: int = 12, h: int = 8):
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .max(1)
        .span(w)
        .height(h)
        .thresholds(thresholds(*steps))
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(query(expr, legend, instant=True))
    )


def row(title: str):
    return dashboard.Row(title)


def model_variable(metric: str = "llm_gateway_requests_total"):
    return (
        dashboard.QueryVariable("model")
        .label("Model")
        .description("Public model name (the gateway's `model` label)")
        .datasource(DATASOURCE)
        .query(f"label_values({metric}, model)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(ALL)
    )


def key_variable():
    return (
        dashboard.QueryVariable("key")
        .label("Key")
        .description("Configured key name (`anonymous` without a key)")
        .datasource(DATASOURCE)
        .query(f"label_values(llm_gateway_requests_total{{{M}}}, key)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(ALL)
    )


def new_dashboard(title: str, uid: str, description: str):
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .annotation(
            dashboard.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .link(
            dashboard.DashboardLink("LLMOps dashboards")
            .type("dashboards")
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


# ------------------------------------------------------------------------------------------------- LLM Gateway
def gateway_dashboard():
    d = new_dashboard(
        "LLM Gateway",
        "llmops-gateway",
        "Traffic, errors, latency, tokens, cost and upstream health of the llmops gateway.",
    )
    d = d.with_variable(model_variable()).with_variable(key_variable())

    d = d.with_row(row("Overview"))
    d = d.with_panel(
        stat_panel(
            "Requests/s",
            "All requests through the gateway, for the selected models and keys.",
            f"sum(rate(llm_gateway_requests_total{{{MK}}}[{RI}]))",
            "reqps",
        )
    )
    d = d.with_panel(
        stat_panel(
            "Error ratio (5xx)",
            "Share of requests answered with a 5xx. Alert LLMHighErrorRatio: ticket above 1%, page above 5%.",
            f'(sum(rate(llm_gateway_requests_total{{status=~"5..", {MK}}}[{RI}])) or vector(0))'
            f" / sum(rate(llm_gateway_requests_total{{{MK}}}[{RI}]))",
            "percentunit",
            steps=((None, "green"), (0.01, "orange"), (0.05, "red")),
        )
    )
    d = d.with_panel(
        stat_panel(
            "Latency p95",
            "End-to-end request latency, 95th percentile, selected models (keys do not apply).",
            f"histogram_quantile(0.95, sum by (le) (rate(llm_gateway_request_duration_seconds_bucket{{{M}}}[{RI}])))",
            "s",
            steps=((None, "green"), (10.24, "red")),
        )
    )
    d = d.with_panel(
        stat_panel(
            "TTFT p95",
            "Time to first token of streamed requests, 95th percentile (SLO: 99% within 2.5 s).",
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(llm_gateway_time_to_first_token_seconds_bucket{{{M}}}[{RI}])))",
            "s",
            steps=((None, "green"), (2.5, "red")),
        )
    )
    d = d.with_panel(
        stat_panel(
            "Cost per hour",
            "Spend rate in USD per hour for the selected models and keys.",
            f"sum(rate(llm_gateway_cost_usd_total{{{MK}}}[{RI}])) * 3600",
            "currencyUSD",
        )
    )
    d = d.with_panel(
        stat_panel(
            "In flight",
            "Requests the gateway is serving right now.",
            f"sum(llm_gateway_requests_in_flight{{{M}}})",
            "short",
        )
    )

    d = d.with_row(row("Traffic and errors"))
    d = d.with_panel(
        ts(
            "Requests/s by model and status",
            "Requests per second by public model name and HTTP status.",
            [(f"sum by (model, status) (rate(llm_gateway_requests_total{{{MK}}}[{RI}]))", "{{model}} {{status}}")],
            "reqps",
            stack=True,
        )
    )
    d = d.with_panel(
        ts(
            "Error ratio by model",
            "Share of requests answered with any 5xx, and with 502/504 (every deployment and fallback failed "
            "upstream), over 5 minutes. Lines: ticket at 1%, page at 5% (LLMHighErrorRatio).",
            [
                (f"llmops:request_errors:ratio_rate5m{{{M}}}", "{{model}} 5xx"),
                (f"llmops:request_upstream_errors:ratio_rate5m{{{M}}}", "{{model}} 502/504"),
            ],
            "percentunit",
            lines=((None, "green"), (0.01, "orange"), (0.05, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "Rejected requests/s by key",
            "Requests refused with 429: over the key's rpm limit, or over its spend budget.",
            [
                (f'sum by (key) (rate(llm_gateway_rate_limited_total{{key=~"$key"}}[{RI}]))', "{{key}} rate limited"),
                (
                    f'sum by (key) (rate(llm_gateway_budget_exceeded_total{{key=~"$key"}}[{RI}]))',
                    "{{key}} over budget",
                ),
            ],
            "reqps",
        )
    )
    d = d.with_panel(
        ts(
            "Retries and fallbacks/s",
            "Retries by deployment, and requests sent to a fallback model.",
            [
                (f"sum by (deployment) (rate(llm_gateway_retries_total[{RI}]))", "retry {{deployment}}"),
                (
                    f"sum by (model, fallback_model) (rate(llm_gateway_fallbacks_total{{{M}}}[{RI}]))",
                    "fallback {{model}} → {{fallback_model}}",
                ),
            ],
            "reqps",
        )
    )

    d = d.with_row(row("Latency"))
    d = d.with_panel(
        ts(
            "Request latency p50/p95/p99",
            "End-to-end latency over 5 minutes (recording rules). Line: the latency SLO threshold, 10.24 s "
            "(99% of requests below it).",
            [
                (f"llmops:request_duration_seconds:p50_5m{{{M}}}", "{{model}} p50"),
                (f"llmops:request_duration_seconds:p95_5m{{{M}}}", "{{model}} p95"),
                (f"llmops:request_duration_seconds:p99_5m{{{M}}}", "{{model}} p99"),
            ],
            "s",
            lines=((None, "green"), (10.24, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "Time to first token p50/p95/p99",
            "Streamed requests' time to first token over 5 minutes. Line: the TTFT SLO threshold, 2.5 s (99% of "
            "requests below it).",
            [
                (f"llmops:time_to_first_token_seconds:p50_5m{{{M}}}", "{{model}} p50"),
                (f"llmops:time_to_first_token_seconds:p95_5m{{{M}}}", "{{model}} p95"),
                (f"llmops:time_to_first_token_seconds:p99_5m{{{M}}}", "{{model}} p99"),
            ],
            "s",
            lines=((None, "green"), (2.5, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "Time per output token p50/p95",
            "Decode speed seen by clients: seconds per generated token after the first.",
            [
                (f"llmops:time_per_output_token_seconds:p50_5m{{{M}}}", "{{model}} p50"),
                (f"llmops:time_per_output_token_seconds:p95_5m{{{M}}}", "{{model}} p95"),
            ],
            "s",
        )
    )
    d = d.with_panel(
        ts(
            "Share of requests over the SLO thresholds (1h)",
            "What the SLO burn-rate alerts read: share of requests slower than 10.24 s, and of first tokens later "
            "than 2.5 s, over the last hour. The SLOs allow 1% (line); 14.4% pages within minutes.",
            [
                (f"llmops:slow_requests:ratio_rate1h{{{M}}}", "{{model}} latency > 10.24 s"),
                (f"llmops:slow_first_tokens:ratio_rate1h{{{M}}}", "{{model}} TTFT > 2.5 s"),
            ],
            "percentunit",
            lines=((None, "green"), (0.01, "orange"), (0.144, "red")),
        )
    )

    d = d.with_row(row("Tokens and cost"))
    d = d.with_panel(
        ts(
            "Tokens/s by model and type",
            "Input, output and cached input tokens per second.",
            [(f"sum by (model, type) (rate(llm_gateway_tokens_total{{{MK}}}[{RI}]))", "{{model}} {{type}}")],
            "short",
            stack=True,
        )
    )
    d = d.with_panel(
        ts(
            "Cost per hour by model",
            "Spend rate in USD per hour by model. Dashed: the whole stack over the last hour and its budget "
            "(llmops:cost_budget_usd_per_hour, alert LLMCostOverBudget).",
            [
                (f"sum by (model) (rate(llm_gateway_cost_usd_total{{{MK}}}[{RI}])) * 3600", "{{model}}"),
                ("sum(llmops:cost_usd_per_hour:rate1h)", "all models (1h)"),
                ("llmops:cost_budget_usd_per_hour", "budget"),
            ],
            "currencyUSD",
        ).override_by_regexp(
            "all models \\(1h\\)|budget",
            [DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})],
        )
    )
    d = d.with_panel(
        ts(
            "Cost per million tokens by model",
            "USD per million tokens (input, cached input and output together). Hosted models: their per-token "
            "prices. Self-hosted (GPU-priced) models: their GPUs' cost per second over the tokens per second they "
            "served, so both sit on one axis, and a self-hosted model gets cheaper per token as its GPUs get busier "
            "(README, Cost).",
            [
                (
                    f"sum by (model) (rate(llm_gateway_cost_usd_total{{{MK}}}[{RI}])) * 1e6"
                    f" / sum by (model) (rate(llm_gateway_tokens_total{{{MK}}}[{RI}]))",
                    "{{model}}",
                )
            ],
            "currencyUSD",
        )
    )
    d = d.with_panel(
        ts(
            "GPU-priced deployments: served tokens/s",
            "Tokens per second each self-hosted deployment served over the last 60 s: the divisor of its GPU-time "
            "cost (every gateway process's traffic while they share Redis; llm_gateway_gpu_throughput_shared 0 "
            "means a process prices by its own traffic only).",
            [
                (
                    'max by (model, deployment) (llm_gateway_gpu_served_tokens_per_second{model=~"$model"})',
                    "{{model}} {{deployment}}",
                )
            ],
            "short",
        )
    )
    d = d.with_panel(
        ts(
            "Cost per hour by key",
            "Spend rate in USD per hour by key.",
            [(f"sum by (key) (rate(llm_gateway_cost_usd_total{{{MK}}}[{RI}])) * 3600", "{{key}}")],
            "currencyUSD",
            stack=True,
        )
    )
    d = d.with_panel(
        bar_gauge(
            "Key budget used",
            "Spend of each key over its budget_usd; at 100% its requests get 429. Alert at 90% "
            "(LLMKeyBudgetNearlyExhausted). Keys without a budget are not shown.",
            'max by (key) (llm_gateway_key_spend_usd{key=~"$key"}) / max by (key) '
            '(llm_gateway_key_budget_usd{key=~"$key"} > 0)',
            "{{key}}",
            "percentunit",
            steps=((None, "green"), (0.75, "orange"), (0.9, "red")),
        )
    )

    d = d.with_row(row("Upstreams"))
    d = d.with_panel(
        ts(
            "Upstream errors by deployment and reason",
            "Failed upstream attempts per second (timeout, connect, http_4xx, http_5xx, invalid_response), before "
            "retries and fallbacks.",
            [
                (
                    f"sum by (deployment, reason) (rate(llm_gateway_upstream_errors_total[{RI}]))",
                    "{{deployment}} {{reason}}",
                )
            ],
            "reqps",
            stack=True,
        )
    )
    d = d.with_panel(
        ts(
            "Upstream failure ratio by deployment",
            "Failed attempts over attempts, per deployment, over 5 minutes. Alert above 20% "
            "(LLMUpstreamDeploymentFailing).",
            [("llmops:deployment_upstream_errors:ratio_rate5m", "{{deployment}}")],
            "percentunit",
            max_val=1,
            lines=((None, "green"), (0.2, "red")),
        )
    )
    d = d.with_panel(
        state_timeline.Panel()
        .title("Upstream health")
        .description("Whether the gateway keeps each deployment in rotation (llm_gateway_deployment_healthy).")
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .show_value(common_models.VisibilityMode.NEVER)
        .mappings(
            [
                ValueMap(
                    options={
                        "0": ValueMappingResult(text="unhealthy", color="red", index=0),
                        "1": ValueMappingResult(text="healthy", color="green", index=1),
                    }
                )
            ]
        )
        .thresholds(thresholds((None, "red"), (1, "green")))
        .with_target(
            query(f"max by (model, deployment) (llm_gateway_deployment_healthy{{{M}}})", "{{model}} {{deployment}}")
        )
    )
    d = d.with_panel(
        ts(
            "In-flight requests",
            "Requests being served, by model.",
            [(f"sum by (model) (llm_gateway_requests_in_flight{{{M}}})", "{{model}}")],
            "short",
        )
    )

    d = d.with_row(row("Gateway internals"))
    d = d.with_panel(
        ts(
            "Gateway overhead p50/p99",
            "The gateway's own time per request, upstream excluded, over 5 minutes. Alert above 50 ms p99 "
            "(LLMGatewayOverheadHigh).",
            [
                ("llmops:gateway_overhead_seconds:p50_5m", "p50"),
                ("llmops:gateway_overhead_seconds:p99_5m", "p99"),
            ],
            "s",
            lines=((None, "green"), (0.05, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "Samples queued/dropped",
            "Traffic samples sent to the monitors' Redis stream: queued, dropped (Redis slow or down; alert "
            "LLMSampleDrops above 5%), skipped (not sampled).",
            [
                (
                    f"sum by (model, outcome) (rate(llm_gateway_samples_total{{{M}}}[{RI}]))",
                    "{{model}} {{outcome}}",
                )
            ],
            "ops",
        )
    )
    return d


# ---------------------------------------------------------------------------------------------- Quality & Drift
def quality_dashboard():
    d = new_dashboard(
        "LLM Quality & Drift",
        "llmops-quality",
        "Online judge scores, pairwise comparisons of variants, user feedback and data drift of the monitors.",
    )
    d = d.with_variable(model_variable()).with_variable(
        dashboard.TextBoxVariable("monitors_url")
        .label("Monitors URL")
        .description("Base URL of a monitors worker as the browser reaches it; drift links open <url>/reports/<model>")
        .default_value(MONITORS_URL_DEFAULT)
        .current(VariableOption(selected=True, text=MONITORS_URL_DEFAULT, value=MONITORS_URL_DEFAULT))
    )
    report_link_series = (
        dashboard.DashboardLink("Evidently drift report for ${__field.labels.model}")
        .url("${monitors_url}/reports/${__field.labels.model}")
        .target_blank(True)
    )
    report_link_table = (
        dashboard.DashboardLink("Evidently drift report for ${__data.fields.model}")
        .url("${monitors_url}/reports/${__data.fields.model}")
        .target_blank(True)
    )

    d = d.with_row(row("Judges"))
    d = d.with_panel(
        ts(
            "Judge scores (1h average)",
            "Average score (0..1) by model, judge and criterion over the last hour. Dashed: the default floor "
            "(llmops:judge_score_floor, alert LLMJudgeScoreBelowFloor); some criteria (BLEU, ROUGE-L, perplexity) "
            "have a lower floor of their own (llmops:judge_score_floor:criterion).",
            [
                (f"llmops:judge_score:avg_1h{{{M}}}", "{{model}} {{judge}}/{{criterion}}"),
                ("llmops:judge_score_floor", "floor"),
            ],
            "percentunit",
            max_val=1,
        ).override_by_name(
            "floor", [DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})]
        )
    )
    d = d.with_panel(
        table.Panel()
        .title("Judge scores: last hour vs last day")
        .description(
            "A drop of more than 0.15 below the day's average, with at least 20 scores in the hour, raises "
            "LLMJudgeScoreDrop."
        )
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .unit("percentunit")
        .decimals(1)
        .with_target(query(f"llmops:judge_score:avg_1h{{{M}}}", ref="A", instant=True, fmt_table=True))
        .with_target(query(f"llmops:judge_score:avg_1d{{{M}}}", ref="B", instant=True, fmt_table=True))
        .with_target(query(f"llmops:judge_score_count:increase1h{{{M}}}", ref="C", instant=True, fmt_table=True))
        .with_transformation(DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "__name__": True},
                    "renameByName": {"Value #A": "1h", "Value #B": "1d", "Value #C": "scores in 1h"},
                },
            )
        )
        .override_by_name("scores in 1h", [DynamicConfigValue(id_val="unit", value="short")])
    )
    d = d.with_panel(
        ts(
            "Judge errors/s",
            "Judge failures by judge and reason (judge model errors, unparsable verdicts, timeouts).",
            [(f"sum by (judge, reason) (rate(llm_judge_errors_total[{RI}]))", "{{judge}} {{reason}}")],
            "ops",
        )
    )
    d = d.with_panel(
        ts(
            "Samples processed/s",
            "Samples the monitors processed, by model and outcome. Alert LLMMonitorSampleErrors above 20% errors. "
            "'deferred': attempts left for later because the judge model was unavailable (judged again within "
            "monitors.max_deliveries attempts).",
            [
                (
                    f"sum by (model, outcome) (rate(llm_monitor_samples_processed_total{{{M}}}[{RI}]))",
                    "{{model}} {{outcome}}",
                ),
                (
                    f"sum by (model) (rate(llm_monitor_samples_deferred_total{{{M}}}[{RI}]))",
                    "{{model}} deferred",
                ),
            ],
            "ops",
        )
    )
    d = d.with_panel(
        ts(
            "Monitors stream backlog",
            "Entries in the Redis stream not yet processed by the monitors. Alert LLMMonitorsBacklogGrowing above "
            "1000 and growing.",
            [("max by (stream) (llm_monitor_stream_backlog)", "{{stream}}")],
            "short",
            w=24,
            lines=((None, "green"), (1000, "red")),
        )
    )

    d = d.with_row(row("Variants and feedback"))
    d = d.with_panel(
        bar_gauge(
            "Pairwise win rate (1d)",
            "Share of pairwise judgements over the last day won by variant_a against variant_b; ties count half. "
            "50% = no difference.",
            f"llmops:pairwise_win_rate:ratio_1d{{{M}}}",
            "{{model}}: {{variant_a}} vs {{variant_b}}",
            "percentunit",
            steps=((None, "red"), (0.45, "yellow"), (0.55, "green")),
        )
    )
    d = d.with_panel(
        ts(
            "Pairwise judgements per hour by winner",
            "How many pairwise verdicts each variant pair of each model got per hour, by winner (a, b, tie).",
            [
                (
                    f"sum by (model, variant_a, variant_b, winner) (increase(llm_judge_pairwise_total{{{M}}}[1h]))",
                    "{{model}}: {{variant_a}} vs {{variant_b}}: {{winner}}",
                )
            ],
            "short",
        )
    )
    d = d.with_panel(
        ts(
            "Feedback positive share (1h)",
            "Share of user feedback that is positive, by model and variant, over the last hour.",
            [(f"llmops:feedback_positive:ratio_1h{{{M}}}", "{{model}} {{variant}}")],
            "percentunit",
            max_val=1,
        )
    )
    d = d.with_panel(
        ts(
            "Feedback per hour",
            "User feedback received per hour, by model, variant and rating.",
            [
                (
                    f"sum by (model, variant, rating) (increase(llm_gateway_feedback_total{{{M}}}[1h]))",
                    "{{model}} {{variant}} {{rating}}",
                )
            ],
            "short",
        )
    )

    d = d.with_panel(
        ts(
            "Variant ratings (Bradley-Terry)",
            "Chatbot-Arena-style rating of each A/B variant from pairwise judge verdicts and user feedback "
            "(1000 = even; +191 = wins 3 of 4).",
            [(f"max by (model, variant) (llm_judge_variant_rating{{{M}}})", "{{model}} {{variant}}")],
            "short",
            min_val=None,
        )
    )
    d = d.with_row(row("Drift"))
    d = d.with_panel(
        ts(
            "Drift share by model",
            "Share of monitored features whose distribution drifted from the reference window, per model. "
            "LLMDriftDetected alerts on the model's verdict (Drift by group, 'all'). Click a series for its "
            "Evidently report.",
            [(f"max by (model) (llm_drift_share{{{M}}})", "{{model}}")],
            "percentunit",
            max_val=1,
            lines=((None, "green"), (0.5, "red")),
        ).data_links([report_link_series])
    )
    d = d.with_panel(
        ts(
            "Drift by group",
            "The worker's verdict per group of features (1 = drifted): input (prompts changed), output and quality "
            "(answers changed), performance (latency, cost); 'all' is the model's verdict, which LLMDriftDetected "
            "alerts on.",
            [(f"max by (model, group) (llm_drift_group_detected{{{M}}})", "{{model}} {{group}}")],
            "short",
            max_val=1,
        ).data_links([report_link_series])
    )
    d = d.with_panel(
        ts(
            "Drift score by feature",
            "The statistical test's score for each feature (its meaning depends on the test, named in stattest: "
            "p-value or distance).",
            [
                (
                    f"max by (model, feature, stattest) (llm_drift_score{{{M}}})",
                    "{{model}} {{feature}} ({{stattest}})",
                )
            ],
            "short",
            min_val=None,
        ).data_links([report_link_series])
    )
    d = d.with_panel(
        table.Panel()
        .title("Drifted features")
        .description("Latest drift verdict per model and feature. Click a model for its Evidently report.")
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .with_target(query(f"max by (model, feature) (llm_drift_detected{{{M}}})", instant=True, fmt_table=True))
        .with_transformation(
            DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": {"Value": "drift"}},
            )
        )
        .with_transformation(
            DataTransformerConfig(id_val="sortBy", options={"sort": [{"field": "drift", "desc": True}]})
        )
        .override_by_name(
            "drift",
            [
                DynamicConfigValue(
                    id_val="mappings",
                    value=[
                        {
                            "type": "value",
                            "options": {
                                "0": {"text": "no drift", "color": "green", "index": 0},
                                "1": {"text": "drifted", "color": "red", "index": 1},
                            },
                        }
                    ],
                ),
                DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ],
        )
        .override_by_name("model", [DynamicConfigValue(id_val="links", value=[report_link_table.build()])])
    )
    d = d.with_panel(
        table.Panel()
        .title("Time since last drift run")
        .description("Drift runs every `drift.every` samples: a long gap means little traffic or a stuck worker.")
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .unit("s")
        .with_target(
            query(
                f"time() - max by (model) (llm_drift_last_run_timestamp_seconds{{{M}}})",
                instant=True,
                fmt_table=True,
            )
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": {"Value": "since last run"}},
            )
        )
        .override_by_name("model", [DynamicConfigValue(id_val="links", value=[report_link_table.build()])])
    )
    return d


# ------------------------------------------------------------------------------------------------- GPU & vLLM
def gpu_dashboard():
    d = new_dashboard(
        "LLM GPU & vLLM",
        "llmops-gpu-vllm",
        "GPUs (llmops gpu-exporter, or NVIDIA's DCGM exporter) and vLLM engines.",
    )
    d = d.with_variable(
        dashboard.QueryVariable("model_name")
        .label("vLLM model")
        .description("vLLM's served model name (its `model_name` label, not the gateway's public name)")
        .datasource(DATASOURCE)
        .query("label_values(vllm:num_requests_running, model_name)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(ALL)
    )
    mn = 'model_name=~"$model_name"'
    gpu_legend = "{{instance}} GPU {{gpu}}"

    d = d.with_row(row("GPUs"))
    d = d.with_panel(
        ts(
            "GPU utilisation",
            "Share of time a kernel ran on the GPU (NVML; DCGM_FI_DEV_GPU_UTIL where only DCGM reports the GPU).",
            [("llmops:gpu_utilization:ratio", gpu_legend)],
            "percentunit",
            max_val=1,
        )
    )
    d = d.with_panel(
        ts(
            "GPU memory used",
            "Memory used and total per GPU. vLLM reserves gpu_memory_utilization (0.9 by default) of it up front. "
            "Alert GPUMemoryHigh above 97%.",
            [
                ("llmops:gpu_memory_used:bytes", gpu_legend + " used"),
                ("llmops:gpu_memory_total:bytes", gpu_legend + " total"),
            ],
            "bytes",
        ).override_by_regexp(
            ".* total", [DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})]
        )
    )
    d = d.with_panel(
        ts(
            "GPU power",
            "Board power draw in watts.",
            [("llmops:gpu_power:watts", gpu_legend)],
            "watt",
        )
    )
    d = d.with_panel(
        ts(
            "GPU temperature",
            "GPU core temperature. Alert GPUTemperatureHigh above 85 °C for 10 minutes.",
            [("llmops:gpu_temperature:celsius", gpu_legend)],
            "celsius",
            min_val=None,
            lines=((None, "green"), (85, "red")),
        )
    )

    d = d.with_row(row("vLLM"))
    d = d.with_panel(
        ts(
            "vLLM running and waiting requests",
            "Requests in the engine's batch and in its queue. Alert VLLMQueueDepthHigh above 10 waiting.",
            [
                (f"sum by (instance, model_name) (vllm:num_requests_running{{{mn}}})", "{{instance}} running"),
                (f"sum by (instance, model_name) (vllm:num_requests_waiting{{{mn}}})", "{{instance}} waiting"),
            ],
            "short",
        )
    )
    d = d.with_panel(
        ts(
            "KV-cache usage",
            "Share of the KV cache in use (vllm:kv_cache_usage_perc, or vllm:gpu_cache_usage_perc before vLLM 0.12). "
            "Alert VLLMKVCacheNearFull above 90%.",
            [(f"llmops:vllm_kv_cache_usage:ratio{{{mn}}}", "{{instance}} {{model_name}}")],
            "percentunit",
            max_val=1,
            lines=((None, "green"), (0.9, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "vLLM time to first token p95 and inter-token latency p95",
            "vLLM's own view, without the gateway and network: compare with the LLM Gateway dashboard.",
            [
                (f"llmops:vllm_time_to_first_token_seconds:p95_5m{{{mn}}}", "{{model_name}} TTFT p95"),
                (f"llmops:vllm_inter_token_latency_seconds:p95_5m{{{mn}}}", "{{model_name}} inter-token p95"),
            ],
            "s",
        )
    )
    d = d.with_panel(
        ts(
            "Prompt and generation tokens/s",
            "Tokens vLLM processed per second: prompt (prefill) and generated (decode).",
            [
                (f"sum by (model_name) (rate(vllm:prompt_tokens_total{{{mn}}}[{RI}]))", "{{model_name}} prompt"),
                (
                    f"sum by (model_name) (rate(vllm:generation_tokens_total{{{mn}}}[{RI}]))",
                    "{{model_name}} generation",
                ),
            ],
            "short",
        )
    )
    d = d.with_panel(
        ts(
            "Preemptions/s",
            "Running requests evicted for lack of KV-cache space (recomputed later: latency grows).",
            [(f"sum by (model_name) (rate(vllm:num_preemptions_total{{{mn}}}[{RI}]))", "{{model_name}}")],
            "ops",
        )
    )
    d = d.with_panel(
        ts(
            "Prefix cache hit ratio",
            "Share of prompt tokens served from vLLM's prefix cache.",
            [
                (
                    f"sum by (model_name) (rate(vllm:prefix_cache_hits_total{{{mn}}}[{RI}]))"
                    f" / sum by (model_name) (rate(vllm:prefix_cache_queries_total{{{mn}}}[{RI}]))",
                    "{{model_name}}",
                )
            ],
            "percentunit",
            max_val=1,
        )
    )
    return d


DASHBOARDS = {
    "llm-gateway.json": gateway_dashboard,
    "llm-quality-drift.json": quality_dashboard,
    "llm-gpu-vllm.json": gpu_dashboard,
}


# ----------------------------------------------------------------------------------------------- serialisation
def _clean_link(link: dict[str, Any]) -> dict[str, Any]:
    # The SDK types field data links as dashboard links; Grafana's data links only use these keys.
    return {k: link[k] for k in ("title", "url", "targetBlank") if k in link}


def _finish(model: dict[str, Any]) -> dict[str, Any]:
    """Number the panels (the SDK leaves them at 0) and trim data links."""
    panels = model.get("panels", [])
    for i, panel in enumerate(panels, start=1):
        panel["id"] = i
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        if "links" in defaults:
            defaults["links"] = [_clean_link(link) for link in defaults["links"]]
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override.get("properties", []):
                if prop.get("id") == "links":
                    prop["value"] = [_clean_link(link) for link in prop["value"]]
    return model


def render(builder) -> str:
    model = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return json.dumps(_finish(model), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: render(make()) for name, make in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default {OUT_DIR})")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_all().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run: python grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
