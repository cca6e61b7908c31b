"""The Responses API's objects: the ``response`` (``id`` ``resp_...``, ``object: "response"``, ``status``, ``output``,
``usage``, and the request fields it echoes), its output items (a ``message`` with one ``output_text`` part, or one
``function_call`` per call) and their logprobs."""

from __future__ import annotations

import time
import uuid
from typing import Any

from llmops.simulator.answers import Choice
from llmops.simulator.protocol import ToolCall
from llmops.simulator.responses_api.request import ResponsesRequest
from llmops.simulator.responses_api.store import ResponseStore
from llmops.simulator.text import token_logprob, top_alternatives


def _bytes(token: str) -> list[int]:
    return list(token.encode("utf-8", "surrogatepass"))


def logprob_entry(token: str, position: int, top: int, with_bytes: bool = True) -> dict[str, Any]:
    """One token's logprob (with ``top`` alternatives), as an ``output_text`` part (``with_bytes``) or a delta
    event lists it."""
    entry: dict[str, Any] = {"token": token, "logprob": token_logprob(token, position)}
    pairs = top_alternatives(token, position, top)
    alternatives: list[dict[str, Any]] = [{"token": alt, "logprob": value} for alt, value in pairs]
    if with_bytes:
        entry["bytes"] = _bytes(token)
        for alternative, (alt, _) in zip(alternatives, pairs, strict=True):
            alternative["bytes"] = _bytes(alt)
    entry["top_logprobs"] = alternatives
    return entry


def usage_object(chat_usage: dict[str, Any]) -> dict[str, Any]:
    """The Responses usage of the engine's chat-shaped usage."""
    details = chat_usage.get("prompt_tokens_details") or {}
    return {
        "input_tokens": chat_usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": details.get("cached_tokens", 0)},
        "output_tokens": chat_usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": chat_usage["prompt_tokens"] + chat_usage["completion_tokens"],
    }


class ResponsesFormat:
    """The objects of one Responses API request (the non-streamed body, and what its stream events carry)."""

    def __init__(self, model: str, req: ResponsesRequest, store: ResponseStore) -> None:
        self.id = f"resp_{uuid.uuid4().hex}"
        self.message_id = f"msg_{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.req = req
        self.store = store
        self.stored = store.enabled and req.store
        self.base: dict[str, Any] = {"id": self.id, "model": model}  # the Format protocol's; unused here

    # -- items ----------------------------------------------------------------------------------------------------

    def logprobs(self, choice: Choice, count: int | None = None) -> list[dict[str, Any]]:
        """The logprobs of the first ``count`` tokens of a text answer (all by default), when they were asked for."""
        gen = self.req.gen
        if not gen.logprobs or choice.tool_calls:
            return []
        tokens = choice.tokens if count is None else choice.tokens[:count]
        return [logprob_entry(token, i, gen.top_logprobs) for i, token in enumerate(tokens)]

    def text_part(self, text: str, logprobs: list[dict[str, Any]]) -> dict[str, Any]:
        """An ``output_text`` content part."""
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}

    def message_item(self, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
        """The assistant's ``message`` output item."""
        return {"id": self.message_id, "type": "message", "role": "assistant", "status": status, "content": content}

    @staticmethod
    def call_item(call: ToolCall, status: str, arguments: str | None = None) -> dict[str, Any]:
        """A ``function_call`` output item (``arguments``: those streamed so far)."""
        return {
            "id": f"fc_{call.call_id}",
            "type": "function_call",
            "status": status,
            "call_id": f"call_{call.call_id}",
            "name": call.name,
            "arguments": call.arguments if arguments is None else arguments,
        }

    def items(self, choice: Choice) -> list[dict[str, Any]]:
        """The finished output items of ``choice``."""
        if choice.tool_calls:
            return [self.call_item(call, "completed") for call in choice.tool_calls]
        return [self.message_item([self.text_part(choice.text, self.logprobs(choice))], "completed")]

    # -- the response ---------------------------------------------------------------------------------------------

    def skeleton(self, status: str) -> dict[str, Any]:
        """The response object without output and usage (what ``response.created`` carries)."""
        echo = self.req.echo
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": echo["instructions"],
            "max_output_tokens": echo["max_output_tokens"],
            "max_tool_calls": None,
            "model": self.model,
            "output": [],
            "parallel_tool_calls": echo["parallel_tool_calls"],
            "previous_response_id": echo["previous_response_id"],
            "reasoning": echo["reasoning"],
            "service_tier": "auto",
            "store": self.stored,
            "temperature": echo["temperature"],
            "text": echo["text"],
            "tool_choice": echo["tool_choice"],
            "tools": echo["tools"],
            "top_logprobs": echo["top_logprobs"],
            "top_p": echo["top_p"],
            "truncation": echo["truncation"],
            "usage": None,
            "user": echo["user"],
            "metadata": echo["metadata"] or {},
        }

    def response(self, choices: list[Choice], chat_usage: dict[str, Any]) -> dict[str, Any]:
        """The finished response (stored when the store is on and the request allows it)."""
        choice = choices[0]
        incomplete = choice.finish_reason == "length"
        body = self.skeleton("incomplete" if incomplete else "completed")
        if incomplete:
            body["incomplete_details"] = {"reason": "max_output_tokens"}
        body["output"] = self.items(choice)
        body["usage"] = usage_object(chat_usage)
        if self.stored:
            self.store.put(body, self.req.messages)
        return body

    # the Format protocol of llmops.simulator.generation (only ``response`` is used: streams are typed events)

    def opening(self, index: int, usage_now: dict | None) -> dict[str, Any] | None:
        """Unused: the Responses API streams typed events (:mod:`llmops.simulator.responses_api.stream`)."""
        return None

    def chunk(self, choice: Choice, step: int, text: str, finish: bool, usage_now: dict | None) -> dict:
        """Unused: the Responses API streams typed events (:mod:`llmops.simulator.responses_api.stream`)."""
        raise NotImplementedError
