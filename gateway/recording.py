"""Recording one finished request, once: its metrics, cost and budget charge, the end of its trace span, the feedback
index, and its traffic sample. Everything the gateway measures about a request is written here."""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any

from gateway.exchange import Exchange
from gateway.metrics import LabelCache
from gateway.privacy import INLINE_MASK_CHARS, Content, content_chars, sample_content
from llmops.sample import Sample

if TYPE_CHECKING:
    from gateway.access import AccessControl
    from gateway.metrics import GatewayMetrics
    from gateway.request_index import RequestIndex
    from gateway.sampling import SampleWriter

log = logging.getLogger("llmops.gateway")

NO_MODEL = "unknown"  # label value for requests that never reached a known model (typos stay out of labels)
NO_DEPLOYMENT = "none"


class Recorder:
    """Writes what a finished :class:`~gateway.exchange.Exchange` did to every place that keeps it."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        *,
        access: AccessControl | None = None,
        sampler: SampleWriter | None = None,
        index: RequestIndex | None = None,
        capture_content: bool = False,
    ) -> None:
        self.metrics = metrics
        self.access = access  # budgets are charged from the final usage
        self.sampler = sampler
        self.index = index  # request id → model, variant, for feedback
        self.capture_content = capture_content
        self._masking: set[asyncio.Future[Content | None]] = set()  # large samples being masked in a thread
        # the series every answered request touches, by label values (prometheus' labels() costs more than a dict)
        self._requests = LabelCache(metrics.requests)
        self._traffic_requests = LabelCache(metrics.traffic_requests)
        self._duration = LabelCache(metrics.duration)
        self._overhead = LabelCache(metrics.overhead)
        self._ttft = LabelCache(metrics.ttft)
        self._tpot = LabelCache(metrics.tpot)
        self._tokens = LabelCache(metrics.tokens)
        self._cost = LabelCache(metrics.cost)
        self._traffic_cost = LabelCache(metrics.traffic_cost)

    def finish(self, ex: Exchange) -> None:
        """Record one finished request, once: a failure after the first recording never records it again."""
        if ex.finished:
            return
        ex.finished = True
        m = self.metrics
        now = perf_counter()
        deferred = self._defer_masking(ex)  # a large sample: masked in a worker thread, then offered
        content = None if deferred else self._content(ex)
        endpoint = ex.endpoint.label
        stream = "true" if ex.stream else "false"
        model = ex.model.name if ex.model is not None else NO_MODEL
        route = ex.deployment
        provider = route.provider if route is not None else NO_DEPLOYMENT
        deployment = route.name if route is not None else NO_DEPLOYMENT
        self._requests.get(model, provider, deployment, endpoint, stream, str(ex.status), ex.key, ex.variant).inc()
        self._traffic_requests.get(model, ex.traffic).inc()
        if ex.upstream_reason is not None and route is not None:
            m.upstream_errors.labels(deployment, ex.upstream_reason).inc()
        if ex.disconnected:
            m.client_disconnects.labels(model, endpoint).inc()
            if ex.client_stalled:
                m.client_stalls.labels(model, endpoint).inc()
        if ex.shutdown_cut:
            m.shutdown_cut.labels(model, endpoint).inc()
        cost = 0.0
        if route is not None:
            total = now - ex.start
            # a recorded trace: the latency buckets point at it (exemplars); no trace, no work
            exemplar = ex.span.exemplar(ex.request_id) if ex.span is not None else None
            self._duration.get(model, provider, endpoint, stream).observe(total, exemplar)
            self._overhead.get(endpoint, stream).observe(ex.own_seconds)
            if ex.first_token_at is not None:
                ttft = ex.first_token_at - ex.start
                self._ttft.get(model, provider).observe(ttft, exemplar)
                if ex.usage is not None and ex.usage.output > 1 and ex.status == 200:
                    self._tpot.get(model, provider).observe((total - ttft) / (ex.usage.output - 1), exemplar)
            usage = ex.usage
            if usage is not None:
                key = ex.key
                tokens = self._tokens
                if usage.uncached_input:
                    tokens.get(model, provider, key, "input").inc(usage.uncached_input)
                if usage.cached_input:
                    tokens.get(model, provider, key, "cached_input").inc(usage.cached_input)
                if usage.cache_write:
                    tokens.get(model, provider, key, "cache_write").inc(usage.cache_write)
                if usage.visible_output:
                    tokens.get(model, provider, key, "output").inc(usage.visible_output)
                if usage.reasoning:
                    tokens.get(model, provider, key, "reasoning").inc(usage.reasoning)
                cost = route.cost.cost(usage)
                if cost:
                    self._cost.get(model, provider, key, ex.variant).inc(cost)
                    self._traffic_cost.get(model, ex.traffic).inc(cost)
                    if ex.usage_estimated:
                        m.estimated_cost.labels(model).inc(cost)
                prices = route.cost.prices
                if prices is not None and (usage.cached_input or usage.cache_write):
                    saved, premium = prices.cache_savings(usage)
                    if saved:
                        m.cache_savings.labels(model).inc(saved)
                    if premium:
                        m.cache_write_premium.labels(model).inc(premium)
                if self.access is not None:
                    self.access.charge(ex.key, usage.input + usage.output, cost)
            if ex.sample is not None and ex.sample.keep and self.sampler is not None:
                if deferred:
                    self._offer_masked_later(ex, total, cost)
                elif content is not None:
                    self._offer_sample(ex, total, cost, content)
                else:  # masking failed: the sample is not sent unmasked
                    m.samples.labels(model, "dropped").inc()
            if self.index is not None and ex.status == 200 and ex.model is not None:
                self.index.remember(ex.request_id, ex.model.name, ex.variant, ex.key)
        if ex.span is not None:
            try:
                self._end_span(ex, cost, content)
            except Exception:  # tracing never fails a request
                log.exception("could not end the trace span of request %s", ex.request_id)

    @staticmethod
    def describe_request(ex: Exchange, payload: dict[str, Any]) -> None:
        """Name the request span after its model and set the ``gen_ai.request.*`` attributes."""
        span, model = ex.span, ex.model
        assert span is not None
        if model is None:  # refused before the model was resolved (unknown, missing, not a string)
            name = payload.get("model")
            if isinstance(name, str) and name:
                span.set_unknown_model(name)
            return
        max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens", payload.get("max_output_tokens")))
        temperature = payload.get("temperature")
        span.set_request(
            request_model=model.name,
            provider=model.deployments[0].provider if model.deployments else "openai_compatible",
            stream=ex.stream,
            max_tokens=max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None,
            temperature=temperature
            if isinstance(temperature, int | float) and not isinstance(temperature, bool)
            else None,
        )

    @staticmethod
    def span_response(ex: Exchange, response_id: Any, response_model: str | None) -> None:
        """Describe the answer on the request span (model, id, finish reason, usage)."""
        assert ex.span is not None
        usage = ex.usage
        ex.span.set_response(
            response_model=response_model,
            response_id=response_id if isinstance(response_id, str) else None,
            finish_reasons=[ex.finish_reason] if ex.finish_reason else None,
            input_tokens=usage.input if usage is not None else None,
            output_tokens=usage.output if usage is not None else None,
            cache_read_tokens=usage.cached_input if usage is not None else 0,
            cache_write_tokens=usage.cache_write if usage is not None else 0,
            reasoning_tokens=usage.reasoning if usage is not None else 0,
        )

    def _end_span(self, ex: Exchange, cost: float, content: Content | None) -> None:
        span = ex.span
        assert span is not None
        route, usage = ex.deployment, ex.usage
        span.set_attributes(
            {
                "llmops.request_id": ex.request_id,
                "llmops.deployment": route.name if route is not None else None,
                "llmops.variant": ex.variant or None,
                # the request's totals, under our names: gen_ai.usage.* is on the attempt that used the tokens
                "llmops.usage.input_tokens": usage.input if usage is not None else None,
                "llmops.usage.output_tokens": usage.output if usage is not None else None,
                "llmops.usage.cached_input_tokens": usage.cached_input if usage is not None else None,
                "llmops.usage.estimated": True if ex.usage_estimated else None,
                "llmops.cost_usd": cost if usage is not None else None,
            }
        )
        if self.capture_content and content is not None:
            request = content.request
            prompt = request.get("messages", request.get("prompt", request.get("input")))
            span.set_content(prompt, content.text if ex.status == 200 else None)
        if ex.status >= 400:
            span.set_error(ex.error_type or str(ex.status), ex.status)
        span.end(ex.status)

    def _content(self, ex: Exchange) -> Content | None:
        """The request's content as it may leave the request path, personal data masked per its model's ``pii``;
        computed once, for the sample and the span alike. None when neither keeps it."""
        draft, model = ex.sample, ex.model
        if draft is None or model is None:
            return None
        sampled = draft.keep and self.sampler is not None and ex.deployment is not None
        if not sampled and not (self.capture_content and ex.span is not None):
            return None
        try:
            return sample_content(draft, model.config.pii, self.metrics.pii_masked, model.name)
        except Exception as error:  # never keep unmasked content; never log it either (only the error's type)
            log.error("could not mask the content of request %s (%s): not sampled", ex.request_id, type(error).__name__)
            return None

    def _defer_masking(self, ex: Exchange) -> bool:
        """Whether the request's sample is large enough to be masked off the event loop (the detector's regular
        expressions cost ~0.1 s per MB of text: inline, that would stall every other request). Not when its span
        captures content: the span ends now, with its masked content."""
        draft, model = ex.sample, ex.model
        if draft is None or model is None or not draft.keep or self.sampler is None or ex.deployment is None:
            return False
        if not model.config.pii.mask or (self.capture_content and ex.span is not None):
            return False
        return content_chars(draft) > INLINE_MASK_CHARS

    def _offer_masked_later(self, ex: Exchange, total: float, cost: float) -> None:
        """Mask the sample in the loop's default executor, then offer it from the loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop (direct calls in tests): inline
            content = self._content(ex)
            if content is not None:
                self._offer_sample(ex, total, cost, content)
            return

        def done(future: asyncio.Future[Content | None]) -> None:
            self._masking.discard(future)
            content = None if future.cancelled() or future.exception() else future.result()
            if content is not None:
                self._offer_sample(ex, total, cost, content)
            else:
                assert ex.model is not None
                self.metrics.samples.labels(ex.model.name, "dropped").inc()

        future = loop.run_in_executor(None, self._content, ex)
        self._masking.add(future)  # held until done
        future.add_done_callback(done)

    def _offer_sample(self, ex: Exchange, total: float, cost: float, content: Content) -> None:
        """Hand the finished request's sample to the writer (never waits)."""
        draft, route, usage, model = ex.sample, ex.deployment, ex.usage, ex.model
        assert draft is not None and route is not None and model is not None and self.sampler is not None
        ttft = ex.first_token_at - ex.start if ex.first_token_at is not None else None
        per_token = None
        if ttft is not None and usage is not None and usage.output > 1:
            per_token = (total - ttft) / (usage.output - 1)
        sample = Sample(
            id=ex.request_id,
            ts=draft.ts,
            model=model.name,
            provider=route.provider,
            deployment=route.name,
            variant=ex.variant or None,
            endpoint=ex.endpoint.label,
            key=ex.key,
            request=content.request,
            response={"text": content.text, "finish_reason": draft.finish_reason, "logprobs": draft.logprobs},
            usage={
                "input": usage.input if usage else 0,
                "output": usage.output if usage else 0,
                "cached": usage.cached_input if usage else 0,
                **({"cache_write": usage.cache_write} if usage and usage.cache_write else {}),
                **({"reasoning": usage.reasoning} if usage and usage.reasoning else {}),
                **({"estimated": True} if ex.usage_estimated else {}),
            },
            latency={"total": total, "ttft": ttft, "per_output_token": per_token},
            cost_usd=cost,
            status=ex.status,
            trace_id=ex.span.trace_id if ex.span is not None else None,
            metadata=content.metadata,
        )
        if self.sampler.offer(model.name, ex.request_id, sample):
            self.metrics.samples.labels(model.name, "queued").inc()
