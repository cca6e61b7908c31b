"""OpenAI's Responses API relayed as it is to a host that serves it (OpenAI, vLLM): only ``model`` renamed, the
typed events measured on the way (first output, usage in ``response.completed``, errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gateway.inbound.responses import as_chat_completion, usage_of
from gateway.pricing import Usage
from gateway.providers.base import Answer
from gateway.sse import SSEDecoder

if TYPE_CHECKING:
    from gateway.exchange import Exchange
    from gateway.routing import DeploymentRoute

_OUTPUT_EVENTS = (b"response.output_text.delta", b"response.function_call_arguments.delta", b"response.refusal.delta")
_END_EVENTS = {"response.completed": None, "response.incomplete": None, "response.failed": 502}


def usage(data: Any) -> Usage | None:
    """:class:`Usage` of a Responses API ``usage`` object."""
    counts = usage_of(data)
    if counts is None:
        return None
    return Usage(input=counts[0], output=counts[1], cached_input=counts[2], reasoning=counts[3])


def decode(ex: Exchange, raw: bytes, data: dict[str, Any], route: DeploymentRoute) -> Answer:
    """A relayed unary response: renamed, measured, read as a chat completion for the sample."""
    assert ex.model is not None
    model = data.get("model")
    response_model = model if isinstance(model, str) else route.config.model
    body = raw.replace(route.upstream_model_field, ex.model.public_model_field, 1)
    if body is raw and "model" in data:
        data["model"] = ex.model.name
        body = orjson.dumps(data)
    return Answer(body, as_chat_completion(data), usage(data.get("usage")), response_model)


class ResponsesRelayEvents:
    """The Responses API's typed events, relayed (``model`` renamed) and measured."""

    def __init__(self, ex: Exchange) -> None:
        assert ex.model is not None and ex.deployment is not None
        self.ex = ex
        self.upstream_field = ex.deployment.upstream_model_field
        self.public_field = ex.model.public_model_field
        self.decoder = SSEDecoder()
        self.done = False
        self.error = False

    def feed(self, chunk: bytes, now: float) -> bytes:
        return b"".join(self._event(event, now) for event in self.decoder.feed(chunk))

    def flush(self, now: float) -> bytes:
        tail = self.decoder.flush()
        return self._event(tail, now) if tail is not None else b""

    def _event(self, event: bytes, now: float) -> bytes:
        ex = self.ex
        if any(name in event for name in _OUTPUT_EVENTS):
            if ex.first_token_at is None:
                ex.first_token_at = now
            ex.output_events += 1
            if ex.sample is not None and b"response.output_text.delta" in event:
                data = _data(event)
                if data is not None and isinstance(data.get("delta"), str):
                    ex.sample.text.append(data["delta"])
            return event + b"\n\n"
        if b'"response.' in event and b'"model"' in event:
            event = event.replace(self.upstream_field, self.public_field, 1)
        data = _data(event)  # the few events that carry no output: created, item added or done, completed
        kind = data.get("type") if data is not None else None
        if kind in _END_EVENTS:
            response = data.get("response") if data is not None else None
            if isinstance(response, dict):
                measured = usage(response.get("usage"))
                if measured is not None:
                    ex.usage = measured
                    ex.usage_final = True
                choice = as_chat_completion(response)["choices"][0]
                ex.finish_reason = choice["finish_reason"]
                if ex.sample is not None:
                    ex.sample.finish_reason = choice["finish_reason"]
            failed = _END_EVENTS[kind]
            if failed is None:
                self.done = True
            else:
                self._fail(failed)
        elif kind == "error":
            self._fail(502)
        return event + b"\n\n"

    def _fail(self, status: int) -> None:
        self.error = True
        self.ex.status = status
        self.ex.upstream_reason = "http_5xx"


def _data(event: bytes) -> dict[str, Any] | None:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            try:
                parsed = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return None
            return parsed if isinstance(parsed, dict) else None
    return None
