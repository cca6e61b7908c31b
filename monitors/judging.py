"""Judging one sample: the configured judges that apply to it, run concurrently, merged into one :class:`Outcome`.

Which judges apply: per config, which judges on which models at what rate (:func:`llmops.contract.sampled` on
``<request id>:<judge>``, so every worker and every attempt agrees). The pairwise judge compares the sample with the
other variants' latest answers to the same prompt.

Deferral: when the judge model is unavailable for some judges (a transient :class:`JudgeError`), the worker leaves
the entry pending; :meth:`Judging.defer` keeps the other judges' final outcomes in Redis, and the next attempt
(:meth:`Judging.judged_before`) runs only the judges still missing. The pairwise judge is never deferred: its
comparisons are made once (a later answer of another variant to the same prompt compares against this one anyway).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson

from llmops.config import JudgeSpec, MonitorsConfig
from llmops.contract import sampled, sampling_key
from llmops.sample import Sample
from monitors.judge_llm import judged_trace
from monitors.judges.base import Embedder, Judge, JudgeError, JudgeLLM, JudgeResult, PairwiseResult, PartialJudgeError
from monitors.metrics import MonitorMetrics
from monitors.store import Entry, SampleStore

log = logging.getLogger("llmops.monitors")

# Entries in hand longer than this are no longer kept from other workers (a hung sample must not hold its entry for
# good). Longer than the slowest legitimate sample: a RAG judge's sequential calls, each up to 3 x 120 s.
MAX_HOLD_SECONDS = 1800.0


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
    conflicts: list[str] = field(default_factory=list)  # judge name, once per judge reply with conflicting verdicts
    done: dict[str, Outcome] = field(default_factory=dict)  # judge name -> its final outcome
    unavailable: dict[str, str] = field(default_factory=dict)  # judge name -> why: run it again later
    partial: dict[str, Outcome] = field(default_factory=dict)  # judge name -> what it scored before being unavailable

    def merge(self, part: Outcome) -> None:
        """Add one judge's outcome to this one."""
        self.fields.update(part.fields)
        self.scores += part.scores
        self.errors += part.errors
        self.runs += part.runs
        self.pairwise += part.pairwise
        self.conflicts += part.conflicts

    def to_json(self) -> bytes:
        """This (one judge's) outcome, to keep between attempts."""
        return orjson.dumps(
            {
                "fields": self.fields,
                "scores": [[s.judge, s.criterion, s.score, s.explanation, s.details] for s in self.scores],
                "errors": self.errors,
                "runs": self.runs,
                "pairwise": self.pairwise,
                "conflicts": self.conflicts,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Outcome:
        """An outcome kept by :meth:`to_json`."""
        data = orjson.loads(raw)
        return cls(
            fields=data["fields"],
            scores=[JudgeResult(*score) for score in data["scores"]],
            errors=[tuple(e) for e in data["errors"]],
            runs=[tuple(r) for r in data["runs"]],
            pairwise=[tuple(p) for p in data["pairwise"]],
            conflicts=list(data.get("conflicts", [])),  # absent in outcomes kept before it existed
        )


def prompt_hash(sample: Sample) -> str:
    """Identifies 'the same prompt' across variants: the request's messages (or prompt), hashed."""
    basis = sample.request.get("messages", sample.request.get("prompt"))
    return hashlib.blake2b(orjson.dumps(basis, option=orjson.OPT_SORT_KEYS), digest_size=12).hexdigest()


class Judging:
    """Runs the configured judges on samples, and keeps what a deferred attempt found for the next one."""

    def __init__(
        self,
        settings: MonitorsConfig,
        store: SampleStore,
        metrics: MonitorMetrics,
        *,
        judges: dict[str, Judge] | None = None,
        pairwise: Any = None,
        llm: JudgeLLM | None = None,
        embedder: Embedder | None = None,
        sampling_secret: str | None = None,
    ) -> None:
        self.settings = settings
        self.sampling_key = sampling_key(sampling_secret)  # shared by the workers given the same secret
        self.store = store
        self.metrics = metrics
        self.specs: list[JudgeSpec] = settings.judge_specs
        if judges is None:
            from monitors.judges.registry import build_judges

            judges = build_judges([s.name for s in self.specs if s.name != "pairwise"], embedder=embedder)
        self.judges = judges
        if pairwise is None and any(s.name == "pairwise" for s in self.specs):
            from monitors.judges.pairwise import PairwiseJudge

            pairwise = PairwiseJudge()
        self.pairwise = pairwise
        self.llm = llm

    def applicable(self, sample: Sample) -> list[JudgeSpec]:
        """The judges configured for ``sample``'s model whose rate selects this sample."""
        return [
            spec
            for spec in self.specs
            if (not spec.models or sample.model in spec.models)
            and sampled(f"{sample.id}:{spec.name}", spec.rate, self.sampling_key)
        ]

    async def judge(self, sample: Sample, done: dict[str, Outcome] | None = None) -> Outcome:
        """Run every applicable judge on ``sample`` concurrently, except those with a final outcome in ``done``
        (from an earlier attempt), whose outcome is reused. Judge calls join the sample's trace."""
        token = judged_trace.set(sample.trace_id)
        try:
            return await self._judge(sample, done or {})
        finally:
            judged_trace.reset(token)

    async def _judge(self, sample: Sample, done: dict[str, Outcome]) -> Outcome:
        outcome = Outcome()
        if sample.status != 200 or sample.endpoint == "embeddings":
            return outcome  # failed requests and embeddings have no answer to judge
        specs = self.applicable(sample)
        runs: list[tuple[str, Coroutine[Any, Any, list[JudgeResult]]]] = []
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
                if isinstance(result, PartialJudgeError):  # kept only if this attempt is the last (see below)
                    part = Outcome()
                    _collect(part, name, result)
                    outcome.partial[name] = part
                continue
            part = Outcome()
            _collect(part, name, result)
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
            if name in outcome.partial:  # scored some criteria: a run with a result, each failed criterion an error
                outcome.merge(outcome.partial[name])
                continue
            outcome.runs.append((name, "error"))
            outcome.errors.append((name, "llm_error"))
            outcome.fields[f"{name}:error"] = {"reason": "llm_error", "message": message}
        return outcome

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
            conflicts = int(bool(verdict.details.get("verdict_conflict_ab"))) + int(
                bool(verdict.details.get("verdict_conflict_ba"))
            )
            outcome.conflicts += ["pairwise"] * conflicts
            outcome.pairwise.append((str(a.variant), str(b.variant), verdict.winner))
            outcome.fields[f"pairwise:{a.variant}:{b.variant}"] = {
                "winner": verdict.winner,
                "against": other.id,
                "explanation": verdict.explanation,
                "details": verdict.details,
            }

    # ---- deferral: the judge model was unavailable ------------------------------------------------------------------
    async def judged_before(self, entry: Entry, attempts: int) -> dict[str, Outcome]:
        """The final outcomes earlier attempts on ``entry`` kept (none on a first attempt)."""
        if attempts <= 1:
            return {}
        kept = await self.store.judged_before(entry.entry_id)
        return {name: Outcome.from_json(raw) for name, raw in kept.items()}

    async def defer(self, entry: Entry, sample: Sample, outcome: Outcome, attempts: int) -> None:
        """The judge model was unavailable for some judges: keep what the others found, count the failed runs (the
        entry stays pending). It is claimed again after ``claim_idle_seconds`` (by any worker), and only the judges
        still missing run then; the last allowed attempt commits whatever it has."""
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
            settings.max_deliveries,
            settings.claim_idle_seconds,
        )


def _collect(outcome: Outcome, name: str, result: Any) -> None:
    """Add one judge run's result (its scores, or the exception it raised) to ``outcome``.

    A :class:`PartialJudgeError` (some criteria scored, others failed) counts as a run with a result (``ok``): its
    scores are kept, and each failed criterion is one error with its reason (``<judge>:<criterion>:error``)."""
    if isinstance(result, PartialJudgeError):
        outcome.runs.append((name, "ok"))
        _collect_scores(outcome, result.results)
        for criterion, error in result.failures:
            outcome.errors.append((name, error.reason))
            outcome.fields[f"{name}:{criterion}:error"] = {"reason": error.reason, "message": str(error)}
        return
    outcome.runs.append((name, "error" if isinstance(result, BaseException) else "ok"))
    if isinstance(result, JudgeError):
        outcome.errors.append((name, result.reason))
        outcome.fields[f"{name}:error"] = {"reason": result.reason, "message": str(result)}
    elif isinstance(result, BaseException):
        log.warning("judge %s raised %s: %s", name, type(result).__name__, result)
        outcome.errors.append((name, "exception"))
        outcome.fields[f"{name}:error"] = {"reason": "exception", "message": f"{type(result).__name__}: {result}"}
    else:
        _collect_scores(outcome, result)


def _collect_scores(outcome: Outcome, results: list[JudgeResult]) -> None:
    for score in results:
        outcome.scores.append(score)
        if score.details.get("verdict_conflict"):
            outcome.conflicts.append(score.judge)
        outcome.fields[f"{score.judge}:{score.criterion}"] = {
            "score": score.score,
            "explanation": score.explanation,
            "details": score.details,
        }
