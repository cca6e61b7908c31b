"""The parts of ``llmops eval`` that need no gateway: the catalogue and its data folders, the simulator's skill
(exact shares, the continuation's logprobs, generative answers), the answer key of the shipped samples, reports, and
MLflow tracking (the optional mlflow extra: skipped without it, except under CI, which installs it)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from llmops.eval.catalog import DATA_ENV, SAMPLES_DIR, EvalError, catalog, data_dir, harness_config, select
from llmops.eval.command import duration
from llmops.eval.report import html_report, markdown
from llmops.eval.results import ModelRun, RunResult, Score, TaskResult
from llmops.simulator.errors import SimulatorSettingsError
from llmops.simulator.settings import build_settings
from llmops.simulator.skill import OTHER, PICKED, UNKNOWN_ANSWER, KeyItem, Skill, load_answer_key
from llmops.simulator.text import split_tokens

KEY = SAMPLES_DIR / "answer-key.jsonl"


def test_catalogue_reads_local_files_in_each_dataset_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(catalog()) == {
        "arc_challenge", "gsm8k", "haerae", "hellaswag", "kmmlu", "kobest_boolq", "kobest_copa", "mmlu",
        "truthfulqa_mc1",
    }  # fmt: skip
    for spec in catalog().values():
        config = harness_config(spec, SAMPLES_DIR)
        files = config["dataset_kwargs"]["data_files"]
        assert config["dataset_path"] == "json" and list(files) == [spec.splits["test"]]
        rows = [json.loads(line) for line in Path(files[spec.splits["test"]]).read_text().splitlines()]
        assert len(rows) == 8
        top_level = re.sub(r"\{[^}]*\}|\([^)]*\)", "", re.sub(r"\"[^\"]*\"", "", spec.fields))  # notes left out
        for field in top_level.split(","):
            assert field.strip() in rows[0], (spec.name, field)
    # a full dataset elsewhere: the same config reads it, with the few-shot split when there is one
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_dir(None) == tmp_path.resolve()
    assert data_dir(str(SAMPLES_DIR)) == SAMPLES_DIR
    mmlu = catalog()["mmlu"]
    with pytest.raises(EvalError, match=r"no data file .*mmlu/test\.jsonl"):
        harness_config(mmlu, data_dir(None))
    (tmp_path / "mmlu").mkdir()
    (tmp_path / "mmlu" / "test.parquet").write_bytes(b"")
    (tmp_path / "mmlu" / "dev.parquet").write_bytes(b"")
    config = harness_config(mmlu, data_dir(None))
    assert config["dataset_path"] == "parquet" and config["fewshot_split"] == "dev"
    assert set(config["dataset_kwargs"]["data_files"]) == {"test", "dev"}


def test_task_selection() -> None:
    assert [s.name for s in select(["mmlu,kmmlu", "mmlu"], None)] == ["mmlu", "kmmlu"]
    assert [s.name for s in select(None, "canary")] == ["arc_challenge", "kmmlu", "gsm8k"]
    with pytest.raises(EvalError, match="unknown task nope"):
        select(["nope"], None)
    with pytest.raises(EvalError, match="no task"):
        select(None, None)
    assert duration("90s") == 90 and duration("30m") == 1800 and duration("6h") == 21600 and duration("1d") == 86400
    with pytest.raises(argparse.ArgumentTypeError):
        duration("soon")


def _pieces(text: str) -> list[str]:
    return split_tokens(text)


def test_skill_knows_exactly_its_share_of_each_task() -> None:
    items = tuple(
        KeyItem(task, f"Question {task} {i}?\nAnswer:", ("red", "green", "blue"), i % 3)
        for task in ("a", "b")
        for i in range(8)
    )
    for share, expected in ((0.0, 0), (0.25, 2), (0.75, 6), (1.0, 8)):
        skill = Skill(items, share, seed=7)
        for task in ("a", "b"):
            right = 0
            for item in (it for it in items if it.task == task):
                scores = {}
                for choice in item.choices:
                    logprobs = skill.choice_logprobs(_pieces(f"{item.query} {choice}"))
                    assert logprobs[-1] in (PICKED, OTHER)
                    assert all(value is None for value in logprobs[:-1])  # only the continuation is scored
                    scores[choice] = logprobs[-1]
                assert sorted(scores.values()) == [OTHER, OTHER, PICKED]  # one pick, never the same score twice
                right += scores[item.choices[item.answer]] == PICKED
            assert right == expected, (share, task)
    # another seed knows other items, as many
    first, second = Skill(items, 0.5, seed=1), Skill(items, 0.5, seed=2)

    def known(skill: Skill) -> set[str]:
        return {
            it.query
            for it in items
            if skill.choice_logprobs(_pieces(f"{it.query} {it.choices[it.answer]}"))[-1] == PICKED
        }

    assert len(known(first)) == len(known(second)) == 8 and known(first) != known(second)
    # a few-shot prompt ends with the item: still found; an unknown prompt is left alone
    item = items[0]
    assert Skill(items, 1.0, 0).choice_logprobs(_pieces(f"Q: x\nA: y\n\n{item.query} red"))[-1] == PICKED
    assert set(Skill(items, 1.0, 0).choice_logprobs(_pieces("Question zzz?\nAnswer: red"))) == {None}


def test_skill_answers_generative_items() -> None:
    items = (
        KeyItem("g", "Question: 2+2?\nAnswer:", target="#### 4"),
        KeyItem("g", "Question: 3+3?\nAnswer:", target="#### 6"),
    )
    skill = Skill(items, 0.5, seed=0)
    answers = {skill.answer(item.query) for item in items}
    assert len(answers) == 2 and UNKNOWN_ANSWER in answers
    assert skill.answer("something else") is None


def test_simulator_settings_of_skill(tmp_path: Path) -> None:
    items = load_answer_key(KEY)
    assert len(items) == 72
    settings = build_settings(skill=0.75, answer_key=items)
    assert settings.skill_model is not None
    with pytest.raises(SimulatorSettingsError, match=r"--answer-key.*--skill"):
        build_settings(answer_key=items)
    with pytest.raises(SimulatorSettingsError, match=r"--answer-key.*at least one item"):
        build_settings(skill=0.5)
    bad = tmp_path / "key.jsonl"
    bad.write_text('{"task": "t", "query": "q", "choices": ["a"], "answer": 3}\n')
    with pytest.raises(SimulatorSettingsError, match="line 1: `answer` must index `choices`"):
        load_answer_key(bad)


def test_shipped_answer_key_is_current() -> None:
    if importlib.util.find_spec("lm_eval") is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs the eval extra (pip install '.[eval]'), but lm_eval is not importable")
        pytest.skip("lm-evaluation-harness is not installed (pip install '.[eval]')")
    from llmops.eval.answer_key import samples_key

    assert KEY.read_text(encoding="utf-8") == samples_key(), "run: llmops eval answer-key -o " + str(KEY)


def _result() -> RunResult:
    task = TaskResult(
        "m", "kmmlu", "KMMLU", 2, "acc", [Score("acc", 0.5, 0.5)],
        [
            {"doc_id": 0, "correct": True, "prompt": "질문 | 하나", "choices": ["A", "B"], "picked": 1, "target": 1},
            {"doc_id": 1, "correct": False, "prompt": "질문 둘", "choices": ["A", "B"], "picked": 0, "target": 1},
        ],
    )  # fmt: skip
    model = ModelRun("m", [task], cost_usd=0.001, requests=4, input_tokens=40, output_tokens=4, duration_s=1.5)
    return RunResult("r1", "complete", 1.7e9, 1.7e9 + 2, "http://gw", {"tasks": ["kmmlu"]}, [model], {"m": {}})


def test_reports() -> None:
    result = _result()
    md = markdown(result)
    assert "| kmmlu | KMMLU | acc 0.5000 ± 0.5000 | acc 0.5000 ± 0.5000 | 2 |" in md
    assert "| 0 | 질문 \\| 하나 | B | B | right |" in md and "| 1 | 질문 둘 | A | B | wrong |" in md
    assert "cost $0.001000 · 4 requests" in md
    page = html_report(result)
    assert page.startswith("<!doctype html>") and "질문 | 하나" in page and 'class="wrong"' in page


def test_mlflow_tracks_each_model_run(tmp_path: Path) -> None:
    if importlib.util.find_spec("mlflow") is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs the mlflow extra (pip install '.[mlflow]'), but mlflow is not importable")
        pytest.skip("MLflow is not installed (pip install '.[mlflow]')")
    import mlflow

    from llmops.eval.tracking import EXPERIMENT, log

    report = tmp_path / "report.md"
    report.write_text(markdown(_result()), encoding="utf-8")
    store = tmp_path / "mlruns"
    ids = log(str(store), _result(), [report])
    assert len(ids) == 1
    mlflow.set_tracking_uri(store.resolve().as_uri())
    run = mlflow.get_run(ids[0])
    assert run.data.params["model"] == "m" and run.data.tags["llmops.run_id"] == "r1"
    assert run.data.metrics["kmmlu.acc"] == 0.5 and run.data.metrics["cost_usd"] == 0.001
    assert mlflow.get_experiment(run.info.experiment_id).name == EXPERIMENT
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(ids[0])]
    assert artifacts == ["report.md"]
