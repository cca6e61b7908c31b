"""Spend that could not be charged to Redis (it was unreachable, or the charge failed), kept in memory until Redis
is back: then it is added to the keys' spend, in the budget period it was spent in.

Bounded: one entry per key and budget period (``max_entries`` in all); spend for an entry beyond the bound is lost,
counted and said once. Tokens are not kept: tokens-per-minute windows are over long before Redis returns.
"""

from __future__ import annotations

import logging

log = logging.getLogger("llmops.gateway.access")


class SpendLedger:
    """USD per Redis spend key (``llmops:spend:<key>:<period>``) not yet charged, with the key's TTL."""

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._spend: dict[str, tuple[float, int | None]] = {}
        self.lost_usd = 0.0

    def add(self, spend_key: str, cost: float, ttl: int | None) -> None:
        """Keep ``cost`` for ``spend_key`` (whose Redis key expires after ``ttl`` seconds, None: never)."""
        if not cost:
            return
        held = self._spend.get(spend_key)
        if held is None and len(self._spend) >= self.max_entries:
            if not self.lost_usd:
                log.warning("uncharged spend kept for %d key periods already: more is lost", self.max_entries)
            self.lost_usd += cost
            return
        self._spend[spend_key] = ((held[0] if held else 0.0) + cost, ttl)

    def pending(self, spend_key: str) -> float:
        """USD of ``spend_key`` not yet in Redis."""
        held = self._spend.get(spend_key)
        return held[0] if held else 0.0

    @property
    def total(self) -> float:
        return sum(cost for cost, _ in self._spend.values())

    def __len__(self) -> int:
        return len(self._spend)

    def take(self) -> dict[str, tuple[float, int | None]]:
        """Everything held, emptied; give back what could not be written with :meth:`give_back`."""
        taken, self._spend = self._spend, {}
        return taken

    def give_back(self, entries: dict[str, tuple[float, int | None]]) -> None:
        for spend_key, (cost, ttl) in entries.items():
            self.add(spend_key, cost, ttl)
