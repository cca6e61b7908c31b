"""The Anthropic :class:`~gateway.providers.base.Provider`: clients speak OpenAI's chat format, translated both ways
(see the package docstring for the mapping)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import GatewayError, UpstreamFailure, bad_request, retry_after_seconds
from gateway.pricing import Usage
from gateway.providers.anthropic.errors import anthropic_error
from gateway.providers.anthropic.request import ANTHROPIC_PATH, request_headers, to_anthropic_request
from gateway.providers.anthropic.response import from_anthropic_response, usage_from_anthropic
from gateway.providers.anthropic.stream import AnthropicStreamTranslator
from gateway.providers.anthropic.tools import response_tool_name
from gateway.providers.base import Answer, dumps_body
from gateway.sse import SSEDecoder

if TYPE_CHECKING:
    from gateway.exchange import Endpoint, Exchange
    from gateway.routing import DeploymentRoute
    from llmops.config import Deployment

NAME = "anthropic"
_SERVED = frozenset({"chat", "messages"})


class AnthropicProvider:
    """Anthropic's Messages API (``POST {base_url}/messages``), answering OpenAI chat requests."""

    name = NAME
    one_choice_per_call = True

    def headers(self, api_key: str | None) -> dict[str, str]:
        return request_headers(api_key)

    def native(self, deployment: Deployment) -> frozenset[str]:
        return _SERVED  # chat by translation, Anthropic's own Messages API as it is

    def path(self, endpoint: Endpoint) -> str:
        return ANTHROPIC_PATH

    def encode_request(self, ex: Exchange, payload: dict[str, Any], route: DeploymentRoute) -> bytes:
        endpoint = ex.upstream_endpoint
        if endpoint.label == "messages":  # relayed as it is: cache_control, thinking, tools kept
            upstream = dict(payload)
            upstream["model"] = route.config.model
            return dumps_body(upstream)
        if endpoint.label not in _SERVED:
            raise bad_request(
                f"Model '{route.model}' is served by Anthropic, which has no {endpoint.path} endpoint; "
                "use /v1/chat/completions or /v1/messages.",
                param="model",
            )
        return dumps_body(to_anthropic_request(payload, route.config.model))

    def decode_response(self, ex: Exchange, raw: bytes, data: dict[str, Any], route: DeploymentRoute) -> Answer:
        assert ex.model is not None
        try:
            translated = from_anthropic_response(data, ex.model.name, _response_tool(ex))
        except GatewayError as error:
            raise UpstreamFailure("invalid_response", error) from None
        usage = usage_from_anthropic(data.get("usage")) or Usage()  # cache writes kept apart
        if ex.upstream_endpoint.label == "messages":  # the client speaks Anthropic: its own answer, renamed
            body = raw.replace(route.upstream_model_field, ex.model.public_model_field, 1)
            if body is raw and "model" in data:
                data["model"] = ex.model.name
                body = orjson.dumps(data)
            return Answer(body, translated, usage, route.config.model)
        return Answer(orjson.dumps(translated), translated, usage, route.config.model)

    def stream_events(self, ex: Exchange) -> AnthropicEvents:
        assert ex.model is not None
        translator = AnthropicStreamTranslator(ex.model.name, ex.client_wants_usage, _response_tool(ex))
        if ex.upstream_endpoint.label == "messages":
            return AnthropicRelayEvents(ex, translator)
        return AnthropicEvents(ex, translator)

    def classify_error(self, route: DeploymentRoute, status: int, body: bytes, headers: Any) -> UpstreamFailure:
        """Anthropic's error body mapped as in the package docstring's table; 401/403 (the gateway's credentials),
        429 and 5xx are retried on another deployment."""
        client_status, payload = anthropic_error(status, body)
        inner = payload["error"]
        extra = {}
        retry_after = retry_after_seconds(headers)
        if status == 429 and headers is not None and headers.get("Retry-After"):
            extra["Retry-After"] = headers["Retry-After"]
        error = GatewayError(
            client_status, inner["message"], type=inner["type"], param=inner["param"], code=inner["code"], headers=extra
        )
        reason = "http_5xx" if status >= 500 else "http_4xx"
        # As for OpenAI-compatible upstreams: 401/403 are the deployment's credentials, not the request.
        retryable = status in (401, 403, 429) or status >= 500
        return UpstreamFailure(reason, error, retryable=retryable, retry_after=retry_after)


def _response_tool(ex: Exchange) -> str | None:
    """The tool that carries this attempt's structured answer (its request's ``response_format``), if any."""
    if ex.upstream_endpoint.label != "chat":
        return None  # relayed as it is: the client's own tools
    payload = ex.payload if ex.upstream_endpoint is ex.endpoint else ex.chat_payload
    return response_tool_name(payload) if payload is not None else None


class AnthropicEvents:
    """Anthropic's event stream, translated to OpenAI ``chat.completion.chunk`` events."""

    def __init__(self, ex: Exchange, translator: AnthropicStreamTranslator) -> None:
        self.ex = ex
        self.translator = translator
        self.decoder = SSEDecoder()
        self.done = False
        self.error = False

    def feed(self, chunk: bytes, now: float) -> bytes:
        out = [part for event in self.decoder.feed(chunk) for part in self.translator.feed_raw(event)]
        self._update(now)
        if self.ex.first_token_at is not None:
            self.ex.output_events += len(out)
        return b"".join(out)

    def flush(self, now: float) -> bytes:
        tail = self.decoder.flush()
        out = self.translator.feed_raw(tail) if tail is not None else []
        self._update(now)
        return b"".join(out)

    def _update(self, now: float) -> None:
        t, ex = self.translator, self.ex
        if ex.first_token_at is None and t.has_output:
            ex.first_token_at = now
        usage = t.usage
        if usage is not None:
            ex.usage = usage
            ex.usage_final = t.usage_final
        if t.error is not None and not self.error:
            self.error = True
            ex.status = t.error_status or 502
            ex.upstream_reason = "http_4xx" if ex.status < 500 else "http_5xx"
        self.done = t.done and not self.error
        if t.finish_reason:
            ex.finish_reason = t.finish_reason
        if ex.sample is not None and t.done:
            ex.sample.text = [t.text]
            ex.sample.finish_reason = t.finish_reason


class AnthropicRelayEvents(AnthropicEvents):
    """Anthropic's event stream relayed as it is to a client that speaks Anthropic (only ``model`` renamed), measured
    by the same translator whose OpenAI output is dropped."""

    def __init__(self, ex: Exchange, translator: AnthropicStreamTranslator) -> None:
        super().__init__(ex, translator)
        assert ex.model is not None and ex.deployment is not None
        self.upstream_field = ex.deployment.upstream_model_field
        self.public_field = ex.model.public_model_field
        self.renamed = False

    def feed(self, chunk: bytes, now: float) -> bytes:
        out = []
        for event in self.decoder.feed(chunk):
            self.translator.feed_raw(event)
            out.append(self._rename(event) + b"\n\n")
        self._update(now)
        if self.ex.first_token_at is not None:
            self.ex.output_events += len(out)
        return b"".join(out)

    def flush(self, now: float) -> bytes:
        tail = self.decoder.flush()
        if tail is None:
            return b""
        self.translator.feed_raw(tail)
        self._update(now)
        return self._rename(tail) + b"\n\n"

    def _rename(self, event: bytes) -> bytes:
        """The public model name in ``message_start`` (the one event that names the model)."""
        if self.renamed or b"message_start" not in event:
            return event
        self.renamed = True
        return event.replace(self.upstream_field, self.public_field, 1)
