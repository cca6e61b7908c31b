"""LLM Gateway (uid ``llmops-gateway``): traffic, errors, latency, tokens, cost and upstream health."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import statetimeline as state_timeline
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models.dashboard import ValueMap, ValueMappingResult

from .panels import (
    DATASOURCE,
    MK,
    RI,
    BarGauge,
    M,
    Rows,
    Series,
    Stat,
    add_rows,
    key_variable,
    model_variable,
    new_dashboard,
    percentiles,
    query,
    thresholds,
)

ERROR_STEPS = ((None, "green"), (0.01, "orange"), (0.05, "red"))  # ticket at 1%, page at 5% (LLMHighErrorRatio)
REQUESTS = f"llm_gateway_requests_total{{{MK}}}"
COST = f"llm_gateway_cost_usd_total{{{MK}}}"

OVERVIEW = [
    Stat(
        "Requests/s",
        "All requests through the gateway, for the selected models and keys.",
        f"sum(rate({REQUESTS}[{RI}]))",
        "reqps",
    ),
    Stat(
        "Error ratio (5xx)",
        "Share of requests answered with a 5xx. Alert LLMHighErrorRatio: ticket above 1%, page above 5%.",
        f'(sum(rate(llm_gateway_requests_total{{status=~"5..", {MK}}}[{RI}])) or vector(0))'
        f" / sum(rate({REQUESTS}[{RI}]))",
        "percentunit",
        steps=ERROR_STEPS,
    ),
    Stat(
        "Latency p95",
        "End-to-end request latency, 95th percentile, selected models (keys do not apply).",
        f"histogram_quantile(0.95, sum by (le) (rate(llm_gateway_request_duration_seconds_bucket{{{M}}}[{RI}])))",
        "s",
        steps=((None, "green"), (10.24, "red")),
    ),
    Stat(
        "TTFT p95",
        "Time to first token of streamed requests, 95th percentile (SLO: 99% within 2.5 s).",
        f"histogram_quantile(0.95, sum by (le) (rate(llm_gateway_time_to_first_token_seconds_bucket{{{M}}}[{RI}])))",
        "s",
        steps=((None, "green"), (2.5, "red")),
    ),
    Stat(
        "Cost per hour",
        "Spend rate in USD per hour for the selected models and keys.",
        f"sum(rate({COST}[{RI}])) * 3600",
        "currencyUSD",
    ),
    Stat(
        "In flight",
        "Requests the gateway is serving right now.",
        f"sum(llm_gateway_requests_in_flight{{{M}}})",
        "short",
    ),
]

TRAFFIC = [
    Series(
        "Requests/s by model and status",
        "Requests per second by public model name and HTTP status.",
        [(f"sum by (model, status) (rate({REQUESTS}[{RI}]))", "{{model}} {{status}}")],
        "reqps",
        stack=True,
    ),
    Series(
        "Error ratio by model",
        "Share of requests answered with any 5xx, and with 502/504 (every deployment and fallback failed "
        "upstream), over 5 minutes. Lines: ticket at 1%, page at 5% (LLMHighErrorRatio).",
        [
            (f"llmops:request_errors:ratio_rate5m{{{M}}}", "{{model}} 5xx"),
            (f"llmops:request_upstream_errors:ratio_rate5m{{{M}}}", "{{model}} 502/504"),
        ],
        "percentunit",
        lines=ERROR_STEPS,
    ),
    Series(
        "Rejected requests/s by key",
        "Requests refused with 429: over the key's rpm limit, or over its spend budget.",
        [
            (f'sum by (key) (rate(llm_gateway_rate_limited_total{{key=~"$key"}}[{RI}]))', "{{key}} rate limited"),
            (f'sum by (key) (rate(llm_gateway_budget_exceeded_total{{key=~"$key"}}[{RI}]))', "{{key}} over budget"),
        ],
        "reqps",
    ),
    Series(
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
    ),
]

LATENCY = [
    Series(
        "Request latency p50/p95/p99",
        "End-to-end latency over 5 minutes (recording rules). Line: the latency SLO threshold, 10.24 s "
        "(99% of requests below it).",
        percentiles("llmops:request_duration_seconds", ("p50", "p95", "p99")),
        "s",
        lines=((None, "green"), (10.24, "red")),
    ),
    Series(
        "Time to first token p50/p95/p99",
        "Streamed requests' time to first token over 5 minutes. Line: the TTFT SLO threshold, 2.5 s (99% of "
        "requests below it).",
        percentiles("llmops:time_to_first_token_seconds", ("p50", "p95", "p99")),
        "s",
        lines=((None, "green"), (2.5, "red")),
    ),
    Series(
        "Time per output token p50/p95",
        "Decode speed seen by clients: seconds per generated token after the first.",
        percentiles("llmops:time_per_output_token_seconds", ("p50", "p95")),
        "s",
    ),
    Series(
        "Share of requests over the SLO thresholds (1h)",
        "What the SLO burn-rate alerts read: share of requests slower than 10.24 s, and of first tokens later "
        "than 2.5 s, over the last hour. The SLOs allow 1% (line); 14.4% pages within minutes.",
        [
            (f"llmops:slow_requests:ratio_rate1h{{{M}}}", "{{model}} latency > 10.24 s"),
            (f"llmops:slow_first_tokens:ratio_rate1h{{{M}}}", "{{model}} TTFT > 2.5 s"),
        ],
        "percentunit",
        lines=((None, "green"), (0.01, "orange"), (0.144, "red")),
    ),
]

TOKENS_AND_COST = [
    Series(
        "Tokens/s by model and type",
        "Tokens per second by type, which are disjoint: input (uncached prompt), cached_input (read from a prompt "
        "cache), cache_write (written to one), output and reasoning (hidden thinking, part of the output).",
        [(f"sum by (model, type) (rate(llm_gateway_tokens_total{{{MK}}}[{RI}]))", "{{model}} {{type}}")],
        "short",
        stack=True,
    ),
    Series(
        "Cost per hour by model",
        "Spend rate in USD per hour by model. Dashed: the whole stack over the last hour and its budget "
        "(llmops:cost_budget_usd_per_hour, alert LLMCostOverBudget).",
        [
            (f"sum by (model) (rate({COST}[{RI}])) * 3600", "{{model}}"),
            ("sum(llmops:cost_usd_per_hour:rate1h)", "all models (1h)"),
            ("llmops:cost_budget_usd_per_hour", "budget"),
        ],
        "currencyUSD",
        dashed=("regexp", "all models \\(1h\\)|budget"),
    ),
    Series(
        "Cost per million tokens by model",
        "USD per million tokens (input, cached input and output together). Hosted models: their per-token "
        "prices. Self-hosted (GPU-priced) models: their GPUs' cost per second over the tokens per second they "
        "served, so both sit on one axis, and a self-hosted model gets cheaper per token as its GPUs get busier "
        "(README, Cost).",
        [
            (
                f"sum by (model) (rate({COST}[{RI}])) * 1e6"
                f" / sum by (model) (rate(llm_gateway_tokens_total{{{MK}}}[{RI}]))",
                "{{model}}",
            )
        ],
        "currencyUSD",
    ),
    Series(
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
    ),
    Series(
        "Cost per hour by key",
        "Spend rate in USD per hour by key.",
        [(f"sum by (key) (rate({COST}[{RI}])) * 3600", "{{key}}")],
        "currencyUSD",
        stack=True,
    ),
    BarGauge(
        "Key budget used",
        "Spend of each key over its budget_usd; at 100% its requests get 429. Alert at 90% "
        "(LLMKeyBudgetNearlyExhausted). Keys without a budget are not shown.",
        'max by (key) (llm_gateway_key_spend_usd{key=~"$key"}) / max by (key) '
        '(llm_gateway_key_budget_usd{key=~"$key"} > 0)',
        "{{key}}",
        "percentunit",
        steps=((None, "green"), (0.75, "orange"), (0.9, "red")),
    ),
]


def upstream_health() -> Any:
    """State timeline of llm_gateway_deployment_healthy (0 = red 'unhealthy', 1 = green 'healthy')."""
    mapping = {
        "0": ValueMappingResult(text="unhealthy", color="red", index=0),
        "1": ValueMappingResult(text="healthy", color="green", index=1),
    }
    return (
        state_timeline.Panel()
        .title("Upstream health")
        .description("Whether the gateway keeps each deployment in rotation (llm_gateway_deployment_healthy).")
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .show_value(common_models.VisibilityMode.NEVER)
        .mappings([ValueMap(options=mapping)])
        .thresholds(thresholds((None, "red"), (1, "green")))
        .with_target(
            query(f"max by (model, deployment) (llm_gateway_deployment_healthy{{{M}}})", "{{model}} {{deployment}}")
        )
    )


def upstreams() -> list[Any]:
    return [
        Series(
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
        ),
        Series(
            "Upstream failure ratio by deployment",
            "Failed attempts over attempts, per deployment, over 5 minutes. Alert above 20% "
            "(LLMUpstreamDeploymentFailing).",
            [("llmops:deployment_upstream_errors:ratio_rate5m", "{{deployment}}")],
            "percentunit",
            max_val=1,
            lines=((None, "green"), (0.2, "red")),
        ),
        upstream_health(),
        Series(
            "In-flight requests",
            "Requests being served, by model.",
            [(f"sum by (model) (llm_gateway_requests_in_flight{{{M}}})", "{{model}}")],
            "short",
        ),
    ]


INTERNALS = [
    Series(
        "Gateway overhead p50/p99",
        "The gateway's own time per request, upstream excluded, over 5 minutes. Alert above 50 ms p99 "
        "(LLMGatewayOverheadHigh).",
        [
            ("llmops:gateway_overhead_seconds:p50_5m", "p50"),
            ("llmops:gateway_overhead_seconds:p99_5m", "p99"),
        ],
        "s",
        lines=((None, "green"), (0.05, "red")),
    ),
    Series(
        "Samples queued/dropped",
        "Traffic samples sent to the monitors' Redis stream: queued, dropped (Redis slow or down; alert "
        "LLMSampleDrops above 5%), skipped (not sampled).",
        [(f"sum by (model, outcome) (rate(llm_gateway_samples_total{{{M}}}[{RI}]))", "{{model}} {{outcome}}")],
        "ops",
    ),
]


def rows() -> Rows:
    return [
        ("Overview", OVERVIEW),
        ("Traffic and errors", TRAFFIC),
        ("Latency", LATENCY),
        ("Tokens and cost", TOKENS_AND_COST),
        ("Upstreams", upstreams()),
        ("Gateway internals", INTERNALS),
    ]


def build() -> Any:
    d = new_dashboard(
        "LLM Gateway",
        "llmops-gateway",
        "Traffic, errors, latency, tokens, cost and upstream health of the llmops gateway.",
    )
    d = d.with_variable(model_variable()).with_variable(key_variable())
    return add_rows(d, rows())
