"""Shadow comparisons (``monitors.shadow``): a share of a model's sampled chat requests is sent again, as it was, to
another model (or to one A/B variant of a model, its own included) through the gateway, and the two answers are
compared by the pairwise judge and queued for reviewers.

- **Which**: ``rate`` of the model's sampled chat requests that succeeded, chosen by a hash of the request id
  (:func:`llmops.contract.sampled` on ``<id>:shadow:<label>``, the label being the target or ``target@variant``),
  except the samples of the very variant the shadow asks; run once, after the sample's results are committed (a
  worker that dies meanwhile loses that one comparison, never repeats one).
- **How**: ``POST {gateway_url}/chat/completions`` with the client's body (``model`` replaced, not streamed) and the
  header ``x-llmops-traffic: shadow``: the gateway meters and costs it as its own kind
  (``llm_gateway_traffic_cost_usd_total{kind="shadow"}``) and never samples it. With a ``variant``, also
  ``x-llmops-variant: <variant>``, which the gateway honours on shadow traffic only (the answer's own
  ``x-llmops-variant`` must name it, else the comparison fails).
- **Bounds**, shared by every worker in Redis: at most ``max_per_minute`` requests per minute (fixed one-minute
  windows) and, per UTC day, ``budget_usd_per_day`` (priced with the per-token pricing of the target, or of the
  model serving its variant) and ``max_tokens_per_day``. Both are checked before a request and charged after it, so
  concurrent requests may pass the budget by at most the requests in flight (at most ``CONCURRENCY`` per worker).
- **Then**: the pairwise judge (when configured for the model) compares the two answers in both orders; the verdict is
  kept with the sample's results (``pairwise:shadow:<label>``), counted in ``llm_judge_pairwise_total`` and the
  pairwise ratings, where the sample is named by its variant (or model) and the shadow answer by the variant's name
  when it is one of the model's own variants, else by the label; and the pair goes to the ``pair`` review queues
  that take the model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import orjson

from llmops.config import Config
from llmops.config_review import ShadowSpec, shadow_priced_model
from llmops.contract import TRAFFIC_HEADER, VARIANT_HEADER, sampled
from llmops.sample import Sample
from monitors.judges.base import JudgeError
from monitors.review.items import answer
from monitors.store import RESULTS

log = logging.getLogger("llmops.monitors.shadow")

CONCURRENCY = 4
PREFIX = "llmops:shadow:"
# KEYS: this minute's requests, today's spend, today's tokens. ARGV: max per minute, budget (-1: none), max tokens
# (-1: none). 0: admitted (counted); 1: rate limited; 2: over budget.
_ADMIT = """
local budget, tokens = tonumber(ARGV[2]), tonumber(ARGV[3])
if budget >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= budget then return 2 end
if tokens >= 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= tokens then return 2 end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 120) end
if n > tonumber(ARGV[1]) then return 1 end
return 0
"""


class Shadow:
    """Runs the configured shadow comparisons of committed samples."""

    def __init__(self, config: Config, redis: Any, metrics: Any, judging: Any, ratings: Any, feed: Any) -> None:
        self.config = config
        self.settings = config.monitors
        self.redis = redis
        self.metrics = metrics
        self.judging = judging
        self.ratings = ratings
        self.feed = feed
        self.models = {m.name: m for m in config.models}
        self.specs: dict[str, list[ShadowSpec]] = {}
        for spec in self.settings.shadow:
            self.specs.setdefault(spec.model, []).append(spec)
        self._admit = redis.register_script(_ADMIT)
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    def submit(self, sample: Sample) -> None:
        """Start the shadow comparisons ``sample`` is chosen for (in the background)."""
        if sample.status != 200 or sample.endpoint != "chat" or not isinstance(sample.request.get("messages"), list):
            return
        for spec in self.specs.get(sample.model, []):
            if spec.target == sample.model and spec.variant is not None and spec.variant == sample.variant:
                continue  # the variant the shadow asks answered this one itself
            if sampled(f"{sample.id}:shadow:{spec.label}", spec.rate, self.judging.sampling_key):
                task = asyncio.get_running_loop().create_task(self.run(spec, sample))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def admit(self, spec: ShadowSpec, now: float | None = None) -> str:
        """``sent`` when a request may go now (and counts it), else ``rate_limited`` or ``over_budget``."""
        now = time.time() if now is None else now
        day, minute = time.strftime("%Y%m%d", time.gmtime(now)), int(now // 60)
        base = f"{PREFIX}{spec.model}:{spec.label}:"
        budget = -1 if spec.budget_usd_per_day is None else spec.budget_usd_per_day
        tokens = -1 if spec.max_tokens_per_day is None else spec.max_tokens_per_day
        keys = [f"{base}minute:{minute}", f"{base}spend:{day}", f"{base}tokens:{day}"]
        verdict = int(await self._admit(keys=keys, args=[spec.max_per_minute, budget, tokens]))
        return ("sent", "rate_limited", "over_budget")[verdict]

    async def run(self, spec: ShadowSpec, sample: Sample) -> None:
        async with self._slots:
            outcome = "error"
            try:
                outcome = await self.admit(spec)
                if outcome == "sent":
                    shadow = await self._ask(spec, sample)
                    await self._compare(spec, sample, shadow)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                outcome = "error"
                log.warning("shadow of %s on %s failed: %s: %s", sample.id, spec.label, type(error).__name__, error)
            self.metrics.shadow_requests.labels(spec.model, spec.label, outcome).inc()

    async def _ask(self, spec: ShadowSpec, sample: Sample) -> Sample:
        """The target's answer to the sample's request, through the gateway as shadow traffic; charged to the
        day's budget."""
        body = {k: v for k, v in sample.request.items() if k not in ("stream", "stream_options")}
        body["model"] = spec.target
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        headers = {TRAFFIC_HEADER: "shadow", "Content-Type": "application/json"}
        if spec.variant is not None:
            headers[VARIANT_HEADER] = spec.variant
        headers["Authorization"] = f"Bearer {self.settings.judge_api_key or 'shadow'}"
        url = self.settings.gateway_url.rstrip("/") + "/chat/completions"
        started = time.time()
        async with self._http.post(url, data=orjson.dumps(body), headers=headers) as response:
            raw = await response.read()
            request_id = response.headers.get("x-request-id") or f"{sample.id}:shadow:{spec.label}"
            if response.status != 200:
                raise RuntimeError(f"the gateway answered {response.status}: {raw[:300]!r}")
            served = response.headers.get(VARIANT_HEADER)
            if spec.variant is not None and served != spec.variant:  # a gateway that ignored the pin
                raise RuntimeError(f"the gateway answered with variant {served!r}, not the pinned {spec.variant!r}")
        reply = orjson.loads(raw)
        usage = reply.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        tokens = {
            "input": int(usage.get("prompt_tokens") or 0),
            "output": int(usage.get("completion_tokens") or 0),
            "cached": int(details.get("cached_tokens") or 0),
        }
        cost = self.cost(shadow_priced_model(spec, self.models), tokens)
        day = time.strftime("%Y%m%d", time.gmtime())
        base = f"{PREFIX}{spec.model}:{spec.label}:"
        pipe = self.redis.pipeline(transaction=False)
        pipe.incrbyfloat(f"{base}spend:{day}", cost)
        pipe.incrby(f"{base}tokens:{day}", tokens["input"] + tokens["output"])
        pipe.expire(f"{base}spend:{day}", 3 * 86400)
        pipe.expire(f"{base}tokens:{day}", 3 * 86400)
        await pipe.execute()
        self.metrics.shadow_cost.labels(spec.model, spec.label).inc(cost)
        choice = (reply.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        return Sample(
            id=request_id,
            ts=started,
            model=spec.target,
            variant=spec.variant,
            provider="",
            deployment="",
            endpoint="chat",
            key="shadow",
            request=body,
            response={"text": message.get("content") or "", "finish_reason": choice.get("finish_reason")},
            usage=tokens,
            latency={"total": time.time() - started, "ttft": None, "per_output_token": None},
            cost_usd=cost,
            status=200,
            metadata=sample.metadata,
        )

    def cost(self, model: str, tokens: dict[str, int]) -> float:
        """The monitors' estimate with the model's per-token pricing (0 without one; the gateway's figure is the
        authoritative one)."""
        configured = self.config.model(model)
        pricing = configured.pricing if configured is not None else None
        if pricing is None or pricing.input_per_mtok is None or pricing.output_per_mtok is None:
            return 0.0
        cached = min(tokens["cached"], tokens["input"])
        cached_price = (
            pricing.input_per_mtok if pricing.cached_input_per_mtok is None else pricing.cached_input_per_mtok
        )
        return (
            (tokens["input"] - cached) * pricing.input_per_mtok
            + cached * cached_price
            + tokens["output"] * pricing.output_per_mtok
        ) / 1e6

    async def _compare(self, spec: ShadowSpec, sample: Sample, shadow: Sample) -> None:
        """Judge the pair (when the pairwise judge is configured for the model), keep and count the verdict, and
        queue the pair for reviewers."""
        mine, theirs = answer(sample), answer(shadow, spec.contestant)
        if mine.contestant == theirs.contestant:
            theirs = answer(shadow, f"{spec.label}:shadow")
        first, second = (sample, shadow) if mine.contestant < theirs.contestant else (shadow, sample)
        a, b = (mine, theirs) if first is sample else (theirs, mine)
        stored: dict[str, Any] | None = None
        judge = self.judging.pairwise
        wanted = any(s.name == "pairwise" and (not s.models or sample.model in s.models) for s in self.judging.specs)
        fields: dict[str, Any] = {
            f"shadow:{spec.label}": {"request_id": shadow.id, "answer": shadow.answer[:2000], "cost": shadow.cost_usd}
        }
        verdict = None
        if judge is not None and wanted:
            try:
                verdict = await judge.compare(first, second, self.judging.llm)
            except JudgeError as error:  # the comparison still goes to the reviewers
                self.metrics.judge_runs.labels("pairwise", "error").inc()
                self.metrics.judge_errors.labels("pairwise", error.reason).inc()
                fields[f"pairwise:shadow:{spec.label}:error"] = {"reason": error.reason, "message": str(error)}
        if verdict is not None:
            self.metrics.judge_runs.labels("pairwise", "ok").inc()
            stored = {
                "winner": verdict.winner,
                "against": shadow.id,
                "explanation": verdict.explanation,
                "details": {**verdict.details, "variant_a": a.contestant, "variant_b": b.contestant},
            }
            fields[f"pairwise:shadow:{spec.label}"] = stored
            agreed = bool(verdict.details.get("consistent", True))
            self.metrics.pairwise.labels(
                sample.model, a.contestant, b.contestant, verdict.winner, "agree" if agreed else "disagree"
            ).inc()
            await self.ratings.update(sample.model, [(a.contestant, b.contestant, verdict.winner, agreed)])
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(RESULTS + sample.id, mapping={k: orjson.dumps(v) for k, v in fields.items()})
        pipe.expire(RESULTS + sample.id, self.settings.results_ttl_seconds)
        await pipe.execute()
        if self.feed is not None:
            await self.feed.observe_shadow(sample, a, b, stored)
