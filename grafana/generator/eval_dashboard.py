"""LLM Evaluation (uid ``llmops-eval``): ``llmops eval``'s benchmark scores per model and task over time, from the
Pushgateway (docs/eval.md), and what evaluating costs."""

from __future__ import annotations

from typing import Any

from .panels import RI, BarGauge, Rows, Series, Stat, add_rows, new_dashboard, query_variable

MT = 'model=~"$model", task=~"$task"'
LEGEND = "{{model}} · {{task}} · {{metric}}"
EVAL = 'kind="eval", model=~"$model"'


def variables() -> list[Any]:
    return [
        query_variable("model", "Model", "The gateway's model name", "label_values(llm_eval_score, model)"),
        query_variable(
            "task",
            "Task",
            "Task of the catalogue (llmops eval tasks)",
            'label_values(llm_eval_score{model=~"$model"}, task)',
        ),
    ]


SCORES = [
    Series(
        "Score per model and task",
        "Each run's scores (0..1: acc, acc_norm, exact match) as pushed by llmops eval; a step is a new run. Alert "
        "LLMEvalAccuracyRegression when a score falls more than two standard errors below the run before.",
        [(f"llm_eval_score{{{MT}}}", LEGEND)],
        "percentunit",
        w=24,
        max_val=1,
    ),
    BarGauge(
        "Last score by model and task",
        "The last run's scores.",
        f"llm_eval_score{{{MT}}}",
        LEGEND,
        "percentunit",
        ((None, "red"), (0.5, "yellow"), (0.75, "green")),
    ),
    Series(
        "Change since the previous run",
        "Last score minus the previous run's, and the alert's threshold: minus two standard errors of the "
        "difference (dashed). Below the dashed line: a regression.",
        [
            (
                f"llm_eval_score{{{MT}}} - on (model, task, metric) llm_eval_previous_score{{{MT}}}",
                LEGEND,
            ),
            (
                f"-2 * sqrt(llm_eval_score_stderr{{{MT}}} ^ 2 + on (model, task, metric) "
                f"llm_eval_previous_score_stderr{{{MT}}} ^ 2)",
                LEGEND + " threshold",
            ),
        ],
        "percentunit",
        min_val=None,
        dashed=("regexp", ".* threshold"),
    ),
    Stat(
        "Items in the last run",
        "Items scored, over the selected models and tasks: few items mean wide standard errors.",
        f"sum(llm_eval_items{{{MT}}})",
        "short",
    ),
    Stat(
        "Standard error, largest",
        "The largest standard error of a selected score: differences below about twice this are chance.",
        f"max(llm_eval_score_stderr{{{MT}}})",
        "percentunit",
        ((None, "green"), (0.05, "yellow"), (0.1, "red")),
    ),
]

COST = [
    Series(
        "Cost of the last run by model",
        'What the last llmops eval run of each model cost (the gateway\'s kind="eval" cost during the run).',
        [('llm_eval_run_cost_usd{model=~"$model"}', "{{model}}")],
        "currencyUSD",
    ),
    Series(
        "Evaluation traffic cost per hour",
        "The gateway's cost of evaluation traffic (x-llmops-traffic: eval), per hour at the current rate.",
        [
            (
                f"sum by (model) (rate(llm_gateway_traffic_cost_usd_total{{{EVAL}}}[{RI}])) * 3600",
                "{{model}}",
            )
        ],
        "currencyUSD",
    ),
    Series(
        "Tokens of the last run",
        "Input (prompt) and output tokens of the last run, from the answers' usage.",
        [('llm_eval_run_tokens{model=~"$model"}', "{{model}} {{type}}")],
        "short",
    ),
    Series(
        "Duration of the last run",
        "Wall-clock time of the last run of each model (answers read from a resumed run's cache included).",
        [('llm_eval_run_duration_seconds{model=~"$model"}', "{{model}}")],
        "s",
    ),
]


def rows() -> Rows:
    return [("Scores", SCORES), ("Cost of evaluation", COST)]


def build() -> Any:
    d = new_dashboard(
        "LLM Evaluation",
        "llmops-eval",
        "Benchmark scores of the gateway's models over time (llmops eval, through the Pushgateway) and their cost.",
    )
    for variable in variables():
        d = d.with_variable(variable)
    return add_rows(d, rows())
