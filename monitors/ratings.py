"""Variant ratings: pairwise verdicts and user feedback tallied in Redis, refitted with Bradley–Terry and exported.

Every worker adds its pairwise verdicts to a per-model tally (``llmops:pairwise:<model>``, fields ``a|b|winner``);
the gateways count user feedback in their own tally (:data:`llmops.contract.FEEDBACK_TALLY_PREFIX`). Ratings are
refitted from both tallies, so every worker exports the same ``llm_judge_variant_rating``: after each batch of
verdicts, and every ``RATINGS_REFRESH_SECONDS`` (feedback arrives without any sample).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import redis.asyncio as aioredis

from llmops.contract import FEEDBACK_TALLY_PREFIX, parse_feedback_tally_field
from monitors.metrics import MonitorMetrics

log = logging.getLogger("llmops.monitors")

PAIRWISE_TALLY = "llmops:pairwise:"
PAIRWISE_MODELS = "llmops:pairwise_models"  # set of the models with a pairwise tally (added where tallies are written)
RATINGS_REFRESH_SECONDS = 10.0
_SCORE_OF_A = {"a": 1.0, "b": 0.0, "tie": 0.5}


class Ratings:
    """The variant ratings of the configured models (and of any model with pairwise verdicts)."""

    def __init__(self, redis: aioredis.Redis, metrics: MonitorMetrics, models: Iterable[str]) -> None:
        self.redis = redis
        self.metrics = metrics
        self.configured = frozenset(models)

    async def update(self, model: str, verdicts: list[tuple[str, str, str]]) -> None:
        """Add pairwise verdicts ``(variant_a, variant_b, winner)`` to the shared tally, then refresh the model's
        ratings. Never raises: a failure is logged."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for a, b, winner in verdicts:
                pipe.hincrby(PAIRWISE_TALLY + model, f"{a}|{b}|{winner}", 1)
            pipe.sadd(PAIRWISE_MODELS, model)
            await pipe.execute()
            await self.refresh(model)
        except Exception as error:
            log.warning("cannot update variant ratings: %s", error)

    async def refresh(self, model: str) -> None:
        """Export the Bradley-Terry ratings of ``model``'s variants from the shared tallies: pairwise verdicts
        (all workers') and user feedback (thumbs, counted by the gateways)."""
        from monitors.bradley_terry import bradley_terry

        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(PAIRWISE_TALLY + model)
        pipe.hgetall(FEEDBACK_TALLY_PREFIX + model)
        pairwise, thumbs = await pipe.execute()
        outcomes: list[tuple[str, str, float]] = []
        for field_name, count in pairwise.items():
            a, b, winner = field_name.decode().split("|")
            outcomes += [(a, b, _SCORE_OF_A[winner])] * int(count)
        feedback: dict[str, tuple[int, int]] = {}
        for field_name, count in thumbs.items():
            variant, rating = parse_feedback_tally_field(field_name.decode())
            if not variant:
                continue  # feedback on a model without variants: nothing to rank
            up, down = feedback.get(variant, (0, 0))
            feedback[variant] = (up + int(count), down) if rating == "positive" else (up, down + int(count))
        if not outcomes and len(feedback) < 1:
            return
        for variant, value in bradley_terry(outcomes, feedback=feedback).items():
            self.metrics.variant_rating.labels(model, variant).set(value)

    async def rated_models(self) -> list[str]:
        """Models that may have tallies: the configured ones (the gateway counts feedback on configured models
        only) and those with pairwise verdicts. No keyspace SCAN: that walks every key of Redis."""
        models = set(self.configured)
        models |= {m.decode() if isinstance(m, bytes) else m for m in await self.redis.smembers(PAIRWISE_MODELS)}
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
