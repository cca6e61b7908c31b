"""The review page's HTML: Jinja2 templates (``templates/``, autoescaped) and what they are given.

Every text of a prompt or an answer reaches a template only through :func:`monitors.review.markup.render` (escaped,
then a safe Markdown subset); everything else a template prints is escaped by Jinja2's autoescape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from monitors.bradley_terry import Standing
from monitors.review.agreement import PairAgreement
from monitors.review.items import ReviewItem
from monitors.review.markup import render
from monitors.review.scoreboard import JudgeCheck, ModelCheck

HERE = Path(__file__).resolve().parent
STATIC = {"review.js": "application/javascript", "review.css": "text/css"}
_ROLES = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool", "prompt": "Prompt"}
_CHOICES = {
    "left": "Left is better · 왼쪽이 더 좋음",
    "right": "Right is better · 오른쪽이 더 좋음",
    "tie": "Tie · 비슷함",
    "bothbad": "Both are bad · 둘 다 나쁨",
}
SOURCE_ORDER = ("human", "pairwise", "human_and_pairwise", "feedback")

templates = Environment(
    loader=FileSystemLoader(str(HERE / "templates")),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def page(name: str, **values: Any) -> str:
    return templates.get_template(name).render(**values)


def messages(item: ReviewItem) -> list[dict[str, Any]]:
    """The conversation as the template shows it: a known role (else "Other") and its text rendered."""
    out = []
    for message in item.conversation:
        role = message.get("role", "")
        css = role if role in _ROLES else "other"
        out.append({"role": _ROLES.get(role, "Other"), "css": css, "html": render(message.get("content", ""))})
    return out


def item_page(item: ReviewItem, swapped: bool, **common: Any) -> str:
    """The page of one item to vote on: two answers in the reviewer's left/right order, or one answer to grade."""
    values = {
        **common,
        "messages": messages(item),
        "reference": render(item.reference) if item.reference else None,
        "item": item.id,
        "queue": item.queue,
    }
    if item.kind == "pair":
        left, right = (item.answers[1], item.answers[0]) if swapped else (item.answers[0], item.answers[1])
        return page("pair.html", left=render(left.text), right=render(right.text), **values)
    return page("single.html", answer=render(item.answers[0].text), **values)


def reveal_page(item: ReviewItem, swapped: bool, vote: str, **common: Any) -> str:
    """After the vote: who wrote which answer, and the reviewer's own vote."""
    if item.kind == "pair":
        ordered = [item.answers[1], item.answers[0]] if swapped else list(item.answers)
        labels = [("left", "Left · 왼쪽"), ("right", "Right · 오른쪽")]
        shown = _CHOICES.get(_side(vote, swapped), vote)
    else:
        ordered, labels, shown = list(item.answers), [("answer", "Answer · 답변")], f"{vote} / 10"
    sides = [
        {
            "position": position,
            "label": label,
            "contestant": answer.contestant,
            "model": answer.model,
            "html": render(answer.text),
        }
        for (position, label), answer in zip(labels, ordered, strict=True)
    ]
    return page("reveal.html", sides=sides, vote=shown, queue=item.queue, **common)


def _side(outcome: str, swapped: bool) -> str:
    """A stored pair outcome (a, b, tie, bothbad) as the side the reviewer clicked."""
    if outcome in ("a", "b"):
        return "left" if (outcome == "a") != swapped else "right"
    return outcome


def outcome_of(choice: str, swapped: bool) -> str | None:
    """The clicked side as the stored outcome: a, b, tie or bothbad (None for anything else)."""
    if choice in ("left", "right"):
        return "a" if (choice == "left") != swapped else "b"
    return choice if choice in ("tie", "bothbad") else None


def leaderboard(standings: dict[str, dict[str, dict[str, Standing]]], checks: dict[str, ModelCheck]) -> list[Any]:
    """Per model: each source's contestants by rating, and each judge's agreement with the reviewers."""
    boards = []
    for model in sorted(set(standings) | set(checks)):
        by_source = standings.get(model, {})
        sources = [
            {
                "name": source,
                "rows": [
                    {"name": name, **_standing(s)}
                    for name, s in sorted(by_source[source].items(), key=lambda kv: -kv[1].rating)
                ],
            }
            for source in SOURCE_ORDER
            if by_source.get(source)
        ]
        check = checks.get(model)
        all_time = check.all_time if check and check.all_time else ModelCheck()
        judges = []
        for name in sorted(set(check.judges if check else {}) | set(all_time.judges)):
            entry = check.judges.get(name, JudgeCheck()) if check else JudgeCheck()
            ever = all_time.judges.get(name, JudgeCheck())
            judges.append(
                {
                    "name": name,
                    **_figures(entry),
                    "all_items": ever.pair_items + ever.single_items,
                    "all_agreement": _figures(ever)["agreement"],
                    "all_spearman": _num(ever.spearman),
                }
            )
        boards.append(
            {
                "name": model,
                "sources": sources,
                "judges": judges,
                "reviewers": _both(check.reviewers if check else None),
                "all_reviewers": _both(all_time.reviewers),
            }
        )
    return boards


def _figures(entry: JudgeCheck) -> dict[str, Any]:
    pair = entry.pair
    return {
        "items": entry.pair_items + entry.single_items,
        "agreement": _both(pair) or "–",
        "kappa": _num(pair.kappa) if pair else "–",
        "bias": _pct(entry.position_bias),
        "spearman": _num(entry.spearman),
    }


def _both(pair: PairAgreement | None) -> str | None:
    """Agreement with ties / without ties."""
    return f"{_pct(pair.with_ties)} / {_pct(pair.without_ties)}" if pair else None


def _standing(s: Standing) -> dict[str, float]:
    return {"rating": s.rating, "lower": s.lower, "upper": s.upper, "battles": s.battles}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
