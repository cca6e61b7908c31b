"""Quality SLOs (issue 20, item 2): the config's ``models[].slos`` are validated, and ``llmops slo rules`` turns them
into prometheus/rules/quality_slo.yml, which must be what the command makes from deploy/config.yaml (``--check``).
promtool tests of the rules: prometheus/rules/tests/quality_slo_test.yml (run by test_prometheus_rules.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmops.config import ConfigError, load_config, parse_config
from llmops.slo import render_rules

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "prometheus" / "rules" / "quality_slo.yml"
DEPLOY = ROOT / "deploy" / "config.yaml"


def _model(**extra: object) -> dict:
    return {"name": "m", "deployments": [{"name": "d", "base_url": "http://x/v1", "model": "m"}], **extra}


def test_the_shipped_rules_are_generated_from_deploy_config() -> None:
    assert SHIPPED.read_text(encoding="utf-8") == render_rules(load_config(DEPLOY, environ={}), "deploy/config.yaml"), (
        "run: llmops slo rules --config deploy/config.yaml > prometheus/rules/quality_slo.yml"
    )


def test_the_command_prints_and_checks(tmp_path: Path) -> None:
    def llmops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmops.cli", "slo", "rules", *args], cwd=ROOT, capture_output=True, text=True
        )

    printed = llmops("--config", "deploy/config.yaml")
    assert printed.returncode == 0 and printed.stdout == SHIPPED.read_text(encoding="utf-8")
    assert llmops("--config", "deploy/config.yaml", "--check", str(SHIPPED)).returncode == 0
    stale = tmp_path / "stale.yml"
    stale.write_text("groups: []\n")
    checked = llmops("--config", "deploy/config.yaml", "--check", str(stale))
    assert checked.returncode == 1 and "out of date" in checked.stderr


def test_rules_for_each_kind_of_slo() -> None:
    slos = [
        {"name": "no_refusals", "judge": "rules", "criterion": "refusal", "good_above": 0.5, "objective": 0.99},
        {"name": "helpful", "judge": "llm_single", "criterion": "overall", "good_above": 0.6, "objective": 0.95},
        {"name": "stable", "max_drift_share": 0.3, "objective": 0.9},
    ]
    groups = yaml.safe_load(render_rules(parse_config({"models": [_model(slos=slos)]})))["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    budgets = {r["labels"]["slo"]: r["expr"] for r in rules if r.get("record") == "llmops:slo_error_budget:ratio"}
    assert budgets == {"no_refusals": "vector(0.01)", "helpful": "vector(0.05)", "stable": "vector(0.1)"}
    ratios = [r for r in rules if r.get("record") == "llmops:slo_errors:ratio_rate1h"]
    assert len(ratios) == 3
    helpful = next(r for r in ratios if r.get("labels", {}).get("slo") == "helpful")
    assert 'criterion="overall", le="0.6"' in helpful["expr"] and "llm_judge_score_count" in helpful["expr"]
    stable = next(r for r in rules if r.get("record") == "llmops:slo_drift_over_max:bool")
    assert stable["expr"] == 'max by (model) (llm_drift_share{model="m"}) > bool 0.3'
    alerts = [r for r in rules if r.get("alert") == "LLMQualitySLOBurnRate"]
    assert [(a["labels"]["severity"], a["labels"]["burn_window"]) for a in alerts] == [
        ("page", "1h"),
        ("page", "6h"),
        ("ticket", "3d"),
    ]
    assert "(14.4 * llmops:slo_error_budget:ratio)" in alerts[0]["expr"] and "ratio_rate5m" in alerts[0]["expr"]
    assert "(6 * llmops:slo_error_budget:ratio)" in alerts[1]["expr"] and "ratio_rate30m" in alerts[1]["expr"]
    assert "ratio_rate3d" in alerts[2]["expr"] and "ratio_rate6h" in alerts[2]["expr"]
    long = next(g for g in groups if g["name"] == "llmops_quality_slo_long_windows")
    assert long["interval"] == "5m"


def test_no_slos_still_give_a_valid_file() -> None:
    groups = yaml.safe_load(render_rules(parse_config({"models": [_model()]})))["groups"]
    assert [g["name"] for g in groups] == ["llmops_quality_slo"]
    assert {r["alert"] for r in groups[0]["rules"]} == {"LLMQualitySLOBurnRate"}


@pytest.mark.parametrize(
    ("slo", "message"),
    [
        ({"name": "x", "judge": "rules", "criterion": "refusal", "good_above": 0.55, "objective": 0.9}, "bucket bound"),
        ({"name": "x", "judge": "rules", "good_above": 0.5, "objective": 0.9}, "needs judge, criterion and good_above"),
        ({"name": "x", "max_drift_share": 0.3, "judge": "rules", "objective": 0.9}, "not both"),
        ({"name": "x", "max_drift_share": 0.3, "objective": 1.0}, "objective"),
        ({"name": "Bad Name", "max_drift_share": 0.3, "objective": 0.9}, "name"),
    ],
)
def test_slos_are_validated(slo: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"models": [_model(slos=[slo])]})


def test_slo_names_are_unique_within_a_model() -> None:
    slo = {"name": "x", "max_drift_share": 0.3, "objective": 0.9}
    with pytest.raises(ConfigError, match="repeated: x"):
        parse_config({"models": [_model(slos=[slo, slo])]})
