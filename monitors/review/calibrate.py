"""``llmops judges calibrate``: the configured LLM judges run over a small labelled set, their agreement reported.

The set (``monitors/review/data/calibration.yaml``, English and Korean, written for this project) holds clear-cut
pairs labelled ``a``, ``b`` or ``tie`` and answers graded 1-10 by people. Each pair goes to the pairwise judge (both
orders, as on live traffic) and each answer to the single-answer judge, with the prompts the worker uses
(reference-guided when the item has a reference), through the gateway as judge traffic
(``monitors.gateway_url``, ``monitors.judge_model``). Reported, overall and per language: agreement with and
without ties, Cohen's kappa and the position-bias rate for the pairs; Spearman's rho and the mean absolute difference
for the grades; and each item the judge got wrong. ``--min-agreement`` turns it into a check (exit status 1 below).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmops.config import Config, ConfigError
from llmops.sample import Sample
from monitors.judges.base import JudgeError
from monitors.review.agreement import PairAgreement, pair_agreement, spearman

SHIPPED = Path(__file__).resolve().parent / "data" / "calibration.yaml"
CONCURRENCY = 4


@dataclass(slots=True)
class Report:
    """What one calibration run found."""

    judge_model: str
    pairs: list[dict[str, Any]] = field(default_factory=list)  # id, lang, label, judged, consistent | error
    singles: list[dict[str, Any]] = field(default_factory=list)  # id, lang, grade, rating | error
    prompts: set[str] = field(default_factory=set)

    def pair_summary(self, lang: str | None = None) -> dict[str, Any]:
        rows = [p for p in self.pairs if "judged" in p and lang in (None, p["lang"])]
        table: dict[tuple[str, str], float] = {}
        for row in rows:
            table[(row["judged"], row["label"])] = table.get((row["judged"], row["label"]), 0) + 1
        found: PairAgreement = pair_agreement(table)
        biased = sum(1 for row in rows if not row["consistent"])
        return {
            "pairs": len(rows),
            "agreement_with_ties": found.with_ties,
            "agreement_without_ties": found.without_ties,
            "pairs_without_ties": found.comparisons_without_ties,
            "kappa": found.kappa,
            "position_bias": biased / len(rows) if rows else None,
        }

    def single_summary(self, lang: str | None = None) -> dict[str, Any]:
        rows = [s for s in self.singles if "rating" in s and lang in (None, s["lang"])]
        pairs = [(float(s["rating"]), float(s["grade"])) for s in rows]
        return {
            "answers": len(rows),
            "spearman": spearman(pairs),
            "mean_abs_difference": sum(abs(r - g) for r, g in pairs) / len(pairs) if pairs else None,
        }

    def to_dict(self) -> dict[str, Any]:
        languages = sorted({p["lang"] for p in self.pairs} | {s["lang"] for s in self.singles})
        return {
            "judge_model": self.judge_model,
            "prompts": sorted(self.prompts),
            "pairwise": {"all": self.pair_summary(), **{lang: self.pair_summary(lang) for lang in languages}},
            "single": {"all": self.single_summary(), **{lang: self.single_summary(lang) for lang in languages}},
            "disagreements": [p for p in self.pairs if p.get("judged") not in (None, p["label"])],
            "errors": [x for x in self.pairs + self.singles if "error" in x],
            "items": {"pairs": self.pairs, "singles": self.singles},
        }


def load_set(path: Path = SHIPPED) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read the labelled set {path}: {error}") from None
    for pair in data.get("pairs", []):
        if pair.get("label") not in ("a", "b", "tie"):
            raise ConfigError(f"{path}: pair {pair.get('id')!r} needs label a, b or tie")
    for single in data.get("singles", []):
        if not isinstance(single.get("grade"), int) or not 1 <= single["grade"] <= 10:
            raise ConfigError(f"{path}: answer {single.get('id')!r} needs a grade 1-10")
    return data


def _sample(item_id: str, question: str, answer: str, reference: str | None, variant: str | None = None) -> Sample:
    return Sample(
        id=item_id,
        ts=time.time(),
        model="calibration",
        provider="",
        deployment="",
        endpoint="chat",
        key="calibration",
        request={"model": "calibration", "messages": [{"role": "user", "content": question}]},
        response={"text": answer, "finish_reason": "stop"},
        usage={},
        latency={},
        cost_usd=0.0,
        status=200,
        variant=variant,
        metadata={"reference": reference} if reference else {},
    )


async def calibrate(llm: Any, judge_model: str, data: dict[str, Any], judges: set[str]) -> Report:
    """Run the judges in ``judges`` (``pairwise``, ``llm_single``) over the set through ``llm``."""
    from monitors.judges.llm_single import SingleAnswerJudge
    from monitors.judges.pairwise import PairwiseJudge

    report = Report(judge_model)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one_pair(item: dict[str, Any]) -> None:
        row = {"id": item["id"], "lang": item.get("lang", ""), "label": item["label"]}
        a = _sample(f"{item['id']}:a", item["question"], item["answer_a"], item.get("reference"), "a")
        b = _sample(f"{item['id']}:b", item["question"], item["answer_b"], item.get("reference"), "b")
        async with slots:
            try:
                verdict = await PairwiseJudge().compare(a, b, llm)
            except JudgeError as error:
                row["error"] = f"{error.reason}: {error}"
            else:
                row |= {"judged": verdict.winner, "consistent": bool(verdict.details.get("consistent"))}
                row |= {
                    "verdict_ab": verdict.details.get("verdict_ab"),
                    "verdict_ba": verdict.details.get("verdict_ba"),
                }
                report.prompts.add(str(verdict.details.get("prompt_version")))
        report.pairs.append(row)

    async def one_single(item: dict[str, Any]) -> None:
        row = {"id": item["id"], "lang": item.get("lang", ""), "grade": item["grade"]}
        sample = _sample(item["id"], item["question"], item["answer"], item.get("reference"))
        async with slots:
            try:
                [result] = await SingleAnswerJudge().evaluate(sample, llm)
            except JudgeError as error:
                row["error"] = f"{error.reason}: {error}"
            else:
                row["rating"] = result.details["rating"]
                report.prompts.add(str(result.details.get("prompt_version")))
        report.singles.append(row)

    runs = []
    if "pairwise" in judges:
        runs += [one_pair(item) for item in data.get("pairs", [])]
    if "llm_single" in judges:
        runs += [one_single(item) for item in data.get("singles", [])]
    await asyncio.gather(*runs)
    order = {item["id"]: i for i, item in enumerate(data.get("pairs", []) + data.get("singles", []))}
    report.pairs.sort(key=lambda row: order[row["id"]])
    report.singles.sort(key=lambda row: order[row["id"]])
    return report


def run(config: Config, set_path: Path | None, judges: set[str], as_json: bool, min_agreement: float | None) -> int:
    """``llmops judges calibrate``: returns the exit status."""
    from monitors.judge_llm import GatewayJudgeLLM

    settings = config.monitors
    if not settings.judge_model:
        raise ConfigError("llmops judges calibrate needs monitors.judge_model (a model name of the gateway)")
    data = load_set(set_path or SHIPPED)

    async def go() -> Report:
        llm = GatewayJudgeLLM(settings.gateway_url, settings.judge_model or "", settings.judge_api_key)
        try:
            return await calibrate(llm, settings.judge_model or "", data, judges)
        finally:
            await llm.close()

    report = asyncio.run(go()).to_dict()
    if as_json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print_report(report)
    agreement = report["pairwise"]["all"]["agreement_without_ties"]
    if min_agreement is not None and (agreement is None or agreement < min_agreement):
        return 1
    return 0


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]judge calibration[/bold]: model {report['judge_model']}, prompts {', '.join(report['prompts'])}"
    )
    pairs = Table("set", "pairs", "agreement (ties)", "agreement (no ties)", "Cohen's kappa", "position bias")
    for name, row in report["pairwise"].items():
        if row["pairs"]:
            pairs.add_row(
                name,
                str(row["pairs"]),
                _pct(row["agreement_with_ties"]),
                f"{_pct(row['agreement_without_ties'])} of {row['pairs_without_ties']}",
                _num(row["kappa"]),
                _pct(row["position_bias"]),
            )
    console.print(pairs)
    singles = Table("set", "answers", "Spearman rho", "mean |rating - grade|")
    for name, row in report["single"].items():
        if row["answers"]:
            singles.add_row(name, str(row["answers"]), _num(row["spearman"]), _num(row["mean_abs_difference"]))
    console.print(singles)
    for row in report["disagreements"]:
        console.print(f"[yellow]disagrees[/yellow] {row['id']}: label {row['label']}, judge {row['judged']}")
    for row in report["errors"]:
        console.print(f"[red]failed[/red] {row['id']}: {row['error']}")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
