"""The report of a run, in Markdown (``report.md``) and HTML (``report.html``): per model a table of tasks (scores
with their standard errors, items), what the run cost, then every item's answer (the model's pick or text, the
right one), and the model's entry in the gateway and its configuration."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmops.eval.results import ModelRun, RunResult, TaskResult

MARKDOWN_ITEMS = 200  #: items per task listed in Markdown (all are in HTML and results.json)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _scores(task: TaskResult) -> str:
    return ", ".join(f"{s.metric} {s.value:.4f} ± {s.stderr:.4f}" for s in task.scores)


def _primary(task: TaskResult) -> str:
    score = task.score()
    return f"{score.metric} {score.value:.4f} ± {score.stderr:.4f}" if score else "—"


def _item_row(item: dict[str, Any]) -> tuple[str, str, str, str]:
    """(prompt end, the model's answer, the right answer, verdict)."""
    prompt = " ".join(str(item.get("prompt", "")).split())[-120:]
    if "choices" in item:
        choices = item["choices"]
        picked, target = item.get("picked"), item.get("target")
        answer = choices[picked] if isinstance(picked, int) and picked < len(choices) else "?"
        right = choices[target] if isinstance(target, int) and target < len(choices) else "?"
    else:
        answer, right = str(item.get("raw") or item.get("answer", "")), str(item.get("target", ""))
    verdict = "right" if item.get("correct") else "wrong"
    return prompt, " ".join(answer.split())[:160], " ".join(right.split())[:160], verdict


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _run_lines(model: ModelRun) -> str:
    return (
        f"cost ${model.cost_usd:.6f} · {model.requests} requests · {model.input_tokens} input / "
        f"{model.output_tokens} output tokens · {model.duration_s:.1f} s"
    )


def markdown(result: RunResult) -> str:
    lines = [
        f"# Evaluation run {result.run_id}",
        "",
        f"Status **{result.status}** · {_when(result.started)} → {_when(result.finished)} · gateway {result.gateway}",
        "",
    ]
    for model in result.models:
        lines += [f"## {model.model}", "", _run_lines(model), "", "| task | family | primary | scores | items |"]
        lines.append("|---|---|---|---|---|")
        for task in model.tasks:
            lines.append(f"| {task.task} | {task.family} | {_primary(task)} | {_scores(task)} | {task.items} |")
        for task in model.tasks:
            lines += ["", f"### {model.model} · {task.task}: items", "", "| # | prompt (end) | answer | right | |"]
            lines.append("|---|---|---|---|---|")
            for item in task.answers[:MARKDOWN_ITEMS]:
                prompt, answer, right, verdict = (_cell(part) for part in _item_row(item))
                lines.append(f"| {item.get('doc_id')} | {prompt} | {answer} | {right} | {verdict} |")
            if len(task.answers) > MARKDOWN_ITEMS:
                lines.append(f"\n… {len(task.answers) - MARKDOWN_ITEMS} more in report.html and results.json")
    lines += ["", "## Gateway and options", "", "```json", json.dumps(_context(result), indent=1), "```", ""]
    return "\n".join(lines)


def _context(result: RunResult) -> dict[str, Any]:
    return {"gateway": result.gateway, "models": result.gateway_info, "options": result.options}


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}.right{color:#070}"
    ".wrong{color:#a00}pre{background:#f6f6f6;padding:1em;overflow:auto}"
)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["<table><tr>", *(f"<th>{html.escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _td(text: Any, cls: str = "") -> str:
    attribute = f' class="{cls}"' if cls else ""
    return f"<td{attribute}>{html.escape(str(text))}</td>"


def html_report(result: RunResult) -> str:
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Evaluation run {esc(result.run_id)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>Evaluation run {esc(result.run_id)}</h1>",
        f"<p>Status <b>{esc(result.status)}</b> · {_when(result.started)} → {_when(result.finished)} · gateway "
        f"{esc(result.gateway)}</p>",
    ]
    for model in result.models:
        parts.append(f"<h2>{esc(model.model)}</h2><p>{esc(_run_lines(model))}</p>")
        rows = [[_td(t.task), _td(t.family), _td(_primary(t)), _td(_scores(t)), _td(t.items)] for t in model.tasks]
        parts.append(_html_table(["task", "family", "primary", "scores", "items"], rows))
        for task in model.tasks:
            items = []
            for item in task.answers:
                prompt, answer, right, verdict = _item_row(item)
                items.append([_td(item.get("doc_id")), _td(prompt), _td(answer), _td(right), _td(verdict, verdict)])
            parts.append(
                f"<details><summary>{esc(task.task)}: {len(task.answers)} items</summary>"
                + _html_table(["#", "prompt (end)", "answer", "right", ""], items)
                + "</details>"
            )
    parts.append(f"<h2>Gateway and options</h2><pre>{esc(json.dumps(_context(result), indent=1))}</pre></body></html>")
    return "".join(parts)


def write(result: RunResult, folder: Path) -> list[Path]:
    """``report.md`` and ``report.html`` in ``folder``; returns their paths."""
    md, page = folder / "report.md", folder / "report.html"
    md.write_text(markdown(result), encoding="utf-8")
    page.write_text(html_report(result), encoding="utf-8")
    return [md, page]
