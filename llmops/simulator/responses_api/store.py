"""Stored responses, as vLLM keeps them with ``VLLM_ENABLE_RESPONSES_API_STORE=1`` (``--enable-responses-store``):
in memory, per process; the least recently used are forgotten past :data:`MAX_STORED` (vLLM never forgets).

A stored response keeps its object (``GET /v1/responses/{id}``) and its conversation, so that a request with
``previous_response_id`` continues it: the stored input messages, then the stored output (assistant text, function
calls), then the new input. Without the store, vLLM ignores ``store`` and every ``previous_response_id`` is unknown
(404 ``Response with id '...' not found.``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from llmops.simulator.protocol import RequestError
from llmops.simulator.responses_api.request import Message
from llmops.simulator.text import count_tokens

MAX_STORED = 10_000


def not_found(response_id: str) -> RequestError:
    """vLLM's 404 for a response id it does not know."""
    return RequestError(
        f"Response with id '{response_id}' not found.",
        param="response_id",
        status=404,
        err_type="invalid_request_error",
    )


def output_messages(output: list[dict[str, Any]]) -> list[Message]:
    """The messages of a response's output items, for the next turn."""
    messages: list[Message] = []
    for item in output:
        if item.get("type") == "message":
            text = "".join(part.get("text", "") for part in item.get("content", []))
            messages.append(("assistant", text, count_tokens(text)))
        elif item.get("type") == "function_call":
            text = f"{item['name']} {item['arguments']}"
            messages.append(("assistant", text, count_tokens(text)))
    return messages


class ResponseStore:
    """Responses by id, with the messages that led to them."""

    def __init__(self, enabled: bool, capacity: int = MAX_STORED) -> None:
        self.enabled = enabled
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[dict[str, Any], list[Message]]] = OrderedDict()

    def put(self, response: dict[str, Any], messages: list[Message]) -> None:
        """Keep ``response`` (answered to ``messages``)."""
        entries = self._entries
        entries[response["id"]] = (response, messages)
        entries.move_to_end(response["id"])
        while len(entries) > self.capacity:
            entries.popitem(last=False)

    def get(self, response_id: str) -> dict[str, Any]:
        """The stored response; raises the 404 :class:`RequestError` when it is unknown."""
        entry = self._entries.get(response_id)
        if entry is None:
            raise not_found(response_id)
        self._entries.move_to_end(response_id)
        return entry[0]

    def history(self, response_id: str) -> list[Message]:
        """The conversation a new turn after ``response_id`` continues; raises the 404 when it is unknown."""
        response = self.get(response_id)
        return self._entries[response_id][1] + output_messages(response["output"])
