"""OpenTelemetry tracing of gateway requests, with the GenAI semantic conventions.

One **SERVER** span per client request, every request including those refused before any upstream is tried (bad
JSON, unknown model, a bad key, a rate limit), named ``"{operation} {public model}"`` (``"{operation}"`` until the
model is known, and for an unknown one), continues the caller's W3C ``traceparent``/``tracestate`` when it sends one.
Each try against an upstream deployment is a **CLIENT** child span, named ``"{operation} {upstream model}"``: that is
the span the GenAI conventions describe (a client call to a model), so it carries ``server.address``/``server.port``
and the upstream's own model name, and a retried or fallen-back request shows as several CLIENT children under one
SERVER span. Both spans carry the ``gen_ai.*`` request attributes and the response model, id and finish reasons.

Token usage (``gen_ai.usage.*``) goes **only on the CLIENT span** that produced it: GenAI-aware backends add usage up
over a trace, and the same tokens on the SERVER span would be counted twice. The SERVER span carries the request's
totals under our own names instead (``llmops.usage.*``, ``llmops.cost_usd``), which no backend sums as model usage.

Prompt and answer text are never recorded unless ``telemetry.capture_content`` is true; then they go on the SERVER span
as ``gen_ai.input.messages`` / ``gen_ai.output.messages`` (JSON, the conventions' message/parts shape).

Without an ``otlp_endpoint`` (and no exporter given) the tracer is disabled (``enabled`` is false and
:meth:`GatewayTracer.start_request` returns ``None``): the gateway then holds no tracer at all, so the request path
does no span, context or header work. The tracer uses its own :class:`~opentelemetry.sdk.trace.TracerProvider`; the
global provider is left alone. Spans are never made current (no context attach), so a span may be used from any
task: the streaming relay ends it in its own task.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from llmops.config import TelemetryConfig

__all__ = [
    "AttemptSpan",
    "GatewayTracer",
    "RequestSpan",
    "provider_name",
]

# Our config's provider names → `gen_ai.provider.name` well-known values.
_PROVIDER_NAMES = {"openai_compatible": "openai", "anthropic": "anthropic"}
# Longest text kept per message part when content capture is on (spans are not a transcript store).
_MAX_PART_CHARS = 32 * 1024
_PROPAGATOR = TraceContextTextMapPropagator()
_EMPTY_CONTEXT = Context()
_INSTRUMENTATION = "llmops.gateway"
# OpenMetrics: exemplar label names and values, 128 characters together ("trace_id" + 32 + "request_id" + this).
_MAX_EXEMPLAR_REQUEST_ID = 128 - len("trace_id") - 32 - len("request_id")


def latest_genai_names(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``OTEL_SEMCONV_STABILITY_OPT_IN`` (a comma-separated list) opts in to the GenAI conventions' latest
    experimental names (``gen_ai_latest_experimental``), as OpenTelemetry's instrumentations read it."""
    values = environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    return "gen_ai_latest_experimental" in {value.strip() for value in values.split(",")}


def provider_name(provider: str) -> str:
    """``gen_ai.provider.name`` for one of our deployment providers (unknown ones pass through)."""
    return _PROVIDER_NAMES.get(provider, provider)


def _traceparent(span: trace.Span) -> str | None:
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _tracestate(span: trace.Span) -> str | None:
    """The W3C ``tracestate`` the span carries (the caller's vendor entries), or ``None`` when empty."""
    header = span.get_span_context().trace_state.to_header()
    return header or None


def _parent_context(headers: Iterable[tuple[bytes, bytes]]) -> Context:
    """The caller's trace context from ASGI headers (lower-case names), or an empty context (a new trace)."""
    carrier: dict[str, str] | None = None
    for name, value in headers:
        if name == b"traceparent" or name == b"tracestate":
            if carrier is None:
                carrier = {}
            carrier[name.decode("latin-1")] = value.decode("latin-1")
    if carrier is None or "traceparent" not in carrier:
        return _EMPTY_CONTEXT
    return _PROPAGATOR.extract(carrier, context=_EMPTY_CONTEXT)


# ---- content capture (opt-in) -----------------------------------------------------------------------------------
def _clip(text: str) -> str:
    return text if len(text) <= _MAX_PART_CHARS else text[:_MAX_PART_CHARS] + "…[truncated]"


def _parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content (a string or a list of typed parts) → GenAI convention parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": _clip(content)}]
    parts: list[dict[str, Any]] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                parts.append({"type": "text", "content": _clip(part)})
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append({"type": "text", "content": _clip(part["text"])})
            elif isinstance(part, dict):  # images, audio, files: record the kind, not the payload
                parts.append({"type": str(part.get("type", "unknown"))})
    return parts


def _input_messages(prompt: Any) -> list[dict[str, Any]]:
    """Chat ``messages``, a completion ``prompt`` (string or list) or embeddings ``input`` → GenAI input messages."""
    if isinstance(prompt, str):
        return [{"role": "user", "parts": _parts(prompt)}]
    messages: list[dict[str, Any]] = []
    if not isinstance(prompt, list):
        return messages
    for message in prompt:
        if not isinstance(message, dict):
            messages.append({"role": "user", "parts": _parts(message if isinstance(message, str) else str(message))})
            continue
        role = str(message.get("role", "user"))
        parts = _parts(message.get("content"))
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                function = call.get("function") or {}
                parts.append(
                    {
                        "type": "tool_call",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "arguments": function.get("arguments"),
                    }
                )
        if role == "tool":
            response = parts[0].get("content") if parts else None
            parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"), "response": response}]
        messages.append({"role": role, "parts": parts})
    return messages


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# ---- spans ------------------------------------------------------------------------------------------------------
class AttemptSpan:
    """One try against one upstream deployment: a CLIENT span, child of the request span."""

    __slots__ = ("_ended", "_errored", "_span")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._ended = False
        self._errored = False

    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` value to send upstream with this attempt (this span as the parent)."""
        return _traceparent(self._span)

    def tracestate(self) -> str | None:
        """The W3C ``tracestate`` to send upstream with ``traceparent`` (the caller's, carried on)."""
        return _tracestate(self._span)

    def set_error(self, error_type: str) -> None:
        """Mark the attempt failed: ``error.type`` (e.g. ``timeout``, ``connect``, ``http_5xx``), status ERROR."""
        if self._ended:
            return
        self._errored = True
        self._span.set_attribute("error.type", error_type)
        self._span.set_status(Status(StatusCode.ERROR))

    def end(self, status: int | None = None) -> None:
        """End the attempt with the upstream's HTTP status, if one arrived (>= 400 without a prior
        :meth:`set_error` sets ``error.type`` to the status code). Ending twice does nothing."""
        if self._ended:
            return
        span = self._span
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 400 and not self._errored:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
        self._ended = True
        span.end()


class RequestSpan:
    """One client request through the gateway: a SERVER span and its attempts."""

    __slots__ = (
        "_attempt",
        "_capture",
        "_ended",
        "_finish_reasons",
        "_latest",
        "_operation",
        "_request_attributes",
        "_span",
        "_status_set",
        "_tracer",
        "recorded",
        "trace_id",
    )

    #: Longest unknown model name kept on a span (the name comes from the client).
    MAX_UNKNOWN_MODEL_CHARS = 256

    def __init__(
        self,
        tracer: trace.Tracer,
        span: trace.Span,
        operation: str,
        request_attributes: dict[str, Any],
        capture_content: bool,
        latest: bool = False,
    ) -> None:
        self._tracer = tracer
        self._latest = latest  # the latest (experimental) GenAI attribute names as well
        self._span = span
        self._operation = operation
        self._request_attributes = request_attributes  # copied onto each attempt (set_request fills it)
        self._capture = capture_content
        self._attempt: AttemptSpan | None = None
        self._ended = False
        self._status_set = False
        self._finish_reasons: list[str] | None = None
        ctx = span.get_span_context()
        #: The trace id (32 hex digits): for the ``x-trace-id`` response header and the traffic sample.
        self.trace_id: str | None = f"{ctx.trace_id:032x}" if ctx.is_valid else None
        #: Whether this trace is recorded (sampled): only then do metrics point at it (exemplars).
        self.recorded = ctx.is_valid and ctx.trace_flags.sampled

    def exemplar(self, request_id: str) -> dict[str, str] | None:
        """Exemplar labels that lead from a histogram bucket to this request: its trace id and request id, or None
        when the trace is not recorded. OpenMetrics allows 128 characters of exemplar label names and values
        together: a request id too long for that is left out."""
        if not self.recorded or self.trace_id is None:
            return None
        if len(request_id) <= _MAX_EXEMPLAR_REQUEST_ID:
            return {"trace_id": self.trace_id, "request_id": request_id}
        return {"trace_id": self.trace_id}

    def set_request(
        self,
        *,
        request_model: str,
        provider: str,
        stream: bool,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> None:
        """Describe the request once its model is known: names the span ``"{operation} {request_model}"`` and sets
        the ``gen_ai.request.*`` attributes, which each later attempt copies (``provider``: our config's name)."""
        if self._ended:
            return
        attributes = self._request_attributes
        attributes["gen_ai.provider.name"] = provider_name(provider)
        attributes["gen_ai.request.model"] = request_model
        attributes["gen_ai.request.stream"] = stream
        if max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = max_tokens
        if temperature is not None:
            attributes["gen_ai.request.temperature"] = temperature
        self._span.update_name(f"{self._operation} {request_model}")
        self._span.set_attributes(attributes)

    def set_unknown_model(self, requested: str) -> None:
        """Record a model name the gateway does not serve (clipped), without putting it in the span name."""
        if not self._ended:
            self._span.set_attribute("gen_ai.request.model", requested[: self.MAX_UNKNOWN_MODEL_CHARS])

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        """Set gateway attributes (``llmops.*``) on the request span; ``None`` values are left out."""
        if not self._ended:
            self._span.set_attributes({name: value for name, value in attributes.items() if value is not None})

    def start_attempt(
        self,
        *,
        deployment: str,
        upstream_model: str,
        server_address: str,
        server_port: int | None,
        attempt: int,
        provider: str | None = None,
    ) -> AttemptSpan:
        """Start the CLIENT span of one upstream try (``attempt`` 1 for the first, 2 for the first retry, ...).
        A previous attempt still open is ended first. ``provider`` (our config's name) overrides the request's
        provider, for a fallback to a model served elsewhere."""
        previous = self._attempt
        if previous is not None:
            previous.end()
        attributes = dict(self._request_attributes)
        attributes["gen_ai.request.model"] = upstream_model
        if provider is not None:
            attributes["gen_ai.provider.name"] = provider_name(provider)
        attributes["server.address"] = server_address
        if server_port is not None:
            attributes["server.port"] = server_port
        attributes["llmops.deployment"] = deployment
        attributes["llmops.attempt"] = attempt
        span = self._tracer.start_span(
            f"{self._operation} {upstream_model}",
            context=trace.set_span_in_context(self._span, _EMPTY_CONTEXT),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        self._attempt = AttemptSpan(span)
        return self._attempt

    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` to send upstream: the current attempt's span, or the request span before any."""
        attempt = self._attempt
        return _traceparent(attempt._span if attempt is not None else self._span)

    def set_response(
        self,
        *,
        response_model: str | None,
        response_id: str | None,
        finish_reasons: Sequence[str] | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> None:
        """Record what the upstream answered: model, id and finish reasons on the request span and on the current
        attempt if it is still open (call it before ending the attempt), token usage on that attempt only (see the
        module docstring). ``None`` values are left out. Prompt-cache reads and writes and reasoning tokens (parts of
        the input and output counts) go on it under the latest GenAI names only when
        ``OTEL_SEMCONV_STABILITY_OPT_IN`` asks for them (``gen_ai_latest_experimental``), and only when non-zero."""
        attributes: dict[str, Any] = {}
        if response_model:
            attributes["gen_ai.response.model"] = response_model
        if response_id:
            attributes["gen_ai.response.id"] = response_id
        if finish_reasons:
            self._finish_reasons = [str(reason) for reason in finish_reasons]
            attributes["gen_ai.response.finish_reasons"] = self._finish_reasons
        if self._ended:
            return
        if attributes:
            self._span.set_attributes(attributes)
        attempt = self._attempt
        if attempt is None or attempt._ended:
            return
        if input_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = input_tokens
        if output_tokens is not None:
            attributes["gen_ai.usage.output_tokens"] = output_tokens
        if self._latest:
            if cache_read_tokens:
                attributes["gen_ai.usage.cache_read.input_tokens"] = cache_read_tokens
            if cache_write_tokens:
                attributes["gen_ai.usage.cache_write.input_tokens"] = cache_write_tokens
            if reasoning_tokens:
                attributes["gen_ai.usage.reasoning.output_tokens"] = reasoning_tokens
        if attributes:
            attempt._span.set_attributes(attributes)

    def set_content(self, prompt_messages: Any, completion_text: str | None) -> None:
        """Record the prompt (chat ``messages``, a completion ``prompt`` or embeddings ``input``) and the answer
        text as ``gen_ai.input.messages`` / ``gen_ai.output.messages``, only when ``capture_content`` is on."""
        if not self._capture or self._ended:
            return
        self._span.set_attribute("gen_ai.input.messages", _json(_input_messages(prompt_messages)))
        if completion_text is not None:
            output: dict[str, Any] = {"role": "assistant", "parts": _parts(completion_text)}
            if self._finish_reasons:
                output["finish_reason"] = self._finish_reasons[0]
            self._span.set_attribute("gen_ai.output.messages", _json([output]))

    def set_error(self, error_type: str, status: int) -> None:
        """Mark the request failed: ``error.type``, ``http.response.status_code``, status ERROR."""
        if self._ended:
            return
        span = self._span
        span.set_attribute("error.type", error_type)
        span.set_attribute("http.response.status_code", status)
        span.set_status(Status(StatusCode.ERROR))
        self._status_set = True

    def end(self, status: int | None = None) -> None:
        """End the request span (and an attempt left open); ``status`` is the HTTP status sent to the client, if
        :meth:`set_error` did not record one. Ending twice does nothing."""
        if self._ended:
            return
        attempt = self._attempt
        if attempt is not None:
            attempt.end()
        if status is not None and not self._status_set:
            self._span.set_attribute("http.response.status_code", status)
        self._ended = True
        self._span.end()


class GatewayTracer:
    """Starts request spans for the gateway; disabled (``enabled`` false, no spans) when telemetry is not configured."""

    __slots__ = ("_capture", "_latest", "_provider", "_tracer", "enabled")

    def __init__(
        self, provider: TracerProvider | None = None, *, capture_content: bool = False, latest: bool | None = None
    ) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer(_INSTRUMENTATION) if provider is not None else None
        self._capture = capture_content
        #: The GenAI conventions' latest names (``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``).
        self._latest = latest_genai_names() if latest is None else latest
        #: False when no span is ever started.
        self.enabled = provider is not None

    @classmethod
    def from_config(cls, telemetry: TelemetryConfig | None, *, exporter: SpanExporter | None = None) -> GatewayTracer:
        """A tracer for ``telemetry``. With ``exporter`` (tests), spans go to it synchronously; with an
        ``otlp_endpoint``, they are batched to ``{otlp_endpoint}/v1/traces`` over OTLP/HTTP (protobuf); with
        neither (or an empty endpoint), the tracer is disabled."""
        endpoint = (telemetry.otlp_endpoint or "").strip() if telemetry is not None else ""
        if exporter is None and not endpoint:
            return cls(None)
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        service_name = telemetry.service_name if telemetry is not None else "llm-gateway"
        resource = Resource.create({SERVICE_NAME: service_name})
        ratio = telemetry.sample_ratio if telemetry is not None else None
        if ratio is None:  # the SDK's default sampler (OTEL_TRACES_SAMPLER, else parent-based always-on)
            provider = TracerProvider(resource=resource)
        else:
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

            provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(ratio)))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            otlp = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
            provider.add_span_processor(BatchSpanProcessor(otlp))
        capture = telemetry.capture_content if telemetry is not None else False
        return cls(provider, capture_content=capture)

    def start_request(self, *, operation: str, headers: Iterable[tuple[bytes, bytes]]) -> RequestSpan | None:
        """Start the SERVER span of one request (``operation``: ``chat``, ``text_completion`` or ``embeddings``),
        continuing a W3C ``traceparent`` found in the ASGI ``headers``; :meth:`RequestSpan.set_request` describes
        it once the model is known. ``None`` when the tracer is disabled."""
        tracer = self._tracer
        if tracer is None:
            return None
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
        span = tracer.start_span(
            operation, context=_parent_context(headers), kind=SpanKind.SERVER, attributes=attributes
        )
        return RequestSpan(tracer, span, operation, attributes, self._capture, self._latest)

    @property
    def capture_content(self) -> bool:
        """Whether prompt and answer text go into spans (off unless telemetry.capture_content is set)."""
        return self._capture

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export every finished span now (True when done in time, or when disabled)."""
        return self._provider.force_flush(timeout_millis) if self._provider is not None else True

    def shutdown(self) -> None:
        """Flush and stop the exporter; later spans are dropped. Safe to call when disabled or twice."""
        provider = self._provider
        if provider is not None:
            self._provider = None
            self._tracer = None
            self.enabled = False
            provider.shutdown()
