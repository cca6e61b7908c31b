"""Recording one finished request, once: its metrics, cost and budget charge, the end of its trace span, the feedback
index, and its traffic sample. Everything the gateway measures about a request is written here."""

from __future__ import annotations

import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any

from gateway.exchange import Exchange
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

    def finish(self, ex: Exchange) -> None:
        """Record one finished request, once: a failure after the first recording never records it again."""
        if ex.finished:
            return
        ex.finished = True
        m = self.metrics
        now = perf_counter()
        endpoint = ex.endpoint.label
        stream = "true" if ex.stream else "false"
        model = ex.model.name if ex.model is not None else NO_MODEL
        route = ex.deployment
        provider = route.provider if route is not None else NO_DEPLOYMENT
        deployment = route.name if route is not None else NO_DEPLOYMENT
        m.requests.labels(model, provider, deployment, endpoint, stream, str(ex.status), ex.key, ex.variant).inc()
        m.traffic_requests.labels(model, ex.traffic).inc()
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
            m.duration.labels(model, provider, endpoint, stream).observe(total)
            m.overhead.labels(endpoint, stream).observe(ex.own_seconds)
            if ex.first_token_at is not None:
                ttft = ex.first_token_at - ex.start
                m.ttft.labels(model, provider).observe(ttft)
                if ex.usage is not None and ex.usage.output > 1 and ex.status == 200:
                    m.tpot.labels(model, provider).observe((total - ttft) / (ex.usage.output - 1))
            usage = ex.usage
            if usage is not None:
                key = ex.key
                if usage.uncached_input:
                    m.tokens.labels(model, provider, key, "input").inc(usage.uncached_input)
                if usage.cached_input:
                    m.tokens.labels(model, provider, key, "cached_input").inc(usage.cached_input)
                if usage.cache_write:
                    m.tokens.labels(model, provider, key, "cache_write").inc(usage.cache_write)
                if usage.visible_output:
                    m.tokens.labels(model, provider, key, "output").inc(usage.visible_output)
                if usage.reasoning:
                    m.tokens.labels(model, provider, key, "reasoning").inc(usage.reasoning)
                cost = route.cost.cost(usage)
                if cost:
                    m.cost.labels(model, provider, key, ex.variant).inc(cost)
                    m.traffic_cost.labels(model, ex.traffic).inc(cost)
                if self.access is not None:
                    self.access.charge(ex.key, usage.input + usage.output, cost)
            if ex.sample is not None and ex.sample.keep and self.sampler is not None:
                self._offer_sample(ex, total, cost)
            if self.index is not None and ex.status == 200 and ex.model is not None:
                self.index.remember(ex.request_id, ex.model.name, ex.variant, ex.key)
        if ex.span is not None:
            try:
                self._end_span(ex, cost)
            except Exception:  # tracing never fails a request
                log.exception("could not end the trace span of request %s", ex.request_id)

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
        )

    def _end_span(self, ex: Exchange, cost: float) -> None:
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
        if self.capture_content and ex.sample is not None:
            request = ex.sample.request
            prompt = request.get("messages", request.get("prompt", request.get("input")))
            span.set_content(prompt, "".join(ex.sample.text) if ex.status == 200 else None)
        if ex.status >= 400:
            span.set_error(ex.error_type or str(ex.status), ex.status)
        span.end(ex.status)

    def _offer_sample(self, ex: Exchange, total: float, cost: float) -> None:
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
            request=draft.request,
            response={"text": "".join(draft.text), "finish_reason": draft.finish_reason, "logprobs": draft.logprobs},
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
            metadata=draft.metadata,
        )
        if self.sampler.offer(model.name, ex.request_id, sample):
            self.metrics.samples.labels(model.name, "queued").inc()
