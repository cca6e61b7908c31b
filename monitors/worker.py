"""``llmops monitors``: a worker in the Redis consumer group that judges sampled traffic and exports the scores.

The consumer loop: up to ``concurrency`` entries are processed at once, as a pool: a new entry is read as soon as one
is done, so a slow sample never holds up the samples queued behind it. Each entry: count the attempt, parse the
sample, judge it (:mod:`monitors.judging`), then commit atomically (mark processed + store results + acknowledge,
:mod:`monitors.store`) and only then export to Prometheus, feed drift detection and the variant ratings
(:mod:`monitors.ratings`). Entries a dead worker left pending are claimed after ``claim_idle_seconds`` (a heartbeat
keeps the entries a live worker is still judging from being claimed); an entry that keeps failing goes to the dead
letters after ``max_deliveries`` attempts. Several workers share the load through the consumer group. A lost consumer
group (stream deleted, Redis restarted empty) is created again.

A judge model outage loses no judgement: when the judge model is unavailable for some judges, the entry is left
pending with the other judges' outcomes kept (:meth:`Judging.defer`), claimed again once idle for
``claim_idle_seconds``, and only the missing judges run; the last of ``max_deliveries`` attempts commits what it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

from llmops.config import Config
from llmops.sample import Sample
from monitors.judges.base import Embedder, Judge, JudgeLLM
from monitors.judging import MAX_HOLD_SECONDS, Judging, Outcome
from monitors.metrics import MonitorMetrics
from monitors.ratings import Ratings, verdicts
from monitors.store import Entry, SampleStore, is_missing_group

log = logging.getLogger("llmops.monitors")

_UNKNOWN_MODEL = "unknown"
READ_BLOCK_MS = 500  # how long one read waits for new entries (then claims are due, or a stop is seen)
MAX_BACKOFF_SECONDS = 30.0  # the longest wait between two tries while Redis is unreachable


class Worker:
    """One monitors worker process."""

    def __init__(
        self,
        config: Config,
        store: SampleStore,
        *,
        metrics: MonitorMetrics | None = None,
        judges: dict[str, Judge] | None = None,
        pairwise: Any = None,
        llm: JudgeLLM | None = None,
        embedder: Embedder | None = None,
        drift: Any = None,
    ) -> None:
        self.config = config
        self.settings = config.monitors
        self.store = store
        self.metrics = metrics or MonitorMetrics()
        self.judging = Judging(
            self.settings,
            store,
            self.metrics,
            judges=judges,
            pairwise=pairwise,
            llm=llm,
            embedder=embedder,
            sampling_secret=config.sampling_secret,
        )
        self.ratings = Ratings(
            store.redis, self.metrics, (model.name for model in config.models), self.settings.review.bootstrap_rounds
        )
        self.drift = drift  # monitors.drift.monitor.DriftMonitor, or None
        self._review(config)
        self._stop = asyncio.Event()
        self._in_hand: dict[str, float] = {}  # entry id -> when its processing started (monotonic)
        self._failures = 0  # consecutive failed tries to reach Redis (the backoff grows with them)
        self._claim_from = "0-0"  # where the next XAUTOCLAIM scan of the pending list starts
        for model in config.models:  # at 0 from the start, so that rate() sees the first deferral
            self.metrics.deferred.labels(model.name)

    def _review(self, config: Config) -> None:
        """Human review (queues fed after each commit, judge-human agreement) and shadow comparisons, when
        configured (docs/review.md)."""
        review = self.settings.review
        self.review_store: Any = None
        self.feed: Any = None
        self.scoreboard: Any = None
        self.shadow: Any = None
        if review.enabled or review.queues:
            from monitors.review.feed import ReviewFeed
            from monitors.review.scoreboard import Scoreboard
            from monitors.review.store import ReviewStore

            self.review_store = ReviewStore(self.store.redis)
            self.feed = ReviewFeed(
                self.settings, self.review_store, self.store, self.metrics, self.judging.sampling_key
            )
            self.scoreboard = Scoreboard(self.store.redis, self.metrics, review)
        if self.settings.shadow:
            from monitors.shadow import Shadow

            self.shadow = Shadow(config, self.store.redis, self.metrics, self.judging, self.ratings, self.feed)

    def stop(self) -> None:
        """Take no new entry; :meth:`run` returns once the entries in hand are done."""
        self._stop.set()

    # ---- main loop ----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Consume until :meth:`stop`, judging up to ``concurrency`` entries at once: a new entry is read (or claimed)
        as soon as a slot frees, so one slow sample never holds up those behind it. On stop, no new entry is taken
        and the entries in hand are finished before returning; if cancelled instead, they are left pending (not
        committed), to be claimed later."""
        if not await self._connect():
            return
        backlog = asyncio.create_task(self._watch_backlog())
        ratings = asyncio.create_task(self.ratings.watch())
        watchers = []
        if self.scoreboard is not None:
            watchers = [asyncio.create_task(self.scoreboard.watch()), asyncio.create_task(self.feed.watch_feedback())]
        heartbeat = asyncio.create_task(self._keep_in_hand())
        stopping = asyncio.create_task(self._stop.wait())
        claim_every = max(min(self.settings.claim_idle_seconds / 2, 30.0), 0.2)
        next_claim = 0.0
        concurrency = self.settings.concurrency
        in_flight: dict[asyncio.Task[None], str] = {}  # task -> the entry id it processes
        log.info(
            "monitors worker %s consuming %s as group %s", self.store.consumer, self.store.stream, self.store.group
        )
        try:
            while not self._stop.is_set():
                try:
                    free = concurrency - len(in_flight)
                    if free <= 0:  # every slot busy: wait for one to free (or for stop)
                        await asyncio.wait({*in_flight, stopping}, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    entries: list[Entry] = []
                    if time.monotonic() >= next_claim:
                        next_claim = time.monotonic() + claim_every
                        entries = await self._claim(free, set(in_flight.values()))
                        if self._claim_from != "0-0":  # the pending list is not scanned to its end: go on at once
                            next_claim = 0.0
                    if not entries:
                        entries = await self.store.read(free, block_ms=READ_BLOCK_MS)
                    if self._failures:  # Redis answered again
                        log.warning("Redis at %s answers again: consuming", self.store.address)
                        self._failures = 0
                    for entry in entries:
                        task = asyncio.create_task(self.process(entry))
                        in_flight[task] = entry.entry_id
                        task.add_done_callback(lambda done: in_flight.pop(done, None))
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # Redis hiccup: entries stay pending and are claimed later
                    await self._recover(error)
            if in_flight:
                log.info("stopping: finishing %d entries in hand", len(in_flight))
                await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            # entries still in hand here (only when cancelled) are not committed: they stay pending, claimed later
            tasks = [*in_flight, backlog, ratings, heartbeat, stopping, *watchers]
            for pending in tasks:
                pending.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.shadow is not None:
                await self.shadow.close()

    async def _connect(self) -> bool:
        """Create the consumer group (and load drift's scripts), waiting with backoff while Redis is unreachable:
        the worker stays up (its /health and /metrics answer) and says so in one line per try. False when stopped
        before Redis answered."""
        while not self._stop.is_set():
            try:
                await self.store.ensure_group()
                if self.drift is not None:
                    await self.drift.windows.load_scripts()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                await self._back_off(f"cannot reach Redis at {self.store.address}", error)
                continue
            if self._failures:
                log.warning("Redis at %s is reachable: consuming", self.store.address)
            self._failures = 0
            return True
        return False

    async def _back_off(self, what: str, error: Exception) -> None:
        """Say ``what`` failed in one line and wait: 1 s, doubling up to ``MAX_BACKOFF_SECONDS`` while it keeps
        failing (a stop ends the wait)."""
        delay = min(2.0**self._failures, MAX_BACKOFF_SECONDS)
        self._failures += 1
        log.warning("%s (%s: %s); trying again in %g s", what, type(error).__name__, error, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    async def _claim(self, count: int, in_hand: set[str]) -> list[Entry]:
        """Up to ``count`` entries left pending too long by any consumer (a dead worker), less those this worker is
        still processing (its heartbeat keeps them fresh, but one held past ``MAX_HOLD_SECONDS`` is claimable)."""
        claimed, self._claim_from = await self.store.claim(
            int(self.settings.claim_idle_seconds * 1000), count, self._claim_from
        )
        entries = [entry for entry in claimed if entry.entry_id not in in_hand]
        if entries:
            self.metrics.claimed.labels(self.store.stream).inc(len(entries))
            log.info("claimed %d entries left pending (by a dead consumer, or deferred judging)", len(entries))
        return entries

    async def _recover(self, error: Exception) -> None:
        """After a failed read or claim: create the consumer group again at once when it is gone (stream deleted,
        evicted or flushed, Redis restarted empty: XADD recreates the stream, never the group); otherwise wait 1 s."""
        if is_missing_group(error):
            log.warning(
                "consumer group %s on %s is gone (%s); creating it again", self.store.group, self.store.stream, error
            )
            try:
                await self.store.ensure_group()
                return
            except Exception as again:
                error = again
        await self._back_off(f"monitors loop error (Redis at {self.store.address})", error)

    async def _keep_in_hand(self) -> None:
        """Heartbeat: every third of ``claim_idle_seconds``, reset the idle time of the entries in hand, so that only
        entries of a dead or stuck worker are claimed by others, never one whose judge calls are merely slow."""
        every = max(self.settings.claim_idle_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            since = time.monotonic() - MAX_HOLD_SECONDS
            try:
                await self.store.keep(sorted(i for i, started in self._in_hand.items() if started > since))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis away: the entries may be claimed, the commit stays idempotent
                log.debug("entries in hand not refreshed: %s", error)

    async def _watch_backlog(self) -> None:
        gauge = self.metrics.backlog.labels(self.store.stream)
        while True:
            try:
                gauge.set(await self.store.backlog())
            except asyncio.CancelledError:
                raise
            except Exception:  # no stream yet, Redis away: try again later
                pass
            await asyncio.sleep(1.0)

    # ---- one entry ----------------------------------------------------------------------------------------------
    async def process(self, entry: Entry) -> None:
        """Judge one entry and commit it; failures leave it pending for a later attempt."""
        self._in_hand[entry.entry_id] = time.monotonic()
        try:
            attempts = await self.store.attempt(entry.entry_id)
            if entry.raw is None:
                await self._give_up(entry, _UNKNOWN_MODEL, "trimmed from the stream before it was processed")
                return
            try:
                sample = Sample.from_json(entry.raw)
            except (ValueError, KeyError, TypeError) as error:
                await self._give_up(entry, _UNKNOWN_MODEL, f"malformed sample: {error}")
                return
            if attempts > self.settings.max_deliveries:
                await self._give_up(entry, sample.model, f"failed {attempts - 1} times")
                return
            outcome = await self.judging.judge(sample, await self.judging.judged_before(entry, attempts))
            if outcome.unavailable and attempts < self.settings.max_deliveries:
                await self.judging.defer(entry, sample, outcome, attempts)
                return
            outcome.fields["_meta"] = {
                "model": sample.model,
                "variant": sample.variant,
                "trace_id": sample.trace_id,
                "worker": self.store.consumer,
                "processed_at": time.time(),
                "question": sample.question[:2000],
                "answer": sample.answer[:2000],
            }
            if await self.store.commit(entry, outcome.fields, self.settings.results_ttl_seconds):
                self._export(sample, outcome)
                if self.drift is not None:
                    await self.drift.observe(sample, {f"{s.judge}:{s.criterion}": s.score for s in outcome.scores})
                if self.feed is not None:
                    await self.feed.observe(sample, outcome.fields)
                if self.shadow is not None:
                    self.shadow.submit(sample)
            else:
                self.metrics.duplicates.labels(self.store.stream).inc()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning(
                "sample %s (entry %s) failed: %s: %s; it stays pending and will be retried",
                entry.request_id,
                entry.entry_id,
                type(error).__name__,
                error,
            )
        finally:
            self._in_hand.pop(entry.entry_id, None)

    async def _give_up(self, entry: Entry, model: str, reason: str) -> None:
        """Move the entry to the dead letters (acknowledged), counted as an error."""
        log.warning(
            "giving up on entry %s (%s): %s; kept in the dead letters", entry.entry_id, entry.request_id, reason
        )
        await self.store.dead_letter(entry, reason)
        self.metrics.processed.labels(model, "error").inc()

    # ---- export (only after the commit) -------------------------------------------------------------------------
    def _export(self, sample: Sample, outcome: Outcome) -> None:
        """Export a committed outcome: scores, errors, runs and verdicts; the verdicts also update the ratings."""
        m = self.metrics
        # a traced request: its scores point at its trace (exemplars, OpenMetrics only); 128 characters at most
        exemplar = (
            {"trace_id": sample.trace_id, "request_id": sample.id[:78]}
            if sample.trace_id and len(sample.trace_id) == 32
            else None
        )
        for score in outcome.scores:
            m.judge_score.labels(sample.model, score.judge, score.criterion).observe(score.score, exemplar)
        for judge, reason in outcome.errors:
            m.judge_errors.labels(judge, reason).inc()
        for judge, result in outcome.runs:
            m.judge_runs.labels(judge, result).inc()
        for judge in outcome.conflicts:
            m.verdict_conflicts.labels(judge).inc()
        pairwise = verdicts(outcome.pairwise, outcome.fields)
        for variant_a, variant_b, winner, agreed in pairwise:
            m.pairwise.labels(sample.model, variant_a, variant_b, winner, "agree" if agreed else "disagree").inc()
        if pairwise:
            asyncio.get_running_loop().create_task(self.ratings.update(sample.model, pairwise))
        m.processed.labels(sample.model, "ok").inc()
        m.last_processed.set(time.time())


def consumer_name() -> str:
    """A consumer name unique to this process on this host."""
    return f"{socket.gethostname()}-{os.getpid()}"
