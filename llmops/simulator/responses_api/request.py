"""A ``POST /v1/responses`` body, validated and reduced to a :class:`~llmops.simulator.protocol.GenerationRequest`.

``input`` is a string (one user message) or a list of items: messages (``{"role", "content"}`` with ``type``
``message`` or none; content a string or ``input_text`` / ``output_text`` parts; images and files add no tokens),
``function_call`` (counted as the assistant's), ``function_call_output`` (a ``tool`` message); ``reasoning`` items are
skipped. ``instructions`` is a system message in front. A conversation continued with ``previous_response_id`` has
the stored turn's messages and output in front of the new input (see :mod:`llmops.simulator.responses_api.store`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmops.simulator.protocol import MAX_LOGPROBS, GenerationRequest, Prompt, RequestError
from llmops.simulator.text import count_tokens, text_digest
from llmops.simulator.tools import responses_tooling

Message = tuple[str, str, int]  # (role, text, tokens)
_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal", "summary_text", "reasoning_text")
LOGPROBS_INCLUDE = "message.output_text.logprobs"


@dataclass(slots=True)
class ResponsesRequest:
    """A parsed Responses API request: the generation request, the conversation (without ``instructions``, which
    are not carried into a continued conversation) and the request fields a response echoes."""

    gen: GenerationRequest
    messages: list[Message]
    store: bool
    previous_response_id: str | None
    echo: dict[str, Any] = field(default_factory=dict)


def _invalid(name: str, what: str) -> RequestError:
    return RequestError(f"{name}: Input should be {what}", param=name)


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(f"{where}.content", "a valid string or a list of content parts")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _invalid(f"{where}.content.{j}", "a valid dictionary")
        if part.get("type") in _TEXT_PARTS:
            text = part.get("text", part.get("refusal"))
            if not isinstance(text, str):
                raise _invalid(f"{where}.content.{j}.text", "a valid string")
            texts.append(text)
    return "\n".join(texts)


def _item(item: Any, where: str) -> Message | None:
    """One input item as a message (None for items that add nothing, e.g. reasoning)."""
    if not isinstance(item, dict):
        raise _invalid(where, "a valid dictionary")
    kind = item.get("type", "message")
    if kind == "message" or (kind is None and "role" in item):
        role = item.get("role")
        if role not in _ROLES:
            raise _invalid(f"{where}.role", "'user', 'assistant', 'system' or 'developer'")
        text = _text(item.get("content"), where)
        return role, text, count_tokens(text)
    if kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            if not isinstance(item.get(name), str):
                raise RequestError(f"{where}.{name}: Field required", param="input")
        text = f"{item['name']} {item['arguments']}"
        return "assistant", text, count_tokens(text)
    if kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise RequestError(f"{where}.call_id: Field required", param="input")
        output = item.get("output")
        if not isinstance(output, str | list):
            raise _invalid(f"{where}.output", "a valid string or a list of content parts")
        text = output if isinstance(output, str) else _text(output, where)
        return "tool", text, count_tokens(text)
    if kind == "reasoning":
        return None
    raise RequestError(f"{where}.type: input items of type {kind!r} are not supported", param="input")


def parse_input(value: Any) -> list[Message]:
    """The messages of ``input``."""
    if isinstance(value, str):
        return [("user", value, count_tokens(value))]
    if value is None:
        raise RequestError("input: Field required", param="input")
    if not isinstance(value, list):
        raise _invalid("input", "a valid string or a list of input items")
    return [message for i, item in enumerate(value) if (message := _item(item, f"input.{i}")) is not None]


def _number(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _invalid(name, "a valid number")


def _int(body: dict[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, "a valid integer")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise RequestError(f"{name} must be {bound}, got {value}.", param=name)
    return value


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _invalid(name, "a valid boolean")
    return value


def prompt_of(instructions: str | None, messages: list[Message]) -> Prompt:
    """The prompt of a conversation: its last user message, its tokens and its prefix-cache segments."""
    segments = ([("system", instructions, count_tokens(instructions))] if instructions else []) + messages
    digests: list[bytes] = []
    previous = b""
    for role, text, _ in segments:
        previous = text_digest(role, text, previous=previous)
        digests.append(previous)
    last_user = next((text for role, text, _ in reversed(messages) if role == "user"), "")
    counts = [tokens for _, _, tokens in segments]
    return Prompt(last_user, sum(counts), digests, counts)


def parse_responses(body: dict[str, Any], history: list[Message]) -> ResponsesRequest:
    """A ``/v1/responses`` body; ``history`` is the continued conversation (empty without ``previous_response_id``)."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _invalid("model", "a valid string")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _invalid("instructions", "a valid string")
    messages = history + parse_input(body.get("input"))
    if not messages:
        raise RequestError("input: must contain at least one item", param="input")
    for name in ("temperature", "top_p"):
        _number(body, name)
    include = body.get("include") or []
    if not isinstance(include, list) or not all(isinstance(item, str) for item in include):
        raise _invalid("include", "a valid list of strings")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _invalid("metadata", "a valid dictionary")
    gen = GenerationRequest(
        model=model,
        prompts=[prompt_of(instructions, messages)],
        max_tokens=_int(body, "max_output_tokens", 1),
        stream=_bool(body, "stream", False),
        logprobs=LOGPROBS_INCLUDE in include,
        top_logprobs=_int(body, "top_logprobs", 0, MAX_LOGPROBS) or 0,
        fresh_turn=messages[-1][0] == "user",
        tooling=responses_tooling(body),
        simulate=body.get("simulate"),
    )
    text = body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}}
    echo = {
        "instructions": instructions,
        "max_output_tokens": gen.max_tokens,
        "metadata": metadata,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning"),
        "temperature": body.get("temperature", 1.0),
        "text": text,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_logprobs": body.get("top_logprobs"),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "user": body.get("user"),
    }
    previous = body.get("previous_response_id")
    return ResponsesRequest(gen, messages, _bool(body, "store", True), previous, echo)
