"""Variant ratings: pairwise verdicts and user feedback tallied in Redis, refitted with Bradley–Terry and exported.

Every worker adds its pairwise verdicts to a per-model tally (``llmops:pairwise:<model>``, fields ``a|b|winner`` with
winner ``a``, ``b``, ``tie`` (a tie in both orders) or ``inconsistent`` (the two orders disagreed: counted as a tie,
kept apart); the gateways count user feedback in their own tally (:data:`llmops.contract.FEEDBACK_TALLY_PREFIX`).
Reviewers' side-by-side votes (the review page, :mod:`monitors.review`) have a tally of their own
(``llmops:human:<model>``, same fields, winner ``bothbad`` too: a tie in the fit, kept apart).

Each source is rated **separately** (``llm_judge_variant_rating{source="pairwise"|"feedback"|"human"}``): fitted
together, every thumb weighed as much as a judged pair, so a few hundred thumbs outvoted the judge. Human votes and
judge verdicts are the same kind of judgement (two answers read side by side), so they are also rated together
(``source="human_and_pairwise"``). Every rating comes with its 95% bootstrap interval and battle count
(:func:`monitors.bradley_terry.rate_with_intervals`). From the pairwise tally also comes
``llm_judge_pairwise_consistency_ratio``: the share of the verdicts whose two orders agreed. Every worker exports the
same figures from the shared tallies: after each batch of verdicts, and every ``RATINGS_REFRESH_SECONDS`` (feedback
and votes arrive without any sample).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis

from llmops.contract import FEEDBACK_TALLY_PREFIX, parse_feedback_tally_field
from monitors.bradley_terry import Standing
from monitors.metrics import MonitorMetrics

log = logging.getLogger("llmops.monitors")

PAIRWISE_TALLY = "llmops:pairwise:"
PAIRWISE_MODELS = "llmops:pairwise_models"  # set of the models with a pairwise tally (added where tallies are written)
HUMAN_TALLY = "llmops:human:"  # reviewers' side-by-side votes, fields a|b|winner (winner a, b, tie or bothbad)
HUMAN_MODELS = "llmops:human_models"
#: The rating sources: each rated apart, and the two side-by-side sources together.
SOURCES = ("pairwise", "feedback", "human", "human_and_pairwise")
RATINGS_REFRESH_SECONDS = 10.0
#: Score of variant a per tallied winner: an order-inconsistent verdict is a tie (MT-Bench's rule, and the judge's).
_SCORE_OF_A = {"a": 1.0, "b": 0.0, "tie": 0.5, "inconsistent": 0.5}
#: A reviewer's vote: "both bad" is a tie (Chatbot Arena's rule), kept apart in the tally.
_HUMAN_SCORE_OF_A = {"a": 1.0, "b": 0.0, "tie": 0.5, "bothbad": 0.5}
_SWAP = {"A": "B", "B": "A", "C": "C"}

#: ``(variant_a, variant_b, winner, orders_agreed)``: one pairwise verdict, as rated and counted.
Verdict = tuple[str, str, str, bool]


def orders_agreed(details: Mapping[str, Any] | None) -> bool:
    """Whether the pairwise judge's two orders gave the same verdict, from its result's ``details``: its
    ``consistent`` flag, else its two raw verdicts (``verdict_ab`` on (a, b), ``verdict_ba`` on (b, a)). A judge
    that reports neither is taken at its word (counted as agreeing)."""
    details = details or {}
    consistent = details.get("consistent")
    if isinstance(consistent, bool):
        return consistent
    ab, ba = details.get("verdict_ab"), details.get("verdict_ba")
    if ab in _SWAP and ba in _SWAP:
        return ab == _SWAP[ba]
    return True


def verdicts(pairwise: Iterable[tuple[str, str, str]], fields: Mapping[str, Any]) -> list[Verdict]:
    """The outcome's pairwise verdicts ``(a, b, winner)`` with whether their orders agreed, read from the fields the
    judging stored for each pair (``pairwise:<a>:<b>`` -> ``{"winner", "details", ...}``)."""
    out: list[Verdict] = []
    for a, b, winner in pairwise:
        stored = fields.get(f"pairwise:{a}:{b}")
        details = stored.get("details") if isinstance(stored, Mapping) else None
        out.append((a, b, winner, orders_agreed(details if isinstance(details, Mapping) else None)))
    return out


def tally_winner(winner: str, agreed: bool) -> str:
    """The winner as tallied: a tie whose orders disagreed is ``inconsistent`` (a win needs both orders)."""
    return "inconsistent" if winner == "tie" and not agreed else winner


def _battles(
    tally: Mapping[bytes, bytes], scores: Mapping[str, float]
) -> tuple[dict[tuple[str, str, float], int], int]:
    """A tally's fields ``a|b|winner`` as battles ``(a, b, score of a) -> count``, and how many were
    ``inconsistent``."""
    battles: dict[tuple[str, str, float], int] = {}
    disagreed = 0
    for field_name, count in tally.items():
        a, b, winner = field_name.decode().split("|")
        if winner not in scores or a == b:
            continue  # written by a later version: not ours to read
        battles[(a, b, scores[winner])] = battles.get((a, b, scores[winner]), 0) + int(count)
        disagreed += int(count) if winner == "inconsistent" else 0
    return battles, disagreed


class Ratings:
    """The ratings of the configured models' contestants (and of any model with pairwise verdicts or votes)."""

    def __init__(
        self, redis: aioredis.Redis, metrics: MonitorMetrics, models: Iterable[str], rounds: int = 200
    ) -> None:
        self.redis = redis
        self.metrics = metrics
        self.configured = frozenset(models)
        self.rounds = rounds
        #: model -> source -> contestant -> standing, as last exported
        self.latest: dict[str, dict[str, dict[str, Standing]]] = {}

    async def update(self, model: str, verdicts: Iterable[Verdict | tuple[str, str, str]]) -> None:
        """Add pairwise verdicts ``(variant_a, variant_b, winner[, orders_agreed])`` to the shared tally (without the
        flag, the orders count as agreeing), then refresh the model's ratings. Never raises: a failure is logged."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for verdict in verdicts:
                a, b, winner = verdict[:3]
                agreed = bool(verdict[3]) if len(verdict) > 3 else True
                pipe.hincrby(PAIRWISE_TALLY + model, f"{a}|{b}|{tally_winner(winner, agreed)}", 1)
            pipe.sadd(PAIRWISE_MODELS, model)
            await pipe.execute()
            await self.refresh(model)
        except Exception as error:
            log.warning("cannot update variant ratings: %s", error)

    async def refresh(self, model: str) -> None:
        """Export the Bradley-Terry ratings of ``model``'s contestants from the shared tallies, with their 95%
        bootstrap intervals and battles, one set per source (:data:`SOURCES`); and the share of the pairwise verdicts
        whose two orders agreed. The standings are also kept in :attr:`latest` (the review page's leaderboard)."""
        from monitors.bradley_terry import rate_with_intervals

        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(PAIRWISE_TALLY + model)
        pipe.hgetall(FEEDBACK_TALLY_PREFIX + model)
        pipe.hgetall(HUMAN_TALLY + model)
        pairwise, thumbs, human = await pipe.execute()
        judged, disagreed = _battles(pairwise, _SCORE_OF_A)
        voted, _ = _battles(human, _HUMAN_SCORE_OF_A)
        feedback: dict[str, tuple[int, int]] = {}
        for field_name, count in thumbs.items():
            variant, rating = parse_feedback_tally_field(field_name.decode())
            if not variant:
                continue  # feedback on a model without variants: nothing to rank
            up, down = feedback.get(variant, (0, 0))
            feedback[variant] = (up + int(count), down) if rating == "positive" else (up, down + int(count))
        both = dict(judged)
        for cell, count in voted.items():
            both[cell] = both.get(cell, 0) + count
        sources = {"pairwise": (judged, None), "feedback": ({}, feedback), "human": (voted, None)}
        if judged and voted:
            sources["human_and_pairwise"] = (both, None)
        standings: dict[str, dict[str, Standing]] = {}
        for source, (battles, thumbs_up_down) in sources.items():
            if battles or thumbs_up_down:
                standings[source] = rate_with_intervals(battles, feedback=thumbs_up_down, rounds=self.rounds)
        m = self.metrics
        for source, table in standings.items():
            for name, standing in table.items():
                m.variant_rating.labels(model, name, source).set(standing.rating)
                m.variant_rating_lower.labels(model, name, source).set(standing.lower)
                m.variant_rating_upper.labels(model, name, source).set(standing.upper)
                m.variant_battles.labels(model, name, source).set(standing.battles)
        if judged:
            m.pairwise_consistency.labels(model).set(1 - disagreed / sum(judged.values()))
        self.latest[model] = standings

    async def rated_models(self) -> list[str]:
        """Models that may have tallies: the configured ones (the gateway counts feedback on configured models
        only) and those with pairwise verdicts. No keyspace SCAN: that walks every key of Redis."""
        models = set(self.configured)
        for key in (PAIRWISE_MODELS, HUMAN_MODELS):
            models |= {m.decode() if isinstance(m, bytes) else m for m in await self.redis.smembers(key)}
        return sorted(models)

    async def watch(self) -> None:
        """Refresh every model's variant ratings now and then, until cancelled."""
        while True:
            try:
                for model in await self.rated_models():
                    await self.refresh(model)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.debug("variant ratings not refreshed: %s", error)
            await asyncio.sleep(RATINGS_REFRESH_SECONDS)
