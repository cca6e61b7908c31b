"""Drift features: scripts (Korean, English, others), refusals, usage and timing fields, file rows."""

from __future__ import annotations

import numpy as np
import pytest

from llmops.config import ConfigError, parse_config
from llmops.sample import Sample
from llmops.testing.drift_traffic import EN_REFUSAL, KO_REFUSAL, Traffic, generate
from monitors.checks import check_config
from monitors.drift import FEATURES, JUDGE_FEATURE_NAMES, LABEL_FEATURES, check_stattest
from monitors.drift.features import (
    check_row,
    dominant_script,
    extract,
    finish_category,
    is_refusal,
    script_counts,
    to_columns,
)
from monitors.judges.rules import find_refusal


def chat(question: str, answer: str, **fields) -> Sample:
    values = {
        "id": "r1",
        "ts": 1000.0,
        "model": "m",
        "provider": "openai_compatible",
        "deployment": "d",
        "endpoint": "chat",
        "key": "anonymous",
        "request": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]},
        "response": {"text": answer, "finish_reason": "stop"},
        "usage": {"input": 12, "output": 30, "cached": 0},
        "latency": {"total": 1.5, "ttft": 0.2, "per_output_token": 0.04},
        "cost_usd": 0.0001,
        "status": 200,
    }
    values.update(fields)
    return Sample(**values)


def test_english_text_is_all_latin() -> None:
    hangul, latin, other, non_letters = script_counts("Hello, world! 42")
    assert (hangul, latin, other, non_letters) == (0, 10, 0, 4)  # ",", "!", "4", "2"; spaces not counted


def test_korean_text_counts_syllables_and_jamo_as_hangul() -> None:
    hangul, latin, other, non_letters = script_counts("안녕하세요 ㅋㅋㅋ ᄀᄂ GPU입니다.")
    assert hangul == 5 + 3 + 2 + 3 and latin == 3 and other == 0 and non_letters == 1


def test_other_scripts_and_symbols() -> None:
    hangul, latin, other, non_letters = script_counts("日本語 Привет 😀 𠀀 café")
    assert hangul == 0
    assert latin == 4  # c, a, f, é
    assert other == 3 + 6 + 1  # kanji, Cyrillic, a CJK extension B ideograph
    assert non_letters == 1  # the emoji


def test_row_of_a_korean_chat_sample() -> None:
    row = extract(chat("서울 날씨 어때요?", "오늘 서울은 맑아요."), {"llm_single:overall": 0.75, "unknown:x": 1.0})
    assert row["prompt_chars"] == len("Be brief.\n서울 날씨 어때요?")
    assert row["prompt_script"] == "hangul"  # 7 Hangul and 7 Latin letters: a tie goes to Hangul
    assert row["response_script"] == "hangul"
    assert row["response_non_letter_share"] == pytest.approx(1 / 9)
    assert row["prompt_tokens"] == 12 and row["response_tokens"] == 30
    assert row["latency_seconds"] == 1.5 and row["ttft_seconds"] == 0.2 and row["cost_usd"] == 0.0001
    assert row["finish_reason"] == "stop" and row["refusal"] == 0.0
    assert row["llm_single:overall"] == 0.75 and "unknown:x" not in row
    assert row["ts"] == 1000.0
    assert set(row) - {"ts"} <= set(FEATURES)


def test_missing_values_are_left_out() -> None:
    sample = chat("hi", "", usage={}, latency={"total": 0.5, "ttft": None}, response={"text": None})
    row = extract(sample)
    assert "prompt_tokens" not in row and "response_tokens" not in row and "ttft_seconds" not in row
    assert row["response_chars"] == 0.0 and "response_script" not in row  # no letters: no script
    assert row["finish_reason"] == "none" and row["refusal"] == 0.0


def test_embeddings_have_no_answer_features() -> None:
    sample = chat("", "", endpoint="embeddings", request={"input": ["문장 하나", "another"]})
    row = extract(sample)
    assert row["prompt_chars"] == len("문장 하나\nanother")
    assert not any(name.startswith("response_") for name in row) and "refusal" not in row


def test_dominant_script() -> None:
    assert dominant_script(*script_counts("GPU 서버가 느려요")[:3]) == "hangul"  # 3 Latin, 5 Hangul letters
    assert dominant_script(*script_counts("Please explain 서울")[:3]) == "latin"
    assert dominant_script(*script_counts("日本語でお願いします abc")[:3]) == "other"
    assert dominant_script(0, 2, 2) == "latin" and dominant_script(1, 1, 1) == "hangul"  # ties: Hangul, then Latin
    assert dominant_script(0, 0, 0) is None


def test_refusal_is_tested_once() -> None:
    """The rules judge's refusal check is the refusal flag (same phrases): only the flag, on every sample, is tested."""
    assert "refusal" in FEATURES and "rules:refusal" not in FEATURES
    row = extract(chat("q", EN_REFUSAL), {"rules:refusal": 0.0, "rules:empty_answer": 1.0})
    assert row["refusal"] == 1.0 and "rules:refusal" not in row and row["rules:empty_answer"] == 1.0
    assert "rules:refusal" not in JUDGE_FEATURE_NAMES


def test_finish_reasons_are_bounded() -> None:
    assert [finish_category(r) for r in ("stop", "length", "function_call", "weird", None)] == [
        "stop",
        "length",
        "tool_calls",
        "other",
        "none",
    ]


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        (EN_REFUSAL, True),
        (KO_REFUSAL, True),
        ("I can\u2019t assist with that.", True),
        ("죄송합니다만 답변드릴수 없습니다", True),
        ("As an AI, I think", True),
        ("Sure! I can help with that.", False),
        ("네, 도와드릴게요.", False),
        ("Here is the answer. " * 30 + "I can't help with the rest.", False),  # beyond the opening window
        ("Aias an ai", False),  # a word boundary is needed
    ],
)
def test_refusal_flag_agrees_with_the_rules_judge(answer: str, refused: bool) -> None:
    assert is_refusal(answer) is refused
    assert (find_refusal(answer) is not None) is refused
    assert extract(chat("q", answer))["refusal"] == (1.0 if refused else 0.0)


def test_refusal_flag_agrees_on_synthetic_traffic() -> None:
    samples = generate(Traffic(korean=0.5, refusal_rate=0.2), 300, seed=3)
    assert [is_refusal(s.answer) for s, _ in samples] == [find_refusal(s.answer) is not None for s, _ in samples]


def test_columns_keep_missing_values_missing() -> None:
    rows = [extract(chat("a", "b")), {"ts": 1.0, "prompt_chars": 3.0}]
    columns = to_columns(rows)
    assert set(columns) == set(FEATURES)
    assert columns["prompt_chars"].tolist() == [len("Be brief.\na"), 3.0]
    assert np.isnan(columns["ttft_seconds"][1]) and columns["finish_reason"].tolist() == ["stop", None]
    assert all(columns[name].dtype == object for name in LABEL_FEATURES)


def test_rows_of_an_earlier_version_get_their_script_from_the_shares() -> None:
    """A reference stored before the script feature existed holds the three shares: its script is derived."""
    old = {"prompt_hangul_share": 0.2, "prompt_latin_share": 0.8, "prompt_other_share": 0.0, "prompt_chars": 9.0}
    columns = to_columns([old, {"prompt_script": "other", "prompt_chars": 3.0}, {"prompt_chars": 0.0}])
    assert columns["prompt_script"].tolist() == ["latin", "other", None]


def test_file_rows_are_validated() -> None:
    assert check_row({"ts": "5", "prompt_chars": "12", "finish_reason": "eos", "refusal": ""}) == {
        "ts": 5.0,
        "prompt_chars": 12.0,
        "finish_reason": "other",
    }
    with pytest.raises(ValueError, match="unknown feature column 'prompt_len'"):
        check_row({"prompt_len": 3})
    with pytest.raises(ValueError, match="not one of hangul, latin, other"):
        check_row({"prompt_script": "klingon"})
    # a file written for an earlier version: script shares become the dominant script, rules:refusal is dropped
    old = {"prompt_hangul_share": "0.7", "prompt_latin_share": "0.3", "prompt_other_share": "0", "rules:refusal": "1"}
    assert check_row(old) == {"prompt_script": "hangul"}
    with pytest.raises(ValueError, match="not a number"):
        check_row({"cost_usd": "cheap"})


def test_stattest_overrides_are_checked() -> None:
    assert check_stattest("prompt_chars", "wasserstein") is None
    assert check_stattest("finish_reason", "jensenshannon") is None
    assert "does not apply" in (check_stattest("finish_reason", "ks") or "")
    assert "unknown stat test" in (check_stattest("prompt_chars", "magic") or "")
    assert "unknown feature" in (check_stattest("nope", "ks") or "")
    assert "replaced by prompt_script" in (check_stattest("prompt_hangul_share", "ks") or "")
    assert check_stattest("prompt_script", "z") is None and check_stattest("llm_single:overall", "ks") is None


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        ({"stattests": {"finish_reason": "ks"}}, "monitors.drift: stattests: stat test 'ks' does not apply"),
        ({"stattests": {"prompt_chars": "magic"}}, "monitors.drift: stattests: unknown stat test 'magic'"),
        ({"thresholds": {"nope": 0.2}}, "monitors.drift: thresholds: unknown feature(s) nope"),
        (
            {"stattests": {"prompt_hangul_share": "wasserstein"}},
            "stattests: feature 'prompt_hangul_share' is no longer tested: replaced by prompt_script",
        ),
        (
            {"thresholds": {"rules:refusal": 0.2}},
            "thresholds: feature 'rules:refusal' is no longer tested: a duplicate",
        ),
    ],
)
def test_the_monitors_start_checks_stattests_and_thresholds(drift: dict, expected: str) -> None:
    """Stat tests and thresholds name the monitors' features: the shared schema takes them as they are (the gateway
    has no use for them), the monitors' start refuses a bad one with a message naming the field."""
    data = {
        "models": [{"name": "m", "deployments": [{"name": "d", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]}],
        "monitors": {"drift": drift},
    }
    config = parse_config(data, "test.yaml")
    with pytest.raises(ConfigError) as refused:
        check_config(config, "test.yaml")
    assert str(refused.value).startswith("invalid configuration in test.yaml:\n")
    assert expected in str(refused.value)
    check_config(parse_config({**data, "monitors": {"drift": {"stattests": {"prompt_chars": "wasserstein"}}}}))
