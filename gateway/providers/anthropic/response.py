"""Anthropic Messages response → OpenAI ``chat.completion``: finish reasons and usage."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.pricing import Usage

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any) -> str | None:
    """OpenAI's ``finish_reason`` for Anthropic's ``stop_reason`` (``None`` stays ``None``)."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def positive_int(value: Any) -> int:
    """``value`` when it is a positive int, else 0 (Anthropic's usage counts)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_anthropic(usage: Any) -> Usage | None:
    """:class:`~gateway.pricing.Usage` from Anthropic's ``usage`` (cache reads and writes count as input; reads are
    the cached part); ``None`` when it is missing."""
    if not isinstance(usage, dict):
        return None
    cache_read = positive_int(usage.get("cache_read_input_tokens"))
    prompt = (
        positive_int(usage.get("input_tokens")) + cache_read + positive_int(usage.get("cache_creation_input_tokens"))
    )
    return Usage(
        input=prompt,
        output=positive_int(usage.get("output_tokens")),
        cached_input=cache_read,
        cache_write=positive_int(usage.get("cache_creation_input_tokens")),
    )


def openai_usage(usage: Usage) -> dict[str, Any]:
    """OpenAI's ``usage`` object for ``usage``."""
    return {
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input},
    }


def _invalid_response(what: str) -> GatewayError:
    return GatewayError(
        502, f"The Anthropic upstream answered with {what}.", type="upstream_error", code="upstream_invalid_response"
    )


def from_anthropic_response(
    body: dict[str, Any], public_model: str, response_tool: str | None = None
) -> dict[str, Any]:
    """A Messages API response → an OpenAI ``chat.completion`` named ``public_model``.

    ``response_tool``: the tool that carries a structured answer (a ``response_format``): the input of its first call
    is the message's content (JSON text), not a tool call; text blocks are left out (there are none when a tool is
    forced; any would make the content unparseable); ``stop_reason: tool_use`` is then ``stop`` unless the model
    also called the client's tools.
    Raises :class:`GatewayError` (502 ``upstream_invalid_response``) when ``body`` is not a message.
    """
    content = body.get("content")
    if not isinstance(content, list):
        raise _invalid_response("a body that is not a message (no 'content' array)")
    texts: list[str] = []
    answer: str | None = None
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use" and response_tool is not None and block.get("name") == response_tool:
            if answer is None:
                answer = orjson.dumps(block.get("input", {})).decode()
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input", {})).decode()},
                }
            )
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
    if response_tool is not None:  # as streamed: text beside the answer would make it unparseable
        texts = [answer] if answer is not None else []
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    finish = finish_reason(body.get("stop_reason"))
    if finish == "tool_calls" and not tool_calls:
        finish = "stop"  # only the response tool was called: the answer
    usage = usage_from_anthropic(body.get("usage")) or Usage()
    return {
        "id": body.get("id") or f"msg_{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": public_model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": openai_usage(usage),
    }
