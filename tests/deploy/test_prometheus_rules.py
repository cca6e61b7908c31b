"""Prometheus, Alertmanager and Grafana configuration of llmops-stack.

Runs promtool and amtool (Debian/Ubuntu: `apt-get install -y prometheus prometheus-alertmanager`, which provide
/usr/bin/promtool and /usr/bin/amtool; PROMTOOL / AMTOOL override the paths). Without them these tests skip, unless
the environment variable CI is set: then they fail. The dashboard generator needs grafana-foundation-sdk (same rule).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "prometheus"
PROMETHEUS_YML = PROM / "prometheus.yml"
ALERTMANAGER_YML = PROM / "alertmanager.yml"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
RULE_TEST_FILES = sorted((PROM / "rules" / "tests").glob("*.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
GRAFANA = ROOT / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))

SEVERITIES = {"page", "ticket"}

# Metric names the stack may query: the design contract (docs/observability.md lists them), vLLM and DCGM names
# from the field notes, and the gauges agreed with the gateway. Histograms get _bucket/_sum/_count.
COUNTERS_AND_GAUGES = {
    # gateway
    "llm_gateway_requests_total",
    "llm_gateway_tokens_total",
    "llm_gateway_cost_usd_total",
    "llm_gateway_requests_in_flight",
    "llm_gateway_upstream_errors_total",
    "llm_gateway_retries_total",
    "llm_gateway_fallbacks_total",
    "llm_gateway_rate_limited_total",
    "llm_gateway_budget_exceeded_total",
    "llm_gateway_samples_total",
    "llm_gateway_feedback_total",
    "llm_gateway_deployment_healthy",
    "llm_gateway_key_spend_usd",
    "llm_gateway_key_budget_usd",
    "llm_gateway_gpu_served_tokens_per_second",
    "llm_gateway_gpu_throughput_shared",
    "llm_gateway_usage_estimated_total",
    "llm_gateway_estimated_cost_usd_total",
    "llm_gateway_cache_savings_usd_total",
    "llm_gateway_cache_write_premium_usd_total",
    "llm_gateway_pii_masked_total",
    # GPU exporter
    "llm_gpu_up",
    "llm_gpu_scrape_errors_total",
    "llm_gpu_utilization_ratio",
    "llm_gpu_memory_used_bytes",
    "llm_gpu_memory_total_bytes",
    "llm_gpu_power_watts",
    "llm_gpu_temperature_celsius",
    # monitors
    "llm_monitor_samples_processed_total",
    "llm_monitor_stream_backlog",
    "llm_monitor_samples_deferred_total",
    "llm_judge_errors_total",
    "llm_judge_runs_total",
    "llm_judge_pairwise_total",
    "llm_drift_detected",
    "llm_drift_score",
    "llm_drift_share",
    "llm_drift_last_run_timestamp_seconds",
    "llm_drift_group_detected",
    "llm_judge_variant_rating",
    # human review (docs/review.md)
    "llm_judge_variant_rating_lower",
    "llm_judge_variant_rating_upper",
    "llm_judge_variant_battles",
    "llm_judge_human_agreement_ratio",
    "llm_judge_human_kappa",
    "llm_judge_human_position_bias_ratio",
    "llm_judge_human_spearman",
    "llm_judge_human_items",
    "llm_judge_human_agreement_floor_ratio",
    "llm_judge_human_agreement_min_items",
    "llm_review_inter_reviewer_agreement_ratio",
    "llm_review_votes_total",
    "llm_review_sign_ins_total",
    "llm_review_queue_items",
    "llm_shadow_requests_total",
    "llm_gateway_traffic_cost_usd_total",
    # vLLM (gpu_cache_usage_perc: before 0.12)
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:request_success_total",
    "vllm:num_preemptions_total",
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    # DCGM exporter
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_GPU_TEMP",
    # Prometheus
    "up",
    # llmops eval, through the Pushgateway (docs/eval.md)
    "llm_eval_score",
    "llm_eval_score_stderr",
    "llm_eval_previous_score",
    "llm_eval_previous_score_stderr",
    "llm_eval_items",
    "llm_eval_run_timestamp_seconds",
    "llm_eval_run_cost_usd",
    "llm_eval_run_requests",
    "llm_eval_run_tokens",
    "llm_eval_run_duration_seconds",
    "llm_gateway_traffic_requests_total",
}
HISTOGRAMS = {
    "llm_gateway_request_duration_seconds",
    "llm_gateway_time_to_first_token_seconds",
    "llm_gateway_time_per_output_token_seconds",
    "llm_gateway_overhead_seconds",
    "llm_judge_score",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:time_per_output_token_seconds",
    "vllm:request_time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_prompt_tokens",
    "vllm:request_generation_tokens",
}
KNOWN_METRICS = COUNTERS_AND_GAUGES | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}

# Alerts about one model: every firing case must keep the `model` label (Alertmanager groups and inhibits on it).
PER_MODEL_ALERTS = {
    "LLMHighErrorRatio",
    "LLMDeploymentUnhealthy",
    "LLMLatencySLOBurnRate",
    "LLMTTFTSLOBurnRate",
    "LLMJudgeScoreDrop",
    "LLMJudgeScoreBelowFloor",
    "LLMDriftDetected",
    "LLMSampleDrops",
    "LLMMonitorSampleErrors",
    "LLMEvalAccuracyRegression",
    "LLMJudgeHumanAgreementLow",
    "LLMEstimatedCostShareHigh",
    "LLMAnswersLeakPersonalData",
    "LLMQualitySLOBurnRate",
}
DASHBOARD_UIDS = {"llmops-gateway", "llmops-quality", "llmops-gpu-vllm", "llmops-eval", "llmops-slo"}


# ------------------------------------------------------------------------------------------------------ helpers
def _tool(name: str, package: str) -> str:
    path = os.environ.get(name.upper()) or shutil.which(name)
    if path:
        return path
    message = f"{name} not found on PATH (Debian/Ubuntu: apt-get install -y {package})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so this is an error, not a skip")
    pytest.skip(message)


@pytest.fixture(scope="module")
def promtool() -> str:
    return _tool("promtool", "prometheus")


@pytest.fixture(scope="module")
def amtool() -> str:
    return _tool("amtool", "prometheus-alertmanager")


def _run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _rules(kind: str) -> list[dict[str, Any]]:
    out = []
    for path in RULE_FILES:
        for group in _load(path)["groups"]:
            out.extend(rule for rule in group["rules"] if kind in rule)
    return out


ALERT_RULES = _rules("alert")
RECORDING_RULES = _rules("record")
RECORDED_NAMES = {rule["record"] for rule in RECORDING_RULES}


def _alert_rule_tests() -> list[dict[str, Any]]:
    cases = []
    for path in RULE_TEST_FILES:
        for test in _load(path)["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def _duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text}"
    return sum(int(n) * units[u] for n, u in parts)


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
_KEYWORDS |= {"inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a rough parse, good for our own expressions)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "{}", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\boffset\s+-?\w+", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{[^}]*\}|\$\w+", " ", e)  # Grafana variables
    e = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w:])", " ", e)  # numbers
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?!\s*\(|[a-zA-Z0-9_:])", e))
    return {n for n in names if n not in _KEYWORDS}


def _dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in DASHBOARD_FILES}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel or variable title, PromQL) for every query of every dashboard."""
    out = []
    for name, dashboard in _dashboards().items():
        for panel in _panels(dashboard):
            out.extend((name, panel["title"], t["expr"]) for t in panel.get("targets", []) if t.get("expr"))
        for var in dashboard.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                q = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
                m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
                out.append((name, f"${var['name']}", m.group(1) if m else q))
    return out


def rule_queries() -> list[tuple[str, str]]:
    return [(r.get("alert") or r["record"], str(r["expr"])) for r in ALERT_RULES + RECORDING_RULES]


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


# ----------------------------------------------------------------------------------------------- tool checks
def test_promtool_check_config(promtool: str) -> None:
    _run(promtool, "check", "config", PROMETHEUS_YML.relative_to(ROOT))


def test_promtool_check_rules(promtool: str) -> None:
    _run(promtool, "check", "rules", *(p.relative_to(ROOT) for p in RULE_FILES))


@pytest.fixture(scope="module")
def promtool_unit_results(promtool: str) -> dict[str, tuple[int, str]]:
    """`promtool test rules` on every test file, all at once (a few seconds each)."""
    procs = {
        path.name: subprocess.Popen(
            [promtool, "test", "rules", str(path.relative_to(ROOT))],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in RULE_TEST_FILES
    }
    return {name: (proc.wait(timeout=120), proc.communicate()[0]) for name, proc in procs.items()}


@pytest.mark.parametrize("test_file", [p.name for p in RULE_TEST_FILES])
def test_promtool_unit_tests(promtool_unit_results: dict[str, tuple[int, str]], test_file: str) -> None:
    returncode, output = promtool_unit_results[test_file]
    assert returncode == 0, f"promtool test rules {test_file} failed:\n{output}"
    assert "SUCCESS" in output


def test_amtool_check_config(amtool: str) -> None:
    _run(amtool, "check-config", ALERTMANAGER_YML.relative_to(ROOT))


@pytest.mark.parametrize(("labels", "receiver"), [("severity=page", "page"), ("severity=ticket", "ticket")])
def test_alertmanager_routes_by_severity(amtool: str, labels: str, receiver: str) -> None:
    result = _run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}", "alertname=X", labels)
    assert result.stdout.strip() == receiver


def test_alertmanager_commented_examples_are_valid(amtool: str, tmp_path: Path) -> None:
    """The Slack and email examples in comments stay valid when uncommented."""
    pattern = re.compile(r"^(\s*)# (smtp_\w+:|slack_api_url_file:|slack_configs:|email_configs:|\s+\S)")
    lines = ALERTMANAGER_YML.read_text(encoding="utf-8").splitlines()
    uncommented = [pattern.sub(r"\1\2", line) for line in lines]
    assert sum(a != b for a, b in zip(lines, uncommented, strict=True)) >= 10
    config = tmp_path / "alertmanager.yml"
    config.write_text("\n".join(uncommented) + "\n", encoding="utf-8")
    receivers = {r["name"]: r for r in _load(config)["receivers"]}
    assert "slack_configs" in receivers["page"] and "email_configs" in receivers["ticket"]
    _run(amtool, "check-config", config)


# ----------------------------------------------------------------------------------------- static rule checks
def test_every_alert_has_severity_and_annotations() -> None:
    assert len({r["alert"] for r in ALERT_RULES}) >= 20
    for rule in ALERT_RULES:
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert str(annotations.get(key, "")).strip(), f"{name}: no {key}"
        assert annotations["runbook"] == f"docs/runbook.md#{name.lower()}", name


def test_every_runbook_anchor_exists() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    anchors = {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}
    for rule in ALERT_RULES:
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in docs/runbook.md"


def test_every_alert_fires_and_stays_quiet_in_promtool_tests() -> None:
    cases = _alert_rule_tests()
    for rule in ALERT_RULES:
        name, labels = rule["alert"], {k: str(v) for k, v in rule["labels"].items()}
        firing = [
            alert
            for case in cases
            if case["alertname"] == name
            for alert in case.get("exp_alerts") or []
            if labels.items() <= {k: str(v) for k, v in alert.get("exp_labels", {}).items()}.items()
        ]
        assert firing, f"{name} {labels}: no promtool case where it fires"
        for alert in firing:
            assert set(alert.get("exp_annotations", {})) == {"summary", "description", "runbook"}, name
        assert any(c["alertname"] == name and not c.get("exp_alerts") for c in cases), f"{name}: no quiet case"


def test_per_model_alerts_keep_the_model_label() -> None:
    assert {r["alert"] for r in ALERT_RULES} >= PER_MODEL_ALERTS
    for case in _alert_rule_tests():
        if case["alertname"] in PER_MODEL_ALERTS:
            for alert in case.get("exp_alerts") or []:
                assert "model" in alert["exp_labels"], case["alertname"]


def test_rule_names_and_windows() -> None:
    for rule in RECORDING_RULES:
        assert re.fullmatch(r"llmops:[a-z0-9_]+(:[a-z0-9_]+)?", rule["record"]), rule["record"]
    for name, expr in rule_queries():
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert _duration_seconds(window) >= 60, f"{name}: window [{window}] under 4x the 15s scrape interval"


def test_rules_use_known_metrics_and_counters_with_total() -> None:
    for name, expr in rule_queries():
        unknown = metric_names(expr) - KNOWN_METRICS - RECORDED_NAMES
        assert not unknown, f"{name}: unknown metric names {sorted(unknown)}"
        _check_counters(name, expr)


def _check_counters(where: str, expr: str) -> None:
    for metric in re.findall(r"\b(?:rate|irate|increase)\(\s*([a-zA-Z_:][\w:]*)", expr):
        assert re.search(r"(_total|_bucket|_sum|_count)$", metric), f"{where}: rate() of {metric} (not a counter)"


def test_prometheus_yml_scrape_jobs() -> None:
    config = _load(PROMETHEUS_YML)
    assert config["global"]["scrape_interval"] == "15s"
    jobs = {}
    for job in config["scrape_configs"]:
        # One static_configs entry per job, so tests can re-target a job by rewriting its targets.
        assert len(job["static_configs"]) == 1, job["job_name"]
        jobs[job["job_name"]] = job["static_configs"][0]["targets"]
    assert jobs == {
        "llm-gateway": ["gateway:8080"],
        "llmops-monitors": ["monitors:9101"],
        "vllm": ["vllm:8000", "simulator:8000"],
        "gpu-exporter": ["gpu-exporter:9835"],
        "dcgm": ["dcgm-exporter:9400"],
        "pushgateway": ["pushgateway:9091"],
        "prometheus": ["localhost:9090"],
    }
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    listed = {(PROMETHEUS_YML.parent / f).resolve() for f in config["rule_files"]}
    assert listed == {p.resolve() for p in RULE_FILES}


def test_alertmanager_grouping_and_inhibitions() -> None:
    config = _load(ALERTMANAGER_YML)
    assert config["route"]["group_by"] == ["alertname", "model"]
    rules = config["inhibit_rules"]
    assert {
        "source_matchers": ['alertname="LLMGatewayDown"'],
        "target_matchers": ['model=~".+"'],
    } in rules
    assert {
        "source_matchers": ['severity="page"'],
        "target_matchers": ['severity="ticket"'],
        "equal": ["alertname", "model"],
    } in rules
    urls = {c["url"] for r in config["receivers"] for c in r.get("webhook_configs", [])}
    assert urls == {"http://127.0.0.1:5001/alerts"}


# ---------------------------------------------------------------------------------------------------- Grafana
def _generator():
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError:
        message = "grafana-foundation-sdk is not installed (see grafana/README.md for the pinned version)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so this is an error, not a skip")
        pytest.skip(message)
    spec = importlib.util.spec_from_file_location("llmops_grafana_generate", GRAFANA / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_equal_generated() -> None:
    generated = _generator().render_all()
    committed = {path.name: path.read_text(encoding="utf-8") for path in DASHBOARD_FILES}
    assert set(committed) == set(generated), "run: python grafana/generate.py"
    for name, text in generated.items():
        assert committed[name] == text, f"{name} is out of date: run python grafana/generate.py"


def test_dashboards_uids_datasource_and_variables() -> None:
    dashboards = _dashboards()
    assert {d["uid"] for d in dashboards.values()} == DASHBOARD_UIDS
    for name, dashboard in dashboards.items():
        for panel in _panels(dashboard):
            assert panel.get("title") and (panel["type"] == "row" or panel.get("description")), (name, panel)
            for target in panel.get("targets", []):
                assert target["datasource"] == {"type": "prometheus", "uid": "prometheus"}, (name, panel["title"])
    gateway = json.dumps(dashboards["llm-gateway.json"]["panels"])
    assert 'key=~\\"$key\\"' in gateway and 'model=~\\"$model\\"' in gateway
    quality = dashboards["llm-quality-drift.json"]
    assert 'model=~\\"$model\\"' in json.dumps(quality["panels"])
    links = re.findall(r'"url": "([^"]*)"', json.dumps(quality["panels"]))
    assert "${monitors_url}/reports/${__field.labels.model}" in links
    assert "${monitors_url}/reports/${__data.fields.model}" in links
    assert 'model_name=~\\"$model_name\\"' in json.dumps(dashboards["llm-gpu-vllm.json"]["panels"])


def test_dashboard_queries_use_known_metrics() -> None:
    queries = dashboard_queries()
    assert len(queries) > 50
    used = set()
    for name, title, expr in queries:
        names = metric_names(expr)
        used |= names
        unknown = names - KNOWN_METRICS - RECORDED_NAMES
        assert not unknown, f"{name} / {title}: unknown metric names {sorted(unknown)} in {expr}"
        _check_counters(f"{name} / {title}", expr)
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window in ("$__rate_interval", "$__range") or _duration_seconds(window) >= 60, (title, window)
    # The parse is not vacuous: it finds the names it should.
    assert {"llm_gateway_requests_total", "vllm:num_preemptions_total", "llmops:judge_score:avg_1h"} <= used


def test_variant_queries_keep_the_model() -> None:
    """Variant names (control/treatment, a/b) repeat across models: a query grouping by variant also groups by model
    and names it in the legend, or different models' variants are added up into one series."""
    checked = 0
    for name, dashboard in _dashboards().items():
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                for clause in re.findall(r"\bby\s*\(([^)]*)\)", target.get("expr", "")):
                    labels = {label.strip() for label in clause.split(",")}
                    if labels & {"variant", "variant_a", "variant_b"}:
                        checked += 1
                        assert "model" in labels, f"{name} / {panel['title']}: by ({clause}) without model"
                        assert "{{model}}" in target.get("legendFormat", ""), f"{name} / {panel['title']}: legend"
    assert checked >= 1


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses every dashboard query (as a recording rule, Grafana variables replaced)."""
    rules = []
    for i, (_name, _title, expr) in enumerate(dashboard_queries()):
        expr = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
        expr = re.sub(r"\$\w+", ".*", expr)
        rules.append({"record": f"dashboard:query_{i}:check", "expr": expr})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    _run(promtool, "check", "rules", path)


def test_metric_name_parser() -> None:
    expr = (
        'sum by (model, le) (rate(llm_x_bucket{le="10.24", a=~"b|c"}[5m])) / on (model) group_left '
        'llmops:y:rate5m{model=~"$model"} > 1e3 and vllm:z offset 1h '
        'or vector(0.5) * label_replace(u, "a", "$1", "b", "(.+)")'
    )
    assert metric_names(expr) == {"llm_x_bucket", "llmops:y:rate5m", "vllm:z", "u"}


def test_alert_descriptions_name_existing_panels() -> None:
    titles = {panel["title"] for d in _dashboards().values() for panel in _panels(d)}
    for rule in ALERT_RULES:
        for quoted in re.findall(r'"([A-Z][^"]+)"', rule["annotations"]["description"]):
            assert quoted in titles, f"{rule['alert']}: no panel titled {quoted!r}"


def test_grafana_provisioning() -> None:
    datasources = _load(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert [(d["uid"], d["type"], d["url"]) for d in datasources] == [
        ("prometheus", "prometheus", "http://prometheus:9090")
    ]
    providers = _load(GRAFANA / "provisioning" / "dashboards" / "dashboards.yml")["providers"]
    assert [(p["type"], p["options"]["path"]) for p in providers] == [("file", "/var/lib/grafana/dashboards")]
