"""The request path: validate, route, call the upstream, relay the answer, and measure everything on the way.

Kept lean on purpose (no pydantic models of requests, one JSON parse, bytes-level rewriting of the ``model``
field): every field the client sends reaches the upstream unchanged except ``model`` (mapped to the deployment's
upstream name) and ``stream_options.include_usage`` (always asked for, so streamed requests are costed exactly).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import aiohttp
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.errors import (
    GatewayError,
    bad_request,
    body_too_large,
    error_body,
    error_response,
    model_not_found,
    normalise_upstream_error,
)
from gateway.metrics import GatewayMetrics
from gateway.pricing import Usage
from gateway.request_id import request_id_of
from gateway.routing import DeploymentRoute, ModelRoute
from gateway.sampling import SampleWriter, sampled
from gateway.sse import SSEDecoder
from gateway.upstream import UpstreamClient, UpstreamFailure, classify_exception, classify_http_error

log = logging.getLogger("llmops.gateway")

_JSON_HEADERS = {"content-type": "application/json"}
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
JUDGE_HEADER = "x-llmops-judge"  # judge traffic from the monitors: metered, never sampled again
_NO_MODEL = "unknown"  # label value for requests that never reached a known model (typos stay out of labels)
_NO_DEPLOYMENT = "none"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One proxied OpenAI endpoint: its label, upstream path, the field it requires, and whether it streams."""

    label: str
    path: str
    required: str
    required_types: tuple[type, ...]
    streams: bool


CHAT = Endpoint("chat", "/chat/completions", "messages", (list,), True)
COMPLETIONS = Endpoint("completions", "/completions", "prompt", (str, list), True)
EMBEDDINGS = Endpoint("embeddings", "/embeddings", "input", (str, list), False)


class Exchange:
    """What one request did, for its metrics."""

    __slots__ = (
        "client_wants_usage",
        "deployment",
        "disconnected",
        "endpoint",
        "first_token_at",
        "key",
        "model",
        "own_seconds",
        "request_id",
        "sample",
        "start",
        "status",
        "stream",
        "upstream_reason",
        "usage",
    )

    def __init__(self, endpoint: Endpoint, request_id: str, start: float) -> None:
        self.endpoint = endpoint
        self.request_id = request_id
        self.start = start
        self.model: ModelRoute | None = None
        self.deployment: DeploymentRoute | None = None
        self.stream = False
        self.client_wants_usage = False
        self.key = "anonymous"
        self.status = 200
        self.usage: Usage | None = None
        self.first_token_at: float | None = None
        self.own_seconds = 0.0
        self.upstream_reason: str | None = None
        self.disconnected = False
        self.sample: SampleDraft | None = None  # set when this request is sampled


class SampleDraft:
    """What a sampled request collects for its traffic sample while it runs."""

    __slots__ = ("finish_reason", "logprobs", "metadata", "request", "text", "ts")

    def __init__(self, request: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.ts = time.time()
        self.request = request
        self.metadata = metadata
        self.text: list[str] = []
        self.finish_reason: str | None = None
        self.logprobs: list[float] | None = None

    def collect_choice(self, choice: dict[str, Any]) -> None:
        """Take text, finish reason and logprobs from one choice of a response or stream chunk (index 0 only)."""
        if choice.get("index", 0) != 0:
            return
        delta = choice.get("delta")
        message = delta if isinstance(delta, dict) else choice.get("message")
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        if isinstance(text, str):
            self.text.append(text)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            found = _logprob_values(logprobs)
            if found:
                self.logprobs = (self.logprobs or []) + found

    def collect_response(self, data: dict[str, Any]) -> None:
        choices = data.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict):
                    self.collect_choice(choice)


def _logprob_values(logprobs: dict[str, Any]) -> list[float]:
    """Per-token logprobs from chat (``content[].logprob``) or completions (``token_logprobs``)."""
    content = logprobs.get("content")
    if isinstance(content, list):
        return [v["logprob"] for v in content if isinstance(v, dict) and isinstance(v.get("logprob"), int | float)]
    tokens = logprobs.get("token_logprobs")
    return [v for v in tokens if isinstance(v, int | float)] if isinstance(tokens, list) else []


class Proxy:
    """Handles the proxied endpoints for one gateway app."""

    def __init__(
        self,
        routes: dict[str, ModelRoute],
        metrics: GatewayMetrics,
        client: UpstreamClient,
        max_body_bytes: int,
        sampler: SampleWriter | None = None,
    ) -> None:
        self.routes = routes
        self.metrics = metrics
        self.client = client
        self.max_body_bytes = max_body_bytes
        self.sampler = sampler

    # ---- entry point -------------------------------------------------------------------------------------------
    async def handle(self, request: Request, endpoint: Endpoint) -> Response:
        """Proxy one request to ``endpoint``; every failure becomes an OpenAI-shaped error."""
        ex = Exchange(endpoint, request_id_of(request.scope), perf_counter())
        in_flight = None
        try:
            payload = await self._read_payload(request)
            body = self._prepare(ex, payload, request.headers.get(JUDGE_HEADER) is not None)
            in_flight = self.metrics.in_flight.labels(ex.model.name)  # type: ignore[union-attr]
            in_flight.inc()
            if ex.stream:
                response = await self._stream(ex, body, in_flight)
                in_flight = None  # the stream response decrements it when it ends
                return response
            return await self._unary(ex, body)
        except GatewayError as error:
            ex.status = error.status
            self._finish(ex)
            return error_response(error)
        except UpstreamFailure as failure:
            ex.status = failure.error.status
            ex.upstream_reason = failure.reason
            self._finish(ex)
            return error_response(failure.error)
        except ClientDisconnect:
            ex.status = 499
            ex.disconnected = True
            self._finish(ex)
            return Response(status_code=499)
        except Exception:
            log.exception("unexpected error handling request %s", ex.request_id)
            ex.status = 500
            self._finish(ex)
            return error_response(
                GatewayError(
                    500,
                    "The gateway failed to handle this request.",
                    type="server_error",
                    code="internal_error",
                )
            )
        finally:
            if in_flight is not None:
                in_flight.dec()

    # ---- request side ------------------------------------------------------------------------------------------
    async def _read_payload(self, request: Request) -> dict[str, Any]:
        limit = self.max_body_bytes
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
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
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

    def _prepare(self, ex: Exchange, payload: dict[str, Any], judge_traffic: bool = False) -> bytes:
        """Validate what the gateway itself relies on, decide sampling, route, and build the upstream body."""
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
        if self.sampler is not None:
            if not judge_traffic and sampled(ex.request_id, model.config.sampling.rate):
                ex.sample = SampleDraft(dict(payload), metadata or {})
            else:
                self.metrics.samples.labels(model.name, "skipped").inc()
        deployment = model.choose()
        ex.deployment = deployment
        payload["model"] = deployment.config.model
        if stream and endpoint.streams:
            ex.stream = True
            ex.client_wants_usage = bool(options and options.get("include_usage") is True)
            payload["stream_options"] = {**options, "include_usage": True} if options else {"include_usage": True}
        return orjson.dumps(payload)

    # ---- unary responses ---------------------------------------------------------------------------------------
    async def _unary(self, ex: Exchange, body: bytes) -> Response:
        route = ex.deployment
        assert route is not None
        sent_at = perf_counter()
        ex.own_seconds = sent_at - ex.start
        upstream = await self.client.post(route, ex.endpoint.path, body, ex.request_id)
        raw = await self.client.read(route, upstream)
        received_at = perf_counter()
        if upstream.status >= 400:
            raise classify_http_error(route, upstream.status, raw, upstream.headers)  # type: ignore[arg-type]
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise UpstreamFailure(
                "invalid_response",
                GatewayError(
                    502,
                    f"Upstream deployment '{route.name}' answered with a body that is not a JSON object.",
                    type="upstream_error",
                    code="upstream_invalid_response",
                ),
            )
        ex.usage = Usage.from_openai(data.get("usage"))
        if ex.sample is not None:
            ex.sample.collect_response(data)
        out = raw.replace(route.upstream_model_field, route.public_model_field, 1)
        if out is raw and "model" in data:  # the upstream spaced its JSON differently: rewrite properly
            data["model"] = route.model
            out = orjson.dumps(data)
        ex.own_seconds += perf_counter() - received_at
        self._finish(ex)
        return Response(out, status_code=200, headers=_JSON_HEADERS)

    # ---- streaming responses -----------------------------------------------------------------------------------
    async def _stream(self, ex: Exchange, body: bytes, in_flight: Any) -> Response | StreamRelay:
        route = ex.deployment
        assert route is not None
        ex.own_seconds = perf_counter() - ex.start
        upstream = await self.client.post(route, ex.endpoint.path, body, ex.request_id)
        if upstream.status >= 400:
            raw = await self.client.read(route, upstream)
            raise classify_http_error(route, upstream.status, raw, upstream.headers)  # type: ignore[arg-type]
        if not upstream.content_type.startswith("text/event-stream"):
            upstream.close()
            raise UpstreamFailure(
                "invalid_response",
                GatewayError(
                    502,
                    f"Upstream deployment '{route.name}' did not answer a streaming request with an event stream "
                    f"(content-type {upstream.content_type!r}).",
                    type="upstream_error",
                    code="upstream_invalid_response",
                ),
            )
        return StreamRelay(self, ex, upstream, in_flight)

    # ---- metrics -----------------------------------------------------------------------------------------------
    def _finish(self, ex: Exchange) -> None:
        """Record one finished request."""
        m = self.metrics
        now = perf_counter()
        endpoint = ex.endpoint.label
        stream = "true" if ex.stream else "false"
        model = ex.model.name if ex.model is not None else _NO_MODEL
        route = ex.deployment
        provider = route.provider if route is not None else _NO_DEPLOYMENT
        deployment = route.name if route is not None else _NO_DEPLOYMENT
        m.requests.labels(model, provider, deployment, endpoint, stream, str(ex.status), ex.key).inc()
        if ex.upstream_reason is not None and route is not None:
            m.upstream_errors.labels(deployment, ex.upstream_reason).inc()
        if ex.disconnected:
            m.client_disconnects.labels(model, endpoint).inc()
        if route is None:
            return
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
                m.cost.labels(model, provider, key).inc(cost)
        else:
            cost = 0.0
        if ex.sample is not None and self.sampler is not None:
            self._offer_sample(ex, total, cost)

    def _offer_sample(self, ex: Exchange, total: float, cost: float) -> None:
        """Hand the finished request's sample to the writer (never waits)."""
        draft, route, usage = ex.sample, ex.deployment, ex.usage
        assert draft is not None and route is not None and self.sampler is not None
        ttft = ex.first_token_at - ex.start if ex.first_token_at is not None else None
        per_token = None
        if ttft is not None and usage is not None and usage.output > 1:
            per_token = (total - ttft) / (usage.output - 1)
        sample = {
            "id": ex.request_id,
            "ts": draft.ts,
            "model": route.model,
            "provider": route.provider,
            "deployment": route.name,
            "variant": None,
            "endpoint": ex.endpoint.label,
            "key": ex.key,
            "request": draft.request,
            "response": {"text": "".join(draft.text), "finish_reason": draft.finish_reason, "logprobs": draft.logprobs},
            "usage": {
                "input": usage.input if usage else 0,
                "output": usage.output if usage else 0,
                "cached": usage.cached_input if usage else 0,
            },
            "latency": {"total": total, "ttft": ttft, "per_output_token": per_token},
            "cost_usd": cost,
            "status": ex.status,
            "trace_id": None,
            "metadata": draft.metadata,
        }
        if self.sampler.offer(route.model, ex.request_id, sample):
            self.metrics.samples.labels(route.model, "queued").inc()


class StreamRelay:
    """An ASGI response that relays the upstream's SSE events as they arrive, rewriting ``model``, taking the
    usage chunk (dropped unless the client asked for it), spotting errors sent inside the 200 stream, and
    cancelling the upstream call when the client goes away."""

    def __init__(self, proxy: Proxy, ex: Exchange, upstream: aiohttp.ClientResponse, in_flight: Any) -> None:
        self.proxy = proxy
        self.ex = ex
        self.upstream = upstream
        self.in_flight = in_flight
        self.saw_done = False
        self.saw_error = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ex = self.ex
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
            if pump.done():
                watch.cancel()
                pump.result()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
                ex.disconnected = True
        except OSError:  # the client went away while we were writing to it
            ex.disconnected = True
        except UpstreamFailure as failure:  # the upstream broke off after the stream started
            ex.upstream_reason = failure.reason
            ex.status = failure.error.status
            await self._send_error_event(send, failure.error)
        finally:
            if not watch.done():
                watch.cancel()
            if not pump.done():
                pump.cancel()
            self.upstream.close()
            if ex.disconnected:
                ex.status = 499
            elif not self.saw_done and not self.saw_error and ex.upstream_reason is None:
                ex.status = 502
                ex.upstream_reason = "invalid_response"
            self.in_flight.dec()
            self.proxy._finish(ex)

    async def _send_error_event(self, send: Send, error: GatewayError) -> None:
        event = b"data: " + orjson.dumps(error.body()) + b"\n\n"
        try:
            await send({"type": "http.response.body", "body": event, "more_body": False})
        except OSError:
            self.ex.disconnected = True

    async def _pump(self, send: Send) -> None:
        ex = self.ex
        route = ex.deployment
        assert route is not None
        decoder = SSEDecoder()
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        try:
            async for chunk in self.upstream.content.iter_any():
                started = perf_counter()
                out = [self._relay_event(event, started) for event in decoder.feed(chunk)]
                body = b"".join(part for part in out if part)
                ex.own_seconds += perf_counter() - started
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise classify_exception(route, exc) from exc
        tail = decoder.flush()
        if tail is not None:
            body = self._relay_event(tail, perf_counter())
            if body:
                await send({"type": "http.response.body", "body": body, "more_body": True})

    def _relay_event(self, event: bytes, now: float) -> bytes | None:
        """One SSE event (without its blank-line terminator) → the bytes to forward, or ``None`` to drop it."""
        if not event.startswith(b"data:"):
            return event + b"\n\n"  # comments and other fields pass through untouched
        data = event[6:] if event[5:6] == b" " else event[5:]
        if data == b"[DONE]":
            self.saw_done = True
            return b"data: [DONE]\n\n"
        ex = self.ex
        if ex.first_token_at is None and _carries_output(data):
            ex.first_token_at = now
        if b'"error"' in data:
            error = _stream_error(data)
            if error is not None:
                self.saw_error = True
                code = error["error"].get("code")
                ex.status = int(code) if code and str(code).isdigit() and 400 <= int(code) < 600 else 502
                ex.upstream_reason = "http_4xx" if ex.status < 500 else "http_5xx"
                return b"data: " + orjson.dumps(error) + b"\n\n"
        chunk: Any = None
        if ex.sample is not None:
            chunk = _loads_or_none(data)
            if isinstance(chunk, dict) and isinstance(chunk.get("choices"), list):
                for choice in chunk["choices"]:
                    if isinstance(choice, dict):
                        ex.sample.collect_choice(choice)
        if b'"usage"' in data and b'"usage":null' not in data:
            if chunk is None:
                chunk = _loads_or_none(data)
            if isinstance(chunk, dict):
                usage = Usage.from_openai(chunk.get("usage"))
                if usage is not None:
                    ex.usage = usage
                    if chunk.get("choices") == [] and not ex.client_wants_usage:
                        return None
        route = ex.deployment
        assert route is not None
        rewritten = data.replace(route.upstream_model_field, route.public_model_field, 1)
        if rewritten is data and b'"model"' in data:
            chunk = _loads_or_none(data)
            if isinstance(chunk, dict) and "model" in chunk:
                chunk["model"] = route.model
                rewritten = orjson.dumps(chunk)
        return b"data: " + rewritten + b"\n\n"


def _carries_output(data: bytes) -> bool:
    """Whether a chunk holds the first generated output (text, reasoning or a tool call), so that time to first
    token is not fooled by a role-only first chunk some servers send before generation starts. Parses only the
    chunks before the first token."""
    chunk = _loads_or_none(data)
    if not isinstance(chunk, dict):
        return False
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if choice.get("text"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning") or delta.get("tool_calls")
        ):
            return True
    return False


def _loads_or_none(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _stream_error(data: bytes) -> dict[str, Any] | None:
    """An ``{"error": ...}`` event sent inside a 200 stream, normalised to OpenAI's shape; ``None`` otherwise."""
    chunk = _loads_or_none(data)
    if not isinstance(chunk, dict) or "error" not in chunk or "choices" in chunk:
        return None
    message, err_type, param, code = normalise_upstream_error(chunk, "The upstream reported an error mid-stream.")
    return error_body(message, err_type, param, code)


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
