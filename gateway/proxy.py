"""The request path: validate, route, call the upstream (retrying and falling back), relay the answer, and
measure everything on the way.

Kept lean on purpose (no pydantic models of requests, one JSON parse, bytes-level rewriting of the ``model``
field): every field the client sends reaches the upstream unchanged except ``model`` (mapped to the deployment's
upstream name), ``metadata`` (kept for the monitors, never sent upstream) and ``stream_options.include_usage``
(always asked for, so streamed requests are costed exactly). Anthropic deployments get the request translated.
"""

from __future__ import annotations

import asyncio
import logging
import random
from time import perf_counter
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway.errors import GatewayError, bad_request, body_too_large, error_response, model_not_found
from gateway.exchange import Endpoint, Exchange, SampleDraft
from gateway.health import DeploymentHealth
from gateway.metrics import GatewayMetrics
from gateway.pricing import Usage
from gateway.providers import anthropic
from gateway.relay import AnthropicEvents, OpenAIEvents, StreamRelay
from gateway.request_id import request_id_of
from gateway.routing import DeploymentRoute, ModelRoute, attempt_plan
from gateway.sampling import SampleWriter
from gateway.upstream import UpstreamClient, UpstreamFailure, classify_http_error
from gateway.usage_estimate import estimate_stream_usage
from llmops.config import RoutingConfig
from llmops.contract import JUDGE_HEADER, sampled
from llmops.sample import Sample

log = logging.getLogger("llmops.gateway")

_NO_MODEL = "unknown"  # label value for requests that never reached a known model (typos stay out of labels)
_NO_DEPLOYMENT = "none"
# Failures inside a started stream that are the deployment's (passive health counts them).
_DEPLOYMENT_FAULTS = frozenset({"timeout", "connect", "invalid_response", "http_5xx"})


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _dumps(body: dict[str, Any]) -> bytes:
    """The upstream body; JSON that parsed but cannot be written back (orjson writes at most 254 levels of nesting,
    while it reads up to 1024) is the client's error, not the gateway's."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as error:
        raise bad_request(
            f"The request body cannot be forwarded: {error}. Nest arrays and objects less deeply."
        ) from None


def _invalid(route: DeploymentRoute, what: str) -> UpstreamFailure:
    return UpstreamFailure(
        "invalid_response",
        GatewayError(
            502, f"Upstream deployment '{route.name}' {what}.", type="upstream_error", code="upstream_invalid_response"
        ),
    )


class Proxy:
    """Handles the proxied endpoints for one gateway app."""

    def __init__(
        self,
        routes: dict[str, ModelRoute],
        metrics: GatewayMetrics,
        client: UpstreamClient,
        max_body_bytes: int,
        sampler: SampleWriter | None = None,
        routing: RoutingConfig | None = None,
        tracer: Any = None,
        access: Any = None,
        index: Any = None,
    ) -> None:
        self.routes = routes
        self.metrics = metrics
        self.client = client
        self.max_body_bytes = max_body_bytes
        self.sampler = sampler
        self.routing = routing or RoutingConfig()
        self.tracer = tracer if tracer is not None and tracer.enabled else None  # None: tracing costs nothing
        self.capture_content = bool(self.tracer is not None and self.tracer.capture_content)
        self.access = access  # keys, rate limits and budgets (gateway.access.AccessControl), or None: open
        self.index = index  # request id → model, variant (gateway.feedback.RequestIndex), for feedback
        self.health = DeploymentHealth(self.routing, on_change=self._health_changed)
        # Health key → (model, deployment); never split the key: both names may contain "/".
        self._health_labels = {
            dep.key: (model.name, dep.name) for model in routes.values() for dep in model.deployments
        }
        for model_name, deployment in self._health_labels.values():
            self.metrics.deployment_healthy.labels(model_name, deployment).set(1)

    def _health_changed(self, key: str, healthy: bool) -> None:
        model, deployment = self._health_labels[key]
        self.metrics.deployment_healthy.labels(model, deployment).set(1 if healthy else 0)
        log.warning(
            "deployment %s of model %s is %s",
            deployment,
            model,
            "healthy again" if healthy else "failing: cooling down",
        )

    # ---- entry point -------------------------------------------------------------------------------------------
    async def handle(self, request: Request, endpoint: Endpoint) -> Response:
        """Proxy one request to ``endpoint``; every failure becomes an OpenAI-shaped error."""
        ex = Exchange(endpoint, request_id_of(request.scope), perf_counter())
        in_flight = None
        try:
            if self.tracer is not None:  # first, so a request refused below has its span too
                ex.span = self.tracer.start_request(operation=endpoint.operation, headers=request.scope["headers"])
            else:
                ex.traceparent = request.headers.get("traceparent")
                if ex.traceparent is not None:
                    ex.tracestate = request.headers.get("tracestate")
            if self.access is not None:
                ex.key = self.access.authenticate(request.headers.get("authorization"))
            payload = ex.payload = await self._read_payload(request)
            try:
                self._prepare(ex, payload, request.headers.get(JUDGE_HEADER) is not None)
            finally:
                if ex.span is not None:
                    try:
                        self._describe_span(ex, payload)
                    except Exception:  # tracing never fails a request, nor hides why it was refused
                        log.exception("could not describe the trace span of request %s", ex.request_id)
            if self.access is not None:
                await self.access.admit(ex.key, self.metrics)
            in_flight = self.metrics.in_flight.labels(ex.model.name)  # type: ignore[union-attr]
            in_flight.inc()
            response = await self._attempts(ex, payload, in_flight)
            if isinstance(response, StreamRelay):
                in_flight = None  # the relay decrements it when the stream ends
            return response
        except GatewayError as error:
            ex.status = error.status
            ex.error_type = error.code or error.type  # a bounded name: the OpenAI code, else its type
            self._finish(ex)
            response = error_response(error)
            response.headers.update(ex.response_headers())
            return response
        except UpstreamFailure as failure:
            ex.status = failure.error.status
            ex.error_type = failure.reason
            self._finish(ex)
            response = error_response(failure.error)
            response.headers.update(ex.response_headers())
            return response
        except ClientDisconnect:
            ex.status = 499
            ex.error_type = "client_disconnected"
            ex.disconnected = True
            self._finish(ex)
            return Response(status_code=499)
        except asyncio.CancelledError:  # the server shutting down: recorded (and its span ended), then cancelled
            ex.status = 499
            ex.error_type = "cancelled"
            self._finish(ex)
            raise
        except Exception:
            log.exception("unexpected error handling request %s", ex.request_id)
            ex.status = 500
            ex.error_type = "internal_error"
            self._finish(ex)
            response = error_response(
                GatewayError(
                    500, "The gateway failed to handle this request.", type="server_error", code="internal_error"
                )
            )
            response.headers.update(ex.response_headers())
            return response
        finally:
            if in_flight is not None:
                in_flight.dec()

    @staticmethod
    def _describe_span(ex: Exchange, payload: dict[str, Any]) -> None:
        """Name the request span after its model and set the ``gen_ai.request.*`` attributes."""
        model = ex.model
        if model is None:  # refused before the model was resolved (unknown, missing, not a string)
            name = payload.get("model")
            if isinstance(name, str) and name:
                ex.span.set_unknown_model(name)
            return
        max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
        temperature = payload.get("temperature")
        ex.span.set_request(
            request_model=model.name,
            provider=model.deployments[0].provider if model.deployments else "openai_compatible",
            stream=ex.stream,
            max_tokens=max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None,
            temperature=temperature
            if isinstance(temperature, int | float) and not isinstance(temperature, bool)
            else None,
        )

    # ---- request side ------------------------------------------------------------------------------------------
    async def _read_payload(self, request: Request) -> dict[str, Any]:
        raw = await read_body(request, self.max_body_bytes)
        if not raw:
            raise bad_request("The request body is empty; send a JSON object.")
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise bad_request(
                "We could not parse the JSON body of your request. Send valid JSON with Content-Type: application/json."
            ) from None
        if not isinstance(payload, dict):
            raise bad_request("The request body must be a JSON object.")
        return payload

    def _prepare(self, ex: Exchange, payload: dict[str, Any], judge_traffic: bool = False) -> None:
        """Validate what the gateway itself relies on, choose the variant, decide sampling."""
        endpoint = ex.endpoint
        name = payload.get("model")
        if not isinstance(name, str) or not name:
            raise bad_request("'model' is required and must be a string.", param="model")
        model = self.routes.get(name)
        if model is None:
            raise model_not_found(name)
        ex.model = model
        required = payload.get(endpoint.required)
        if required is None:
            raise bad_request(f"'{endpoint.required}' is a required property.", param=endpoint.required)
        if not isinstance(required, endpoint.required_types) or (isinstance(required, list) and not required):
            kinds = " or ".join("a non-empty array" if t is list else "a string" for t in endpoint.required_types)
            raise bad_request(f"'{endpoint.required}' must be {kinds}.", param=endpoint.required)
        stream = payload.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise bad_request("'stream' must be a boolean.", param="stream")
        options = payload.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise bad_request("'stream_options' must be an object.", param="stream_options")
        metadata = payload.pop("metadata", None)  # ours (reference, contexts, tags): never sent upstream
        if metadata is not None and not isinstance(metadata, dict):
            raise bad_request("'metadata' must be an object.", param="metadata")
        if stream and endpoint.streams:
            ex.stream = True
            ex.client_wants_usage = bool(options and options.get("include_usage") is True)
        user = payload.get("user")
        variant = model.choose_variant(user if isinstance(user, str) and user else ex.request_id)
        if variant is not None:
            ex.variant = variant.name
        if self.sampler is not None:
            if not judge_traffic and sampled(ex.request_id, model.config.sampling.rate):
                ex.sample = SampleDraft(dict(payload), metadata or {})
            else:
                self.metrics.samples.labels(model.name, "skipped").inc()
        if ex.sample is None and self.capture_content:
            ex.sample = SampleDraft(dict(payload), {}, keep=False)

    def _body(self, ex: Exchange, payload: dict[str, Any], route: DeploymentRoute) -> bytes:
        """The upstream body for one attempt (each deployment has its own model name, or its own API)."""
        if route.is_anthropic:
            if ex.endpoint.label != "chat":
                raise bad_request(
                    f"Model '{route.model}' is served by Anthropic, which has no {ex.endpoint.path} endpoint; "
                    "use /v1/chat/completions.",
                    param="model",
                )
            return _dumps(anthropic.to_anthropic_request(payload, route.config.model))
        upstream = dict(payload)
        upstream["model"] = route.config.model
        if ex.stream:
            options = payload.get("stream_options")
            upstream["stream_options"] = {**options, "include_usage": True} if options else {"include_usage": True}
        return _dumps(upstream)

    # ---- attempts: deployments, retries, fallbacks -------------------------------------------------------------
    async def _attempts(self, ex: Exchange, payload: dict[str, Any], in_flight: Any) -> Response | StreamRelay:
        model = ex.model
        assert model is not None
        variant = next((v for v in model.variants if v.name == ex.variant), None) if ex.variant else None
        settings = self.routing
        plan = attempt_plan(model, variant, self.health, settings.max_attempts, chat=ex.endpoint.label == "chat")
        last: UpstreamFailure | None = None
        unservable: GatewayError | None = None  # why a deployment could not take this request (e.g. Anthropic)
        previous: DeploymentRoute | None = None
        considered: DeploymentRoute | None = None  # the last deployment tried or skipped
        for attempt, route in enumerate(plan):
            switched = considered is not None and route.model != considered.model
            considered = route
            try:
                body = self._body(ex, payload, route)
            except GatewayError as error:  # this deployment cannot take the request: the next one may
                unservable = unservable or error
                continue
            if switched and route.model != model.name and route.model in model.config.fallbacks:
                self.metrics.fallbacks.labels(model.name, route.model).inc()
            if previous is not None:
                self.metrics.retries.labels(previous.name).inc()
                delay = min(settings.backoff_seconds * (2 ** (attempt - 1)), settings.backoff_max_seconds)
                slept_at = perf_counter()
                await asyncio.sleep(random.uniform(0, delay))  # full jitter
                ex.retry_seconds += perf_counter() - slept_at
            attempt_at = perf_counter()
            ex.deployment = route
            attempt_span = None
            if ex.span is not None:
                attempt_span = ex.span.start_attempt(
                    deployment=route.name,
                    upstream_model=route.config.model,
                    server_address=route.host,
                    server_port=route.port,
                    attempt=attempt + 1,
                    provider=route.provider,
                )
            began = self.health.begin(route.key)
            try:
                if ex.stream:
                    response = await self._stream(ex, body, in_flight, attempt_span, began)
                else:
                    response = await self._unary(ex, body, attempt_span)
            except UpstreamFailure as failure:
                ex.retry_seconds += perf_counter() - attempt_at
                self.metrics.upstream_errors.labels(route.name, failure.reason).inc()
                if attempt_span is not None:
                    attempt_span.set_error(failure.reason)
                    attempt_span.end(failure.error.status)
                if failure.retryable or failure.reason == "invalid_response":
                    self.health.failure(route.key, failure.retry_after)  # the deployment's fault
                else:
                    self.health.success(route.key, began)  # a 4xx about the request: the deployment is alive
                last = failure
                previous = route
                if not failure.retryable:
                    break
                continue
            except BaseException as error:
                self.health.release(route.key)  # failed beside the exchange: no verdict on the deployment
                if attempt_span is not None:
                    attempt_span.end(getattr(error, "status", None))
                raise
            if not ex.stream:  # a stream's verdict waits for its end (the relay's on_end)
                self.health.success(route.key, began)
            return response
        if last is not None:  # an upstream failure says more than a deployment that could not take the request
            raise last
        assert unservable is not None
        raise unservable

    # ---- unary responses ---------------------------------------------------------------------------------------
    async def _unary(self, ex: Exchange, body: bytes, attempt_span: Any) -> Response:
        route = ex.deployment
        assert route is not None and ex.model is not None
        sent_at = perf_counter()
        ex.own_seconds = sent_at - ex.start - ex.retry_seconds
        path = anthropic.ANTHROPIC_PATH if route.is_anthropic else ex.endpoint.path
        traceparent, tracestate = self._trace_headers(ex, attempt_span)
        upstream = await self.client.post(route, path, body, ex.request_id, traceparent, tracestate)
        raw = await self.client.read(route, upstream)
        received_at = perf_counter()
        response_model = route.config.model  # the upstream's own name for the model that answered
        if upstream.status >= 400:
            raise classify_http_error(route, upstream.status, raw, upstream.headers)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise _invalid(route, "answered with a body that is not a JSON object")
        if route.is_anthropic:
            try:
                data = anthropic.from_anthropic_response(data, ex.model.name)
            except GatewayError as error:
                raise UpstreamFailure("invalid_response", error) from None
            ex.usage = Usage.from_openai(data.get("usage"))
            out = orjson.dumps(data)
        else:
            ex.usage = Usage.from_openai(data.get("usage"))
            if ex.span is not None and isinstance(data.get("model"), str):
                response_model = data["model"]  # what the upstream says answered, before the rewrite below
            out = raw.replace(route.upstream_model_field, ex.model.public_model_field, 1)
            if out is raw and "model" in data:  # the upstream spaced its JSON differently: rewrite properly
                data["model"] = ex.model.name
                out = orjson.dumps(data)
        if ex.sample is not None:
            ex.sample.collect_response(data)
        choices = data.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            ex.finish_reason = choices[0].get("finish_reason")
        if ex.span is not None:
            self._span_response(ex, data.get("id"), response_model)
        if attempt_span is not None:
            attempt_span.end(200)  # before the request span ends (it closes any attempt still open, without status)
        ex.own_seconds += perf_counter() - received_at
        self._finish(ex)
        headers = ex.response_headers()
        headers["content-type"] = "application/json"
        return Response(out, status_code=200, headers=headers)

    # ---- streaming responses -----------------------------------------------------------------------------------
    async def _stream(self, ex: Exchange, body: bytes, in_flight: Any, attempt_span: Any, began: float) -> StreamRelay:
        route = ex.deployment
        assert route is not None and ex.model is not None
        ex.own_seconds = perf_counter() - ex.start - ex.retry_seconds
        path = anthropic.ANTHROPIC_PATH if route.is_anthropic else ex.endpoint.path
        traceparent, tracestate = self._trace_headers(ex, attempt_span)
        upstream = await self.client.post(route, path, body, ex.request_id, traceparent, tracestate)
        if upstream.status >= 400:
            raw = await self.client.read(route, upstream)
            raise classify_http_error(route, upstream.status, raw, upstream.headers)
        if not upstream.content_type.startswith("text/event-stream"):
            upstream.close()
            raise _invalid(
                route,
                f"did not answer a streaming request with an event stream (content-type {upstream.content_type!r})",
            )
        if route.is_anthropic:
            events: Any = AnthropicEvents(ex, anthropic.AnthropicStreamTranslator(ex.model.name, ex.client_wants_usage))
        else:
            events = OpenAIEvents(ex)

        def on_end(done: Exchange) -> None:
            in_flight.dec()
            if done.upstream_reason in _DEPLOYMENT_FAULTS:  # broke off, timed out, or a 5xx error event
                self.health.failure(route.key)
            elif done.disconnected and done.first_token_at is None:  # the client left before any output: no verdict
                self.health.release(route.key)
            else:  # complete, a client-side error event, or the client left after output: the deployment served
                self.health.success(route.key, began)
            estimate = estimate_stream_usage(
                done.usage, done.payload, done.output_events, final=done.usage_final, client_left=done.disconnected
            )
            if estimate is not None:  # before the span records the usage
                done.usage = estimate
                done.usage_estimated = True
                self.metrics.usage_estimated.labels(done.model.name).inc()  # type: ignore[union-attr]
            if attempt_span is not None:
                self._span_response(done, None, route.config.model)
                if done.status >= 400 or done.disconnected:
                    attempt_span.set_error(
                        done.upstream_reason or ("client_disconnected" if done.disconnected else str(done.status))
                    )
                attempt_span.end(done.status)
            if done.status >= 400 and done.error_type is None:
                done.error_type = done.upstream_reason or (
                    "client_disconnected" if done.disconnected else str(done.status)
                )
            self._finish(done)

        return StreamRelay(ex, upstream, events, ex.response_headers(), on_end)

    @staticmethod
    def _trace_headers(ex: Exchange, attempt_span: Any) -> tuple[str | None, str | None]:
        """``traceparent`` and ``tracestate`` for the upstream: this attempt's span with the caller's state, or the
        caller's own headers passed on when tracing is off."""
        if attempt_span is not None:
            return attempt_span.traceparent(), attempt_span.tracestate()
        return ex.traceparent, ex.tracestate

    # ---- metrics -----------------------------------------------------------------------------------------------
    def _finish(self, ex: Exchange) -> None:
        """Record one finished request, once: a failure after the first recording never records it again."""
        if ex.finished:
            return
        ex.finished = True
        m = self.metrics
        now = perf_counter()
        endpoint = ex.endpoint.label
        stream = "true" if ex.stream else "false"
        model = ex.model.name if ex.model is not None else _NO_MODEL
        route = ex.deployment
        provider = route.provider if route is not None else _NO_DEPLOYMENT
        deployment = route.name if route is not None else _NO_DEPLOYMENT
        m.requests.labels(model, provider, deployment, endpoint, stream, str(ex.status), ex.key, ex.variant).inc()
        if ex.upstream_reason is not None and route is not None:
            m.upstream_errors.labels(deployment, ex.upstream_reason).inc()
        if ex.disconnected:
            m.client_disconnects.labels(model, endpoint).inc()
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
                if usage.output:
                    m.tokens.labels(model, provider, key, "output").inc(usage.output)
                cost = route.cost.cost(usage)
                if cost:
                    m.cost.labels(model, provider, key, ex.variant).inc(cost)
                if self.access is not None:
                    self.access.charge(ex.key, usage.input + usage.output, cost)
            if ex.sample is not None and ex.sample.keep and self.sampler is not None:
                self._offer_sample(ex, total, cost)
            if self.index is not None and ex.status == 200 and ex.model is not None:
                self.index.remember(ex.request_id, ex.model.name, ex.variant)
        if ex.span is not None:
            try:
                self._end_span(ex, cost)
            except Exception:  # tracing never fails a request
                log.exception("could not end the trace span of request %s", ex.request_id)

    @staticmethod
    def _span_response(ex: Exchange, response_id: Any, response_model: str | None) -> None:
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
                **({"estimated": True} if ex.usage_estimated else {}),
            },
            latency={"total": total, "ttft": ttft, "per_output_token": per_token},
            cost_usd=cost,
            status=ex.status,
            trace_id=getattr(ex.span, "trace_id", None),
            metadata=draft.metadata,
        )
        if self.sampler.offer(model.name, ex.request_id, sample):
            self.metrics.samples.labels(model.name, "queued").inc()
