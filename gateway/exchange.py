"""The state of one proxied request: its endpoint, where it went, what came back, and its traffic-sample draft."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.pricing import Usage

if TYPE_CHECKING:
    from gateway.routing import DeploymentRoute, ModelRoute


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One proxied API endpoint (an inbound format): its label, upstream path, the field it requires, whether it
    streams, and whose API it is (``openai`` or ``anthropic``: the shape of its errors). ``via_chat``: deployments that
    do not serve it natively can answer it through chat completions (``gateway/inbound/``)."""

    label: str
    path: str
    required: str
    required_types: tuple[type, ...]
    streams: bool
    operation: str  # OpenTelemetry gen_ai.operation.name
    api: str = "openai"
    via_chat: bool = False


CHAT = Endpoint("chat", "/chat/completions", "messages", (list,), True, "chat")
COMPLETIONS = Endpoint("completions", "/completions", "prompt", (str, list), True, "text_completion")
EMBEDDINGS = Endpoint("embeddings", "/embeddings", "input", (str, list), False, "embeddings")
MESSAGES = Endpoint("messages", "/messages", "messages", (list,), True, "chat", api="anthropic", via_chat=True)
RESPONSES = Endpoint("responses", "/responses", "input", (str, list), True, "chat", via_chat=True)


class Exchange:
    """What one request did, for its response headers, metrics and sample."""

    __slots__ = (
        "beta",
        "chat_payload",
        "client_stalled",
        "client_wait",
        "client_wants_usage",
        "deployment",
        "disconnected",
        "endpoint",
        "error_type",
        "finish_reason",
        "finished",
        "first_token_at",
        "key",
        "model",
        "output_events",
        "own_seconds",
        "payload",
        "request_id",
        "retry_seconds",
        "sample",
        "shutdown_cut",
        "span",
        "start",
        "status",
        "stream",
        "traceparent",
        "tracestate",
        "traffic",
        "upstream_endpoint",
        "upstream_reason",
        "usage",
        "usage_estimated",
        "usage_final",
        "variant",
    )

    def __init__(self, endpoint: Endpoint, request_id: str, start: float) -> None:
        self.endpoint = endpoint
        self.request_id = request_id
        self.start = start
        self.model: ModelRoute | None = None  # the public model the client asked for
        self.deployment: DeploymentRoute | None = None  # the deployment that served (or last failed)
        self.variant = ""  # the A/B variant ("" for models without variants)
        self.stream = False
        self.client_wants_usage = False
        self.key = "anonymous"
        self.status = 200
        self.usage: Usage | None = None
        self.first_token_at: float | None = None
        self.own_seconds = 0.0
        self.retry_seconds = 0.0  # failed attempts and backoff: not the gateway's own time
        self.upstream_reason: str | None = None  # a failure after the stream started (counted when it ends)
        self.disconnected = False
        self.client_stalled = False  # cut off for leaving its response unread (server.client_stall_seconds)
        self.shutdown_cut = False  # ended by the gateway at the shutdown deadline (server.drain_seconds)
        self.client_wait = 0.0  # seconds a stream waited for its client to take the bytes relayed
        self.error_type: str | None = None  # for traces: the failure's reason or code
        self.finish_reason: str | None = None
        self.finished = False  # recorded (metrics, cost, sample): at most once, whatever fails afterwards
        self.sample: SampleDraft | None = None  # set when this request is sampled (or its content traced)
        self.span: Any = None  # the tracing span (None when tracing is off)
        self.tracestate: str | None = None  # the client's, passed upstream with its traceparent when tracing is off
        self.payload: dict[str, Any] | None = None  # the parsed request (a reference, for estimates)
        self.output_events = 0  # stream chunks relayed from the first output on
        self.usage_estimated = False  # usage is the gateway's estimate (the stream ended without the upstream's)
        self.usage_final = False  # a stream's final usage arrived (OpenAI's usage chunk, Anthropic's message_delta)
        self.traceparent: str | None = None  # with tracing off: the client's traceparent, passed on as it is
        self.upstream_endpoint = endpoint  # what the current attempt asks of its deployment (CHAT when translated)
        self.chat_payload: dict[str, Any] | None = None  # the request as chat completions, once translated
        self.traffic = "user"  # llmops.contract.TRAFFIC_KINDS: only user traffic is sampled
        self.beta: str | None = None  # the client's anthropic-beta header (Messages API), relayed to Anthropic

    def response_headers(self) -> dict[str, str]:
        """Which deployment (and variant) served: for people debugging a request."""
        headers = {}
        if self.deployment is not None:
            headers["x-llmops-deployment"] = self.deployment.name
            if self.model is not None and self.deployment.model != self.model.name:
                headers["x-llmops-served-by-model"] = self.deployment.model
        if self.variant:
            headers["x-llmops-variant"] = self.variant
        trace_id = getattr(self.span, "trace_id", None)
        if trace_id:
            headers["x-trace-id"] = trace_id
        return headers


class SampleDraft:
    """What a sampled request collects for its traffic sample while it runs."""

    __slots__ = ("finish_reason", "keep", "logprobs", "metadata", "request", "text", "ts")

    def __init__(self, request: dict[str, Any], metadata: dict[str, Any], keep: bool = True) -> None:
        self.keep = keep  # False: collected only for a trace's content, not sent to the monitors
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
        """Take what a whole (unary) OpenAI response says."""
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
