"""``llmops judges calibrate`` over the shipped labelled set, through a real gateway, against a scripted judge whose
verdicts differ from the labels on known items: the report equals the hand-computed figures."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from scipy.stats import spearmanr

from monitors.review.calibrate import SHIPPED, load_set
from tests.monitors.review_support import FakeJudge
from tests.support import LLMOPS, REPO, gateway, gateway_config, metric, scrape

SET = load_set(SHIPPED)
# The scripted judge agrees with the labels except: en-spider-legs (a tie) it gives to a in both orders; en-summary
# (b) it gives to a in both orders; ko-honorific it always answers [[A]] (position bias: a tie across orders).
PREFERS_A = {"en-spider-legs", "en-summary"}
ALWAYS_A = {"ko-honorific"}
RATINGS = {"en-planets": 7, "ko-seasons": 5}  # else the people's grade


def between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def scripted(prompt: str) -> str:
    if "[The Start of Assistant A's Answer]" in prompt:
        first = between(prompt, "[The Start of Assistant A's Answer]", "[The End of Assistant A's Answer]")
        second = between(prompt, "[The Start of Assistant B's Answer]", "[The End of Assistant B's Answer]")
        [item] = [p for p in SET["pairs"] if {p["answer_a"].strip(), p["answer_b"].strip()} == {first, second}]
        if item["id"] in ALWAYS_A:
            return "[[A]]"
        label = "a" if item["id"] in PREFERS_A else item["label"]
        if label == "tie":
            return "Equally good.\n[[C]]"
        preferred = item[f"answer_{label}"].strip()
        return "Better.\n[[A]]" if first == preferred else "Better.\n[[B]]"
    answer = between(prompt, "[The Start of Assistant's Answer]", "[The End of Assistant's Answer]")
    [item] = [s for s in SET["singles"] if s["answer"].strip() == answer]
    return f"Rating: [[{RATINGS.get(item['id'], item['grade'])}]]"


def test_the_shipped_set_is_bilingual_and_clear_cut() -> None:
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    assert {p["lang"] for p in data["pairs"]} == {"en", "ko"} == {s["lang"] for s in data["singles"]}
    assert len(data["pairs"]) >= 12 and len(data["singles"]) >= 10
    assert {p["label"] for p in data["pairs"]} == {"a", "b", "tie"}
    assert len({p["id"] for p in data["pairs"]} | {s["id"] for s in data["singles"]}) == 26
    assert any(re.search("[가-힣]", p["question"]) for p in data["pairs"])


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, int, float]:
    tmp = tmp_path_factory.mktemp("calibrate")
    with FakeJudge(scripted) as judge:
        gw_config = gateway_config(
            tmp / "gateway.yaml",
            [{"name": "judge", "deployments": [{"name": "j", "base_url": judge.url, "model": "j"}]}],
        )
        with gateway(gw_config) as url:
            config = gateway_config(
                tmp / "config.yaml",
                [{"name": "judge", "deployments": [{"name": "j", "base_url": judge.url, "model": "j"}]}],
                monitors={"gateway_url": f"{url}/v1", "judge_model": "judge"},
            )
            run = [*LLMOPS, "judges", "calibrate", "--config", str(config)]
            as_json = subprocess.run([*run, "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
            assert as_json.returncode == 0, as_json.stderr
            text = subprocess.run([*run, "--min-agreement", "0.95"], cwd=REPO, capture_output=True, text=True)
            judged = metric(scrape(url), "llm_gateway_traffic_requests_total", model="judge", kind="judge")
    return json.loads(as_json.stdout), text.stdout, text.returncode, judged


def test_calibration_reports_hand_computed_agreement(calibrated: tuple[dict, str, int, float]) -> None:
    report, text, status, judged = calibrated
    # both runs' calls (each pair in two orders, each answer once) went through the gateway as judge traffic
    assert judged == 2 * (2 * len(SET["pairs"]) + len(SET["singles"]))
    pairs = report["pairwise"]["all"]
    # 14 pairs, 3 judged otherwise than labelled (spider: a not tie; summary: a not b; honorific: tie not b)
    assert pairs["pairs"] == 14 and pairs["agreement_with_ties"] == pytest.approx(11 / 14)
    # without ties: the 11 pairs where neither the label nor the judge says tie; the summary is the one miss
    assert pairs["pairs_without_ties"] == 11 and pairs["agreement_without_ties"] == pytest.approx(10 / 11)
    # judge a 9, b 3, tie 2; labels a 7, b 5, tie 2: p_o = 154/196, p_e = 82/196
    assert pairs["kappa"] == pytest.approx((154 / 196 - 82 / 196) / (1 - 82 / 196))
    assert pairs["position_bias"] == pytest.approx(1 / 14)
    ko = report["pairwise"]["ko"]
    assert ko["pairs"] == 7 and ko["agreement_with_ties"] == pytest.approx(6 / 7) and ko["position_bias"] == 1 / 7
    assert sorted(row["id"] for row in report["disagreements"]) == ["en-spider-legs", "en-summary", "ko-honorific"]
    grades = [s["grade"] for s in SET["singles"]]
    ratings = [RATINGS.get(s["id"], s["grade"]) for s in SET["singles"]]
    single = report["single"]["all"]
    assert single["answers"] == 12 and single["spearman"] == pytest.approx(spearmanr(ratings, grades).statistic)
    assert single["mean_abs_difference"] == pytest.approx((3 + 2) / 12)
    assert set(report["prompts"]) == {"pairwise_v1", "single_v1", "single_ref_v1"}
    assert report["errors"] == []
    # the text report, and --min-agreement as a check (90.9% < 95%: exit 1)
    assert status == 1
    assert "78.6%" in text and "90.9% of 11" in text and "disagrees en-summary: label b, judge a" in text


def test_a_bad_set_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "set.yaml"
    bad.write_text("pairs: [{id: x, question: q, answer_a: a, answer_b: b, label: maybe}]\n")
    config = gateway_config(
        tmp_path / "c.yaml",
        [{"name": "judge", "deployments": [{"name": "j", "base_url": "http://127.0.0.1:9/v1", "model": "j"}]}],
        monitors={"judge_model": "judge"},
    )
    done = subprocess.run(
        [*LLMOPS, "judges", "calibrate", "--config", str(config), "--set", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "needs label a, b or tie" in done.stderr
