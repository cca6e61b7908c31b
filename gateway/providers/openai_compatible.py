"""OpenAI-compatible upstreams (vLLM, OpenAI, any compatible host): every OpenAI endpoint relayed as it is, with only
``model`` rewritten (and ``stream_options.include_usage`` always asked for, so streams are costed exactly)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import (
    GatewayError,
    UpstreamFailure,
    error_body,
    normalise_upstream_error,
    retry_after_seconds,
    upstream_error,
)
from gateway.pricing import Usage
from gateway.providers import responses_relay
from gateway.providers.base import Answer, dumps_body
from gateway.sse import SSEDecoder

if TYPE_CHECKING:
    from gateway.exchange import Endpoint, Exchange
    from gateway.routing import DeploymentRoute
    from llmops.config import Deployment

NAME = "openai_compatible"
_SERVED = frozenset({"chat", "completions", "embeddings"})
_RESPONSES = frozenset({"responses"})


class OpenAICompatible:
    """The :class:`~gateway.providers.base.Provider` of OpenAI-compatible hosts."""

    name = NAME
    one_choice_per_call = False

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def native(self, deployment: Deployment) -> frozenset[str]:
        return _SERVED | _RESPONSES if deployment.responses_api == "relay" else _SERVED

    def path(self, endpoint: Endpoint) -> str:
        return endpoint.path

    def encode_request(self, ex: Exchange, payload: dict[str, Any], route: DeploymentRoute) -> bytes:
        upstream = dict(payload)
        upstream["model"] = route.config.model
        if ex.stream and ex.upstream_endpoint.label != "responses":  # a response's usage is always in its events
            options = payload.get("stream_options")
            upstream["stream_options"] = {**options, "include_usage": True} if options else {"include_usage": True}
        return dumps_body(upstream)

    def decode_response(self, ex: Exchange, raw: bytes, data: dict[str, Any], route: DeploymentRoute) -> Answer:
        assert ex.model is not None
        if ex.upstream_endpoint.label == "responses":
            return responses_relay.decode(ex, raw, data, route)
        model = data.get("model")
        response_model = model if isinstance(model, str) else route.config.model  # before the rewrite below
        if ex.upstream_endpoint.label == "completions" and _asks_prompt_logprobs(ex.payload):
            _check_prompt_logprobs(data, route)
        out = raw.replace(route.upstream_model_field, ex.model.public_model_field, 1)
        if out is raw and "model" in data:  # the upstream spaced its JSON differently: rewrite properly
            data["model"] = ex.model.name
            out = orjson.dumps(data)
        return Answer(out, data, Usage.from_openai(data.get("usage")), response_model)

    def stream_events(self, ex: Exchange) -> OpenAIEvents | responses_relay.ResponsesRelayEvents:
        if ex.upstream_endpoint.label == "responses":
            return responses_relay.ResponsesRelayEvents(ex)
        return OpenAIEvents(ex)

    def classify_error(self, route: DeploymentRoute, status: int, body: bytes, headers: Any) -> UpstreamFailure:
        """4xx reaches the client with its status and message, except 401/403 (the gateway's own credentials:
        502, retried elsewhere); 5xx becomes 502."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        text = body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
        message, err_type, param, code = normalise_upstream_error(payload, text)
        if status in (401, 403):
            return UpstreamFailure(
                "http_4xx",
                upstream_error(
                    502,
                    f"Upstream deployment '{route.name}' rejected the gateway's credentials (HTTP {status}); "
                    "check the deployment's api_key.",
                    "upstream_auth_error",
                ),
                retryable=True,
            )
        if 400 <= status < 500:
            extra = {}
            retry_after = headers.get("Retry-After")
            if retry_after:
                extra["Retry-After"] = retry_after
            return UpstreamFailure(
                "http_4xx",
                GatewayError(
                    status,
                    message,
                    type=err_type,
                    param=param,
                    code=None if code is None else str(code),
                    headers=extra,
                ),
                retryable=status == 429,
                retry_after=retry_after_seconds(headers) if status == 429 else None,
            )
        return UpstreamFailure(
            "http_5xx",
            upstream_error(
                502,
                f"Upstream deployment '{route.name}' failed with HTTP {status}: {message}",
                "upstream_http_error",
            ),
            retryable=True,
            retry_after=retry_after_seconds(headers),
        )


class OpenAIEvents:
    """OpenAI-compatible SSE: forward each event, with the public model name and without unasked-for usage."""

    def __init__(self, ex: Exchange) -> None:
        assert ex.model is not None and ex.deployment is not None
        self.ex = ex
        self.upstream_field = ex.deployment.upstream_model_field
        self.public_field = ex.model.public_model_field
        self.public_name = ex.model.name
        self.decoder = SSEDecoder()
        self.done = False
        self.error = False

    def feed(self, chunk: bytes, now: float) -> bytes:
        out = [self._event(event, now) for event in self.decoder.feed(chunk)]
        return b"".join(part for part in out if part)

    def flush(self, now: float) -> bytes:
        tail = self.decoder.flush()
        return (self._event(tail, now) or b"") if tail is not None else b""

    def _event(self, event: bytes, now: float) -> bytes | None:
        """One SSE event (without its blank-line terminator) → the bytes to forward, or ``None`` to drop it."""
        if event.startswith(b"data:"):
            return self._data(event, now)
        head, found, data_line = event.rpartition(b"\ndata:")
        if not found:
            return event + b"\n\n"  # comments and other fields pass through untouched
        # ``id:`` / ``event:`` / comment lines before the data line: forwarded as they are, the data handled as usual.
        handled = self._data(b"data:" + data_line, now)
        return None if handled is None else head + b"\n" + handled

    def _data(self, event: bytes, now: float) -> bytes | None:
        data = event[6:] if event[5:6] == b" " else event[5:]
        if data == b"[DONE]":
            self.done = True
            return b"data: [DONE]\n\n"
        ex = self.ex
        if ex.first_token_at is None and carries_output(data):
            ex.first_token_at = now
        if ex.first_token_at is not None:
            ex.output_events += 1  # for an estimate, should the usage chunk never come
        if b'"error"' in data:
            error = stream_error(data)
            if error is not None:
                self.error = True
                code = error["error"].get("code")
                ex.status = int(code) if code and str(code).isdigit() and 400 <= int(code) < 600 else 502
                ex.upstream_reason = "http_4xx" if ex.status < 500 else "http_5xx"
                return b"data: " + orjson.dumps(error) + b"\n\n"
        chunk: Any = None
        if b'"finish_reason":"' in data:  # only the last chunk of a choice has a non-null one
            chunk = loads_or_none(data)
            choices = chunk.get("choices") if isinstance(chunk, dict) else None
            if isinstance(choices, list) and choices and isinstance(choices[0], dict):
                ex.finish_reason = choices[0].get("finish_reason") or ex.finish_reason
        if ex.sample is not None:
            if chunk is None:
                chunk = loads_or_none(data)
            if isinstance(chunk, dict) and isinstance(chunk.get("choices"), list):
                for choice in chunk["choices"]:
                    if isinstance(choice, dict):
                        ex.sample.collect_choice(choice)
        if b'"usage"' in data and b'"usage":null' not in data:
            if chunk is None:
                chunk = loads_or_none(data)
            if isinstance(chunk, dict):
                usage = Usage.from_openai(chunk.get("usage"))
                if usage is not None:
                    ex.usage = usage
                    ex.usage_final = True
                    if chunk.get("choices") == [] and not ex.client_wants_usage:
                        return None
        rewritten = data.replace(self.upstream_field, self.public_field, 1)
        if rewritten is data and b'"model"' in data:
            chunk = loads_or_none(data)
            if isinstance(chunk, dict) and "model" in chunk:
                chunk["model"] = self.public_name
                rewritten = orjson.dumps(chunk)
        return b"data: " + rewritten + b"\n\n"


def _asks_prompt_logprobs(payload: dict[str, Any] | None) -> bool:
    """An evaluation harness's scoring request: the prompt echoed with its logprobs."""
    return bool(payload and payload.get("echo") is True and payload.get("logprobs") not in (None, False, 0))


def _check_prompt_logprobs(data: dict[str, Any], route: DeploymentRoute) -> None:
    """A scoring request answered without the prompt's logprobs would score every choice 0: refuse it clearly."""
    choices = data.get("choices")
    for choice in choices if isinstance(choices, list) else [None]:
        logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
        tokens = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
        if not isinstance(tokens, list) or not tokens:
            raise UpstreamFailure(
                "unsupported",
                upstream_error(
                    502,
                    f"Upstream deployment '{route.name}' answered an echo request without the prompt's logprobs, so "
                    "it cannot score loglikelihood (multiple-choice) tasks; use a deployment that returns them (vLLM "
                    "does).",
                    "upstream_no_prompt_logprobs",
                ),
            )


def carries_output(data: bytes) -> bool:
    """Whether a chunk holds the first generated output (text, reasoning or a tool call), so that time to first
    token is not fooled by a role-only first chunk some servers send before generation starts. Parses only the
    chunks before the first token."""
    chunk = loads_or_none(data)
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


def loads_or_none(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def stream_error(data: bytes) -> dict[str, Any] | None:
    """An ``{"error": ...}`` event sent inside a 200 stream, normalised to OpenAI's shape; ``None`` otherwise."""
    chunk = loads_or_none(data)
    if not isinstance(chunk, dict) or "error" not in chunk or "choices" in chunk:
        return None
    message, err_type, param, code = normalise_upstream_error(chunk, "The upstream reported an error mid-stream.")
    return error_body(message, err_type, param, code)
