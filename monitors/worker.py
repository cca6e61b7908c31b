"""``llmops monitors``: a worker in the Redis consumer group that judges sampled traffic and exports the scores.

Up to ``concurrency`` entries are judged at once, as a pool: a new entry is read as soon as one is done, so a slow
sample never holds up the samples queued behind it. Each entry: count the attempt, parse the sample, run the judges
that apply (per config: which judges, on which models, at what rate), pair it with other variants' answers to the same
prompt for the pairwise judge, then commit atomically (mark processed + store results + acknowledge) and only then
export to Prometheus. Entries a dead worker left pending are claimed after ``claim_idle_seconds`` (a heartbeat keeps
the entries a live worker is still judging from being claimed); an entry that keeps failing goes to the dead letters
after ``max_deliveries`` attempts. Several workers share the load through the consumer group. A lost consumer group
(stream deleted, Redis restarted empty) is created again.

A judge model outage loses no judgement: when the judge model is unavailable for some judges (a transient
:class:`JudgeError`), the entry is left pending with the other judges' outcomes kept in Redis, claimed again once
idle for ``claim_idle_seconds``, and only the missing judges run; the last of ``max_deliveries`` attempts commits what
it has. The pairwise judge is the exception: its comparisons are made once (a later answer of another variant to the
same prompt compares against this one anyway).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from llmops.config import Config, JudgeSpec
from llmops.contract import FEEDBACK_TALLY_PREFIX, parse_feedback_tally_field, sampled
from llmops.sample import Sample
from monitors.judge_llm import judged_trace
from monitors.judges.base import Judge, JudgeError, JudgeLLM, JudgeResult, PairwiseResult
from monitors.metrics import MonitorMetrics
from monitors.store import Entry, SampleStore, is_missing_group

log = logging.getLogger("llmops.monitors")

_UNKNOWN_MODEL = "unknown"
PAIRWISE_TALLY = "llmops:pairwise:"
PAIRWISE_MODELS = "llmops:pairwise_models"  # set of the models with a pairwise tally (added where tallies are written)
RATINGS_REFRESH_SECONDS = 10.0
# Entries in hand longer than this are no longer kept from other workers (a hung sample must not hold its entry for
# good). Longer than the slowest legitimate sample: a RAG judge's sequential calls, each up to 3 x 120 s.
MAX_HOLD_SECONDS = 1800.0
READ_BLOCK_MS = 500  # how long one read waits for new entries (then claims are due, or a stop is seen)


@dataclass(slots=True)
class Outcome:
    """What judging one sample produced: fields to store, and what to export once committed.

    An outcome merges the outcomes of its judges. ``done`` keeps each judge's own outcome when it is final (a score,
    or a failure that would recur); ``unavailable`` names the judges whose judge model was unavailable (a transient
    :class:`JudgeError`), to be run again on a later attempt."""

    fields: dict[str, Any] = field(default_factory=dict)
    scores: list[JudgeResult] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (judge, reason)
    runs: list[tuple[str, str]] = field(default_factory=list)  # (judge, "ok" or "error"): one per judge run
    pairwise: list[tuple[str, str, str]] = field(default_factory=list)  # (variant_a, variant_b, winner)
    done: dict[str, Outcome] = field(default_factory=dict)  # judge name -> its final outcome
    unavailable: dict[str, str] = field(default_factory=dict)  # judge name -> why: run it again later

    def merge(self, part: Outcome) -> None:
        """Add one judge's outcome to this one."""
        self.fields.update(part.fields)
        self.scores += part.scores
        self.errors += part.errors
        self.runs += part.runs
        self.pairwise += part.pairwise

    def to_json(self) -> bytes:
        """This (one judge's) outcome, to keep between attempts."""
        return orjson.dumps(
            {
                "fields": self.fields,
                "scores": [[s.judge, s.criterion, s.score, s.explanation, s.details] for s in self.scores],
                "errors": self.errors,
                "runs": self.runs,
                "pairwise": self.pairwise,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Outcome:
        data = orjson.loads(raw)
        return cls(
            fields=data["fields"],
            scores=[JudgeResult(*score) for score in data["scores"]],
            errors=[tuple(e) for e in data["errors"]],  # type: ignore[misc]
            runs=[tuple(r) for r in data["runs"]],  # type: ignore[misc]
            pairwise=[tuple(p) for p in data["pairwise"]],  # type: ignore[misc]
        )


def prompt_hash(sample: Sample) -> str:
    """Identifies 'the same prompt' across variants: the request's messages (or prompt), hashed."""
    basis = sample.request.get("messages", sample.request.get("prompt"))
    return hashlib.blake2b(orjson.dumps(basis, option=orjson.OPT_SORT_KEYS), digest_size=12).hexdigest()


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
        drift: Any = None,
    ) -> None:
        self.config = config
        self.settings = config.monitors
        self.store = store
        self.metrics = metrics or MonitorMetrics()
        self.specs: list[JudgeSpec] = self.settings.judge_specs
        if judges is None:
            from monitors.judges.registry import build_judges

            judges = build_judges([s.name for s in self.specs if s.name != "pairwise"])
        self.judges = judges
        if pairwise is None and any(s.name == "pairwise" for s in self.specs):
            from monitors.judges.pairwise import PairwiseJudge

            pairwise = PairwiseJudge()
        self.pairwise = pairwise
        self.llm = llm
        self.drift = drift  # monitors.drift.monitor.DriftMonitor, or None
        self._stop = asyncio.Event()
        self._in_hand: dict[str, float] = {}  # entry id -> when its processing started (monotonic)
        self._claim_from = "0-0"  # where the next XAUTOCLAIM scan of the pending list starts
        for model in config.models:  # at 0 from the start, so that rate() sees the first deferral
            self.metrics.deferred.labels(model.name)

    def stop(self) -> None:
        self._stop.set()

    # ---- main loop ----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Consume until :meth:`stop`, judging up to ``concurrency`` entries at once: a new entry is read (or claimed)
        as soon as a slot frees, so one slow sample never holds up those behind it. On stop, no new entry is taken
        and the entries in hand are finished before returning; if cancelled instead, they are left pending (not
        committed), to be claimed later."""
        await self.store.ensure_group()
        if self.drift is not None:
            await self.drift.windows.load_scripts()
        backlog = asyncio.create_task(self._watch_backlog())
        ratings = asyncio.create_task(self._watch_ratings())
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
            tasks = [*in_flight, backlog, ratings, heartbeat, stopping]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

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
        log.warning("monitors loop error (%s: %s); retrying in 1 s", type(error).__name__, error)
        await asyncio.sleep(1.0)

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
            done = await self.store.judged_before(entry.entry_id) if attempts > 1 else {}
            token = judged_trace.set(sample.trace_id)
            try:
                outcome = await self.judge(sample, {name: Outcome.from_json(raw) for name, raw in done.items()})
            finally:
                judged_trace.reset(token)
            if outcome.unavailable and attempts < self.settings.max_deliveries:
                await self._defer(entry, sample, outcome, attempts)
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

    async def _defer(self, entry: Entry, sample: Sample, outcome: Outcome, attempts: int) -> None:
        """The judge model was unavailable for some judges: keep what the others found, count the failed runs, and
        leave the entry pending. It is claimed again after ``claim_idle_seconds`` (by any worker), and only the
        judges still missing run then; the last allowed attempt commits whatever it has."""
        settings = self.settings
        await self.store.keep_judged(
            entry.entry_id,
            {name: part.to_json() for name, part in outcome.done.items()},
            # long enough for every later attempt, each claimed within claim_idle_seconds + a claim period (≤ 30 s)
            int(settings.max_deliveries * (settings.claim_idle_seconds + 30) + MAX_HOLD_SECONDS),
        )
        for name in outcome.unavailable:
            self.metrics.judge_runs.labels(name, "error").inc()
            self.metrics.judge_errors.labels(name, "llm_error").inc()
        self.metrics.deferred.labels(sample.model).inc()
        log.warning(
            "sample %s (entry %s): judge model unavailable for %s (attempt %d of %d); judging again in about %.0f s",
            entry.request_id,
            entry.entry_id,
            ", ".join(sorted(outcome.unavailable)),
            attempts,
            self.settings.max_deliveries,
            self.settings.claim_idle_seconds,
        )

    async def _give_up(self, entry: Entry, model: str, reason: str) -> None:
        log.warning(
            "giving up on entry %s (%s): %s; kept in the dead letters", entry.entry_id, entry.request_id, reason
        )
        await self.store.dead_letter(entry, reason)
        self.metrics.processed.labels(model, "error").inc()

    def _applicable(self, sample: Sample) -> list[JudgeSpec]:
        return [
            spec
            for spec in self.specs
            if (not spec.models or sample.model in spec.models) and sampled(f"{sample.id}:{spec.name}", spec.rate)
        ]

    async def judge(self, sample: Sample, done: dict[str, Outcome] | None = None) -> Outcome:
        """Run every applicable judge on ``sample`` concurrently, except those with a final outcome in ``done``
        (from an earlier attempt), whose outcome is reused."""
        outcome = Outcome()
        if sample.status != 200 or sample.endpoint == "embeddings":
            return outcome  # failed requests and embeddings have no answer to judge
        done = done or {}
        specs = self._applicable(sample)
        runs = []
        for spec in specs:
            if spec.name in done:
                outcome.done[spec.name] = done[spec.name]
                continue
            if spec.name == "pairwise":
                continue
            judge = self.judges.get(spec.name)
            if judge is not None and judge.applies(sample):
                runs.append((spec.name, judge.evaluate(sample, self.llm)))
        results = await asyncio.gather(*(run for _, run in runs), return_exceptions=True)
        for (name, _), result in zip(runs, results, strict=True):
            if isinstance(result, JudgeError) and result.transient:
                outcome.unavailable[name] = str(result)
                continue
            part = Outcome()
            self._collect(part, name, result)
            outcome.done[name] = part
        if (
            self.pairwise is not None
            and sample.variant
            and "pairwise" not in done
            and any(s.name == "pairwise" for s in specs)
        ):
            # Never deferred: this sample is already the variant's latest answer, so a later answer of another
            # variant compares against it anyway; comparing again on a retry would count that pair twice.
            part = Outcome()
            await self._pairwise(sample, part)
            outcome.done["pairwise"] = part
        for name in sorted(outcome.done):
            outcome.merge(outcome.done[name])
        for name, message in outcome.unavailable.items():  # recorded as failures if this attempt is the last
            outcome.runs.append((name, "error"))
            outcome.errors.append((name, "llm_error"))
            outcome.fields[f"{name}:error"] = {"reason": "llm_error", "message": message}
        return outcome

    @staticmethod
    def _collect(outcome: Outcome, name: str, result: Any) -> None:
        outcome.runs.append((name, "error" if isinstance(result, BaseException) else "ok"))
        if isinstance(result, JudgeError):
            outcome.errors.append((name, result.reason))
            outcome.fields[f"{name}:error"] = {"reason": result.reason, "message": str(result)}
        elif isinstance(result, BaseException):
            log.warning("judge %s raised %s: %s", name, type(result).__name__, result)
            outcome.errors.append((name, "exception"))
            outcome.fields[f"{name}:error"] = {"reason": "exception", "message": f"{type(result).__name__}: {result}"}
        else:
            for score in result:
                outcome.scores.append(score)
                outcome.fields[f"{score.judge}:{score.criterion}"] = {
                    "score": score.score,
                    "explanation": score.explanation,
                    "details": score.details,
                }

    async def _pairwise(self, sample: Sample, outcome: Outcome) -> None:
        """Compare ``sample`` with the other variants' latest answers to the same prompt, into ``outcome``."""
        assert sample.variant is not None
        others = await self.store.pair_candidates(sample.model, prompt_hash(sample), sample.variant, sample.to_json())
        for variant, raw in sorted(others.items()):
            other = Sample.from_json(raw)
            a, b = (sample, other) if sample.variant < variant else (other, sample)
            try:
                verdict: PairwiseResult = await self.pairwise.compare(a, b, self.llm)
            except JudgeError as error:
                outcome.runs.append(("pairwise", "error"))
                outcome.errors.append(("pairwise", error.reason))
                outcome.fields[f"pairwise:{a.variant}:{b.variant}:error"] = {"reason": error.reason}
                continue
            outcome.runs.append(("pairwise", "ok"))
            outcome.pairwise.append((str(a.variant), str(b.variant), verdict.winner))
            outcome.fields[f"pairwise:{a.variant}:{b.variant}"] = {
                "winner": verdict.winner,
                "against": other.id,
                "explanation": verdict.explanation,
                "details": verdict.details,
            }

    # ---- export (only after the commit) -------------------------------------------------------------------------
    def _export(self, sample: Sample, outcome: Outcome) -> None:
        m = self.metrics
        for score in outcome.scores:
            m.judge_score.labels(sample.model, score.judge, score.criterion).observe(score.score)
        for judge, reason in outcome.errors:
            m.judge_errors.labels(judge, reason).inc()
        for judge, result in outcome.runs:
            m.judge_runs.labels(judge, result).inc()
        for variant_a, variant_b, winner in outcome.pairwise:
            m.pairwise.labels(sample.model, variant_a, variant_b, winner).inc()
        if outcome.pairwise:
            asyncio.get_running_loop().create_task(self._update_ratings(sample.model, outcome.pairwise))
        m.processed.labels(sample.model, "ok").inc()
        m.last_processed.set(time.time())

    async def _update_ratings(self, model: str, verdicts: list[tuple[str, str, str]]) -> None:
        """Add the verdicts to the shared tally in Redis, then refresh the model's ratings."""
        try:
            pipe = self.store.redis.pipeline(transaction=False)
            for a, b, winner in verdicts:
                pipe.hincrby(PAIRWISE_TALLY + model, f"{a}|{b}|{winner}", 1)
            pipe.sadd(PAIRWISE_MODELS, model)
            await pipe.execute()
            await self.refresh_ratings(model)
        except Exception as error:
            log.warning("cannot update variant ratings: %s", error)

    async def refresh_ratings(self, model: str) -> None:
        """Export the Bradley-Terry ratings of ``model``'s variants from the shared tallies: pairwise verdicts
        (all workers') and user feedback (thumbs, counted by the gateways)."""
        from monitors.judges.rating import bradley_terry

        pipe = self.store.redis.pipeline(transaction=False)
        pipe.hgetall(PAIRWISE_TALLY + model)
        pipe.hgetall(FEEDBACK_TALLY_PREFIX + model)
        pairwise, thumbs = await pipe.execute()
        outcomes: list[tuple[str, str, float]] = []
        for field_name, count in pairwise.items():
            a, b, winner = field_name.decode().split("|")
            outcomes += [(a, b, {"a": 1.0, "b": 0.0, "tie": 0.5}[winner])] * int(count)
        feedback: dict[str, tuple[int, int]] = {}
        for field_name, count in thumbs.items():
            variant, rating = parse_feedback_tally_field(field_name.decode())
            if not variant:
                continue  # feedback on a model without variants: nothing to rank
            up, down = feedback.get(variant, (0, 0))
            feedback[variant] = (up + int(count), down) if rating == "positive" else (up, down + int(count))
        if not outcomes and len(feedback) < 1:
            return
        for variant, rating in bradley_terry(outcomes, feedback=feedback).items():
            self.metrics.variant_rating.labels(model, variant).set(rating)

    async def rated_models(self) -> list[str]:
        """Models that may have tallies: the configured ones (the gateway counts feedback on configured models
        only) and those with pairwise verdicts. No keyspace SCAN: that walks every key of Redis."""
        models = {model.name for model in self.config.models}
        models |= {m.decode() if isinstance(m, bytes) else m for m in await self.store.redis.smembers(PAIRWISE_MODELS)}
        return sorted(models)

    async def _watch_ratings(self) -> None:
        """Refresh every model's variant ratings now and then (feedback arrives without any sample)."""
        while True:
            try:
                for model in await self.rated_models():
                    await self.refresh_ratings(model)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.debug("variant ratings not refreshed: %s", error)
            await asyncio.sleep(RATINGS_REFRESH_SECONDS)


def consumer_name() -> str:
    """A consumer name unique to this process on this host."""
    return f"{socket.gethostname()}-{os.getpid()}"
