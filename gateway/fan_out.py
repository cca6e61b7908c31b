"""``n`` > 1 for providers that answer one choice per call (Anthropic): the gateway makes ``n`` calls at once and
merges their answers into one response with ``n`` choices and the summed usage. Unary requests only: ``n`` > 1 with
``stream`` is refused for such deployments (interleaved choices would need a merge of live streams)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import bad_request
from gateway.pricing import Usage
from gateway.providers.base import Answer

if TYPE_CHECKING:
    from gateway.exchange import Exchange
    from gateway.routing import DeploymentRoute

#: The most calls one request may fan out to.
MAX_CHOICES = 8


def split(ex: Exchange, payload: dict[str, Any], route: DeploymentRoute) -> tuple[dict[str, Any], int]:
    """The payload of one call and how many calls make the request: ``(payload, 1)`` unless the deployment's
    provider answers one choice per call and the request asks for more."""
    n = payload.get("n")
    if not route.adapter.one_choice_per_call or not isinstance(n, int) or isinstance(n, bool) or n <= 1:
        return payload, 1
    if ex.stream:
        raise bad_request(
            f"Model '{route.model}' answers one choice per call: 'n' > 1 works without 'stream' only.", param="n"
        )
    if n > MAX_CHOICES:
        raise bad_request(f"'n' may be at most {MAX_CHOICES} for model '{route.model}'.", param="n")
    return {key: value for key, value in payload.items() if key != "n"}, n


def _sum(usages: list[Usage | None]) -> Usage | None:
    known = [usage for usage in usages if usage is not None]
    if not known:
        return None
    return Usage(
        input=sum(u.input for u in known),
        output=sum(u.output for u in known),
        cached_input=sum(u.cached_input for u in known),
        cache_write=sum(u.cache_write for u in known),
        reasoning=sum(u.reasoning for u in known),
    )


def merge(answers: list[Answer]) -> Answer:
    """One chat completion with every answer's first choice (``index`` 0..n-1) and the usage of all the calls."""
    first = answers[0]
    data = dict(first.data)
    choices = []
    for index, answer in enumerate(answers):
        found = answer.data.get("choices")
        choice = found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else {}
        choices.append({**choice, "index": index})
    data["choices"] = choices
    usage = _sum([answer.usage for answer in answers])
    if usage is not None:
        data["usage"] = {
            "prompt_tokens": usage.input,
            "completion_tokens": usage.output,
            "total_tokens": usage.input + usage.output,
            "prompt_tokens_details": {"cached_tokens": usage.cached_input},
        }
    return Answer(orjson.dumps(data), data, usage, first.response_model)
