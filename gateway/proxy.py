"""The request path: validate, route, call the upstream (retrying and falling back), relay the answer, and
measure everything on the way.

Kept lean on purpose (no pydantic models of requests, one JSON parse, bytes-level rewriting of the ``model``
field): every field the client sends reaches the upstream unchanged except ``model`` (mapped to the deployment's
upstream name), ``metadata`` (kept for the monitors, never sent upstream) and ``stream_options.include_usage``
(always asked for, so streamed requests are costed exactly). What differs between upstream APIs is the deployment's
provider's business (``gateway/providers/``); what a finished request recorded is :mod:`gateway.recording`'s.

In order: :meth:`Proxy.handle` starts the request span, authenticates, reads and checks the body (``_prepare``:
model, variant, sampling), admits the key (limits, budget), then ``_attempts`` tries the attempt plan (deployments,
retries, fallbacks), each attempt answered by ``_unary`` or ``_stream``; every way out ends in ``Recorder.finish``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from time import perf_counter
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway import fan_out
from gateway import request_fields as fields
from gateway.drain import SHUTTING_DOWN, Drain
from gateway.errors import (
    GatewayError,
    UpstreamFailure,
    bad_request,
    error_response,
    model_not_found,
)
from gateway.exchange import CHAT, Endpoint, Exchange, SampleDraft
from gateway.health import DeploymentHealth
from gateway.inbound import TRANSLATORS
from gateway.metrics import GatewayMetrics, LabelCache
from gateway.recording import Recorder
from gateway.relay import StreamRelay, TranslatedEvents
from gateway.request_id import request_id_of
from gateway.routing import DeploymentRoute, ModelRoute, attempt_plan
from gateway.sampling import SampleWriter
from gateway.upstream import FailureLog, UpstreamClient
from gateway.usage_estimate import PromptCalibration, estimate_stream_usage
from llmops.config import RoutingConfig
from llmops.contract import JUDGE_HEADER, TRAFFIC_HEADER, sampled, sampling_key, traffic_kind

if TYPE_CHECKING:
    import aiohttp
    from prometheus_client.metrics import Gauge

    from gateway.access import AccessControl
    from gateway.providers.base import Answer, StreamEvents
    from gateway.request_index import RequestIndex
    from gateway.tracing import AttemptSpan, GatewayTracer

log = logging.getLogger("llmops.gateway")

# Failures inside a started stream that are the deployment's (passive health counts them).
_DEPLOYMENT_FAULTS = frozenset({"timeout", "connect", "invalid_response", "http_5xx"})


_INTERNAL_ERROR = GatewayError(
    500, "The gateway failed to handle this request.", type="server_error", code="internal_error"
)


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
        tracer: GatewayTracer | None = None,
        access: AccessControl | None = None,
        index: RequestIndex | None = None,
        sampling_secret: str | None = None,
        drain: Drain | None = None,
    ) -> None:
        self.routes = routes
        self.sampling_key = sampling_key(sampling_secret)
        self.drain = drain  # requests still running at the shutdown deadline are cut
        self.metrics = metrics
        self.client = client
        self.max_body_bytes = max_body_bytes
        self.sampler = sampler
        self.routing = routing or RoutingConfig()
        self.tracer = tracer if tracer is not None and tracer.enabled else None  # None: tracing costs nothing
        self.capture_content = bool(self.tracer is not None and self.tracer.capture_content)
        self.access = access  # keys, rate limits and budgets, or None: open
        self.recorder = Recorder(
            metrics, access=access, sampler=sampler, index=index, capture_content=self.capture_content
        )
        self._in_flight = LabelCache(metrics.in_flight)
        self.health = DeploymentHealth(self.routing, on_change=self._health_changed)
        self.calibration = PromptCalibration()  # per deployment: real prompt tokens / the character rule's
        self.failures = FailureLog()  # deployments failing on their side, said in the log (rate-limited)
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
    async def handle(self, request: Request, endpoint: Endpoint) -> Response | StreamRelay:
        """Proxy one request to ``endpoint``; every failure becomes an error in the endpoint's own shape."""
        ex = Exchange(endpoint, request_id_of(request.scope), perf_counter())
        in_flight = None
        cut = self.drain.add_current_task(ex) if self.drain is not None else None  # cancelled at the deadline
        try:
            if self.tracer is not None:  # first, so a request refused below has its span too
                ex.span = self.tracer.start_request(operation=endpoint.operation, headers=request.scope["headers"])
            else:
                ex.traceparent = request.headers.get("traceparent")
                if ex.traceparent is not None:
                    ex.tracestate = request.headers.get("tracestate")
            if self.access is not None:
                ex.key = self.access.authenticate(fields.credentials(request))
            payload = ex.payload = await self._read_payload(request)
            try:
                ex.traffic = traffic_kind(request.headers.get(TRAFFIC_HEADER), request.headers.get(JUDGE_HEADER))
                if endpoint.api == "anthropic":
                    ex.beta = request.headers.get("anthropic-beta")
                self._prepare(ex, payload, fields.variant_pin(request, ex, self.access))
            finally:
                if ex.span is not None:
                    try:
                        Recorder.describe_request(ex, payload)
                    except Exception:  # tracing never fails a request, nor hides why it was refused
                        log.exception("could not describe the trace span of request %s", ex.request_id)
            if self.access is not None:
                await self.access.admit(ex.key, self.metrics)
            assert ex.model is not None  # _prepare resolved it
            in_flight = self._in_flight.get(ex.model.name)
            in_flight.inc()
            response = await self._attempts(ex, payload, in_flight)
            if isinstance(response, StreamRelay):
                in_flight = None  # the relay decrements it when the stream ends
            return response
        except GatewayError as error:  # a bounded name for traces: the OpenAI code, else its type
            return self._refuse(ex, error, error.code or error.type)
        except UpstreamFailure as failure:
            return self._refuse(ex, failure.error, failure.reason)
        except ClientDisconnect:
            ex.disconnected = True
            self._end(ex, 499, "client_disconnected")
            return Response(status_code=499)
        except asyncio.CancelledError:  # the server shutting down: recorded (and its span ended), then cancelled
            if ex.shutdown_cut:  # at the drain deadline: answered 503 and counted
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                return self._refuse(ex, SHUTTING_DOWN, SHUTTING_DOWN.code or "")
            self._end(ex, 499, "cancelled")
            raise
        except Exception:
            log.exception("unexpected error handling request %s", ex.request_id)
            return self._refuse(ex, _INTERNAL_ERROR, "internal_error")
        finally:
            if in_flight is not None:
                in_flight.dec()
            if cut is not None and self.drain is not None:
                self.drain.discard(cut)

    def _end(self, ex: Exchange, status: int, error_type: str) -> None:
        """Record a request that ended before (or without) an answer."""
        ex.status = status
        ex.error_type = error_type
        self.recorder.finish(ex)

    def _refuse(self, ex: Exchange, error: GatewayError, error_type: str) -> Response:
        """Record a failed request and answer with its OpenAI-shaped error."""
        self._end(ex, error.status, error_type)
        translator = TRANSLATORS.get(ex.endpoint.label) if ex.endpoint.api != "openai" else None
        response = error_response(error, body=translator.error_payload(error) if translator is not None else None)
        response.headers.update(ex.response_headers())
        return response

    # ---- request side ------------------------------------------------------------------------------------------
    async def _read_payload(self, request: Request) -> dict[str, Any]:
        raw = await fields.read_body(request, self.max_body_bytes)
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

    def _prepare(self, ex: Exchange, payload: dict[str, Any], pin: str | None = None) -> None:
        """Validate what the gateway itself relies on, choose the variant (or take the pinned one), decide sampling."""
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
        extras = fields.gateway_extras(endpoint, payload)  # ours (reference, contexts): never sent upstream
        translator = TRANSLATORS.get(endpoint.label)
        if translator is not None:
            translator.check_request(payload)
        if stream and endpoint.streams:
            ex.stream = True
            ex.client_wants_usage = bool(options and options.get("include_usage") is True)
        variant = model.choose_variant(fields.sticky_user(endpoint, payload) or ex.request_id, pin)
        if variant is not None:
            ex.variant = variant.name
        if self.sampler is not None:
            if ex.traffic == "user" and sampled(ex.request_id, model.config.sampling.rate, self.sampling_key):
                ex.sample = SampleDraft(fields.as_chat(translator, payload), extras)
            else:
                self.metrics.samples.labels(model.name, "skipped").inc()
        if ex.sample is None and self.capture_content:
            ex.sample = SampleDraft(fields.as_chat(translator, payload), {}, keep=False)

    # ---- attempts: deployments, retries, fallbacks -------------------------------------------------------------
    async def _attempts(self, ex: Exchange, payload: dict[str, Any], in_flight: Gauge) -> Response | StreamRelay:
        model = ex.model
        assert model is not None
        variant = next((v for v in model.variants if v.name == ex.variant), None) if ex.variant else None
        settings = self.routing
        plan = attempt_plan(model, variant, self.health, settings.max_attempts, endpoint=ex.endpoint)
        last: UpstreamFailure | None = None
        unservable: GatewayError | None = None  # why a deployment could not take this request (its provider)
        previous: DeploymentRoute | None = None
        considered: DeploymentRoute | None = None  # the last deployment tried or skipped
        for attempt, route in enumerate(plan):
            switched = considered is not None and route.model != considered.model
            considered = route
            try:
                one_call, calls = fan_out.split(ex, self._upstream_payload(ex, payload, route), route)
                body = route.adapter.encode_request(ex, one_call, route)
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
            response: Response | StreamRelay
            try:
                if ex.stream:
                    response = await self._stream(ex, body, in_flight, attempt_span, began)
                else:
                    response = await self._unary(ex, body, attempt_span, calls)
            except UpstreamFailure as failure:
                ex.retry_seconds += perf_counter() - attempt_at
                self.metrics.upstream_errors.labels(route.name, failure.reason).inc()
                self.failures.note(route, failure)
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

    @staticmethod
    def _upstream_payload(ex: Exchange, payload: dict[str, Any], route: DeploymentRoute) -> dict[str, Any]:
        """The request as this attempt's deployment takes it: as it is where the deployment answers the endpoint
        itself, else translated to chat completions (once per request); sets ``ex.upstream_endpoint``."""
        if ex.endpoint.label in route.native or not ex.endpoint.via_chat:
            ex.upstream_endpoint = ex.endpoint
            return payload
        ex.upstream_endpoint = CHAT
        if ex.chat_payload is None:
            ex.chat_payload = TRANSLATORS[ex.endpoint.label].to_chat_request(payload)
            ex.client_wants_usage = True  # the translation needs the usage chunk
        return ex.chat_payload

    # ---- unary responses ---------------------------------------------------------------------------------------
    async def _unary(self, ex: Exchange, body: bytes, attempt_span: AttemptSpan | None, calls: int = 1) -> Response:
        route = ex.deployment
        assert route is not None and ex.model is not None
        sent_at = perf_counter()
        ex.own_seconds = sent_at - ex.start - ex.retry_seconds
        traceparent, tracestate = self._trace_headers(ex, attempt_span)
        if calls == 1:
            answer = await self._call(ex, route, body, traceparent, tracestate)
        else:  # n choices from a provider that answers one per call; the first failure fails them all
            tasks = [asyncio.ensure_future(self._call(ex, route, body, traceparent, tracestate)) for _ in range(calls)]
            try:
                answer = fan_out.merge(list(await asyncio.gather(*tasks)))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        received_at = perf_counter()
        ex.usage = answer.usage
        data = answer.data
        out = answer.body
        if ex.upstream_endpoint is not ex.endpoint:  # answered through chat: back to the client's format
            out = orjson.dumps(TRANSLATORS[ex.endpoint.label].to_response(data, ex.model.name))
        if ex.sample is not None:
            ex.sample.collect_response(data)
        choices = data.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            ex.finish_reason = choices[0].get("finish_reason")
        if ex.span is not None:
            Recorder.span_response(ex, data.get("id"), answer.response_model)
        if attempt_span is not None:
            attempt_span.end(200)  # before the request span ends (it closes any attempt still open, without status)
        ex.own_seconds += perf_counter() - received_at
        self.recorder.finish(ex)
        headers = ex.response_headers()
        headers["content-type"] = "application/json"
        return Response(out, status_code=200, headers=headers)

    async def _call(
        self, ex: Exchange, route: DeploymentRoute, body: bytes, traceparent: str | None, tracestate: str | None
    ) -> Answer:
        """One unary exchange with the deployment, decoded by its provider."""
        upstream = await self._post(ex, route, body, traceparent, tracestate)
        raw = await self.client.read(route, upstream)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise _invalid(route, "answered with a body that is not a JSON object")
        return route.adapter.decode_response(ex, raw, data, route)

    async def _post(
        self, ex: Exchange, route: DeploymentRoute, body: bytes, traceparent: str | None, tracestate: str | None
    ) -> aiohttp.ClientResponse:
        """Send the attempt's request; its response once the headers came, or the upstream's HTTP error raised."""
        upstream = await self.client.post(
            route,
            route.adapter.path(ex.upstream_endpoint),
            body,
            ex.request_id,
            traceparent,
            tracestate,
            fields.relayed_headers(ex),
        )
        if upstream.status >= 400:
            raw = await self.client.read(route, upstream)
            raise self.client.http_error(
                route, upstream.status, raw, upstream.headers, ex.request_id, fields.names_upstream_state(ex)
            )
        return upstream

    # ---- streaming responses -----------------------------------------------------------------------------------
    async def _stream(
        self, ex: Exchange, body: bytes, in_flight: Gauge, attempt_span: AttemptSpan | None, began: float
    ) -> StreamRelay:
        route = ex.deployment
        assert route is not None and ex.model is not None
        sent_at = perf_counter()
        ex.own_seconds = sent_at - ex.start - ex.retry_seconds
        traceparent, tracestate = self._trace_headers(ex, attempt_span)
        upstream = await self._post(ex, route, body, traceparent, tracestate)
        if not upstream.content_type.startswith("text/event-stream"):
            upstream.close()
            raise _invalid(
                route,
                f"did not answer a streaming request with an event stream (content-type {upstream.content_type!r})",
            )
        events: StreamEvents = route.adapter.stream_events(ex)
        if ex.upstream_endpoint is not ex.endpoint:  # answered through chat: back to the client's format
            events = TranslatedEvents(events, TRANSLATORS[ex.endpoint.label].chat_stream(ex.model.name))

        model = ex.model

        def on_end(done: Exchange) -> None:
            in_flight.dec()
            if done.upstream_reason in _DEPLOYMENT_FAULTS:  # broke off, timed out, or a 5xx error event
                self.health.failure(route.key)
            elif done.client_stalled or done.shutdown_cut or (done.disconnected and done.first_token_at is None):
                self.health.release(route.key)  # the client left before any output, or did not read: no verdict
            else:  # complete, a client-side error event, or the client left after output: the deployment served
                self.health.success(route.key, began)
            if done.usage_final and done.usage is not None:  # calibrates the estimate of cut streams
                self.calibration.observe(route.key, done.payload, done.usage.input)
            estimate = estimate_stream_usage(
                done.usage,
                done.payload,
                done.output_events,
                final=done.usage_final,
                client_left=done.disconnected,
                prompt_factor=self.calibration.factor(route.key),
            )
            if estimate is not None:  # before the span records the usage
                done.usage = estimate
                done.usage_estimated = True
                self.metrics.usage_estimated.labels(model.name).inc()
            if attempt_span is not None:
                Recorder.span_response(done, None, route.config.model)
                if done.status >= 400 or done.disconnected:
                    attempt_span.set_error(
                        done.upstream_reason
                        or done.error_type
                        or ("client_disconnected" if done.disconnected else str(done.status))
                    )
                attempt_span.end(done.status)
            if done.status >= 400 and done.error_type is None:
                done.error_type = done.upstream_reason or (
                    "client_disconnected" if done.disconnected else str(done.status)
                )
            self.recorder.finish(done)

        return StreamRelay(ex, upstream, events, ex.response_headers(), on_end, sent_at, self.drain)

    @staticmethod
    def _trace_headers(ex: Exchange, attempt_span: AttemptSpan | None) -> tuple[str | None, str | None]:
        """``traceparent`` and ``tracestate`` for the upstream: this attempt's span with the caller's state, or the
        caller's own headers passed on when tracing is off."""
        if attempt_span is not None:
            return attempt_span.traceparent(), attempt_span.tracestate()
        return ex.traceparent, ex.tracestate
