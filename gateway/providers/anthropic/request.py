"""OpenAI chat completions request → Anthropic Messages request (see the package docstring for the mapping)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.providers.anthropic.tools import tool_fields, unsupported

ANTHROPIC_PATH = "/messages"
ANTHROPIC_VERSION = "2023-06-01"
#: ``max_tokens`` sent when the client sets neither ``max_completion_tokens`` nor ``max_tokens`` (Anthropic requires
#: one; OpenAI's default is "as long as the model wants"). The client's value always wins.
DEFAULT_MAX_TOKENS = 4096

#: Known OpenAI request fields dropped without a word (every unknown field is dropped as well).
DROPPED_FIELDS = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "metadata",
        "store",
        "service_tier",
        "stream_options",
        "prediction",
        "verbosity",
        "prompt_cache_key",
        "prompt_cache_retention",
        "logprobs",  # false only: true is rejected
        "n",  # 1 only: more is rejected
    }
)

#: ``reasoning_effort`` → Anthropic's ``thinking.budget_tokens`` (0: no thinking, Anthropic's default).
THINKING_BUDGETS: dict[str, int] = {"none": 0, "minimal": 0, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
#: Anthropic's smallest ``budget_tokens``.
MIN_THINKING_BUDGET = 1024

_TOOL_ID_OK = re.compile(r"[A-Za-z0-9_-]+")
_TOOL_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def request_headers(api_key: str | None) -> dict[str, str]:
    """The headers of every Messages API call (``x-api-key`` only when a key is configured)."""
    headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
    if api_key:
        headers["x-api-key"] = api_key
    return headers


# ---- request ---------------------------------------------------------------------------------------------------


def _bad(message: str, param: str | None) -> GatewayError:
    return GatewayError(400, message, param=param)


def _reject_unsupported(payload: dict[str, Any]) -> None:
    """Raise a 400 for OpenAI features that Anthropic's Messages API cannot express."""
    n = payload.get("n")
    if n is not None and n != 1:
        if isinstance(n, int) and not isinstance(n, bool) and n > 1:
            raise unsupported("n", "more than one choice (n > 1)")
        raise _bad("'n' must be 1.", "n")
    if payload.get("logprobs"):
        raise unsupported("logprobs", "returning log probabilities")
    if payload.get("top_logprobs"):
        raise unsupported("top_logprobs", "returning log probabilities")
    if payload.get("logit_bias"):
        raise unsupported("logit_bias", "biasing token probabilities")
    if payload.get("audio") is not None:
        raise unsupported("audio", "audio output")
    modalities = payload.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise unsupported("modalities", "output other than text")
    for legacy in ("functions", "function_call"):
        if payload.get(legacy) is not None:
            raise unsupported(legacy, "the legacy function-calling API (use 'tools' and 'tool_choice')")
    if payload.get("web_search_options") is not None:
        raise unsupported("web_search_options", "OpenAI's web search")


def _max_tokens(payload: dict[str, Any]) -> tuple[int, str | None]:
    """The client's ``max_completion_tokens`` or ``max_tokens`` and its name; ``(DEFAULT_MAX_TOKENS, None)``."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(f"'{name}' must be an integer of at least 1.", name)
        return value, name
    return DEFAULT_MAX_TOKENS, None


def _thinking(payload: dict[str, Any], max_tokens: int, field: str | None) -> tuple[int, dict[str, Any] | None]:
    """``reasoning_effort`` → (``max_tokens``, Anthropic's ``thinking`` or ``None``). Anthropic's ``max_tokens``
    counts the thinking, as OpenAI's ``max_completion_tokens`` counts reasoning: the client's limit stays and the
    budget fits below it; without one, the budget comes on top of :data:`DEFAULT_MAX_TOKENS`. Thinking refuses
    ``temperature`` other than 1, ``top_p`` below 0.95 and ``top_k``: a 400 here."""
    effort = payload.get("reasoning_effort")
    if effort is None:
        return max_tokens, None
    budget = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    if budget is None:
        raise _bad(f"'reasoning_effort' must be one of {', '.join(THINKING_BUDGETS)}.", "reasoning_effort")
    if not budget:
        return max_tokens, None
    if field is None:
        max_tokens += budget
    else:
        budget = min(budget, max_tokens - 1)
        if budget < MIN_THINKING_BUDGET:
            raise _bad(
                f"'{field}' must be more than {MIN_THINKING_BUDGET} with reasoning_effort on this model's provider "
                f"(Anthropic): its thinking takes at least {MIN_THINKING_BUDGET} of those tokens.",
                field,
            )
    temperature, top_p = payload.get("temperature"), payload.get("top_p")
    if temperature is not None and temperature != 1:
        raise unsupported("temperature", "a temperature other than 1 with reasoning_effort (extended thinking)")
    if top_p is not None and top_p < 0.95:
        raise unsupported("top_p", "a top_p below 0.95 with reasoning_effort (extended thinking)")
    if payload.get("top_k") is not None:
        raise unsupported("top_k", "top_k with reasoning_effort (extended thinking)")
    return max_tokens, {"type": "enabled", "budget_tokens": budget}


def _number(payload: dict[str, Any], name: str, high: float) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"'{name}' must be a number.", name)
    if not 0 <= value <= high:
        raise _bad(f"'{name}' must be between 0 and {high:g} for this model (Anthropic).", name)
    return value


def _stop_sequences(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise _bad("'stop' must be a string or an array of strings.", "stop")
    kept = [item for item in stop if item.strip()]
    return kept or None


def _tool_id(value: Any, where: str) -> str:
    """A tool call id usable by Anthropic (``^[a-zA-Z0-9_-]+$``); other characters become ``_`` (consistently, so a
    ``tool_use`` id and its ``tool_result`` still match)."""
    if not isinstance(value, str) or not value:
        raise _bad(f"'{where}' must be a non-empty string.", where)
    if _TOOL_ID_OK.fullmatch(value):
        return value
    return _TOOL_ID_BAD_CHARS.sub("_", value)


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _bad(f"'{where}.image_url.url' must be a non-empty string.", where)
    if url.startswith("data:"):
        header, comma, data = url.partition(",")
        if not comma or not header.endswith(";base64"):
            raise _bad(f"'{where}': an image data URL must be base64 (data:MEDIA_TYPE;base64,DATA).", where)
        return {"type": "image", "source": {"type": "base64", "media_type": header[5:-7], "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad(f"'{where}': an image must be a base64 data URL or an http(s) URL.", where)


def _document_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str):
        raise unsupported(where, "a file part without inline 'file_data' (file ids)")
    header, comma, encoded = data.partition(",")
    if not header.startswith("data:") or not comma or not header.endswith(";base64"):
        raise _bad(f"'{where}.file.file_data' must be a base64 data URL.", where)
    return {"type": "document", "source": {"type": "base64", "media_type": header[5:-7], "data": encoded}}


def _content_blocks(content: Any, where: str, media: bool) -> list[dict[str, Any]]:
    """A message ``content`` (string or parts) → Anthropic content blocks; empty text is left out."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(f"'{where}.content' must be a string or an array of content parts.", where)
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        at = f"{where}.content[{i}]"
        if not isinstance(part, dict):
            raise _bad(f"'{at}' must be an object.", at)
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise _bad(f"'{at}.{kind}' must be a string.", at)
            if not text:
                continue
            block: dict[str, Any] = {"type": "text", "text": text}
        elif kind == "image_url" and media:
            block = _image_block(part, at)
        elif kind == "file" and media:
            block = _document_block(part, at)
        else:
            raise unsupported(at, f"a content part of type {kind!r} here")
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_use_blocks(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(tool_calls, list):
        raise _bad(f"'{where}.tool_calls' must be an array.", where)
    blocks = []
    for j, call in enumerate(tool_calls):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _bad(f"'{at}' must be a function call with a 'name'.", at)
        arguments = function.get("arguments")
        if arguments is None or arguments == "":
            tool_input: Any = {}
        elif isinstance(arguments, str):
            try:
                tool_input = orjson.loads(arguments)
            except orjson.JSONDecodeError:
                raise _bad(f"'{at}.function.arguments' is not valid JSON.", at) from None
        else:
            tool_input = arguments
        if not isinstance(tool_input, dict):
            raise _bad(f"'{at}.function.arguments' must be a JSON object.", at)
        blocks.append(
            {
                "type": "tool_use",
                "id": _tool_id(call.get("id"), f"{at}.id"),
                "name": function["name"],
                "input": tool_input,
            }
        )
    return blocks


def _tool_result_block(message: dict[str, Any], where: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(message.get("tool_call_id"), where)}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        parts = _content_blocks(content, where, media=True)
        if parts:
            block["content"] = parts
    return block


def _system(parts: list[list[dict[str, Any]]]) -> str | list[dict[str, Any]] | None:
    """The top-level ``system``: one string, or text blocks when any part asks for ``cache_control``."""
    blocks = [block for message in parts for block in message]
    if not blocks:
        return None
    if any("cache_control" in block for block in blocks):
        return blocks
    return "\n\n".join("\n".join(block["text"] for block in message) for message in parts if message)


def _translate_messages(messages: list[Any]) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """OpenAI ``messages`` → (Anthropic ``system``, Anthropic ``messages``)."""
    system_parts: list[list[dict[str, Any]]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _bad(f"'{where}' must be an object.", "messages")
        role = message.get("role")
        if role == "user":
            blocks = _content_blocks(message.get("content"), where, media=True)
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"), where, media=False)
            tool_calls = message.get("tool_calls")
            if tool_calls:
                blocks.extend(_tool_use_blocks(tool_calls, where))
        elif role == "tool":
            role = "user"
            blocks = [_tool_result_block(message, f"{where}.tool_call_id")]
        elif role in ("system", "developer"):
            system_parts.append(_content_blocks(message.get("content"), where, media=False))
            continue
        elif role == "function":
            raise unsupported("messages", "a 'function' message (legacy function calling; use 'tool')")
        else:
            raise _bad(f"'{where}.role' must be one of system, developer, user, assistant or tool.", "messages")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise _bad("'messages' must contain at least one user or assistant message with content.", "messages")
    _finish_turns(turns)
    return _system(system_parts), turns


def _finish_turns(turns: list[dict[str, Any]]) -> None:
    """Tool results first in their user message, no trailing whitespace in a final assistant message, and single
    plain text blocks as strings."""
    for turn in turns:
        blocks = turn["content"]
        if turn["role"] == "user" and len(blocks) > 1:
            results = [b for b in blocks if b["type"] == "tool_result"]
            if results and any(b["type"] != "tool_result" for b in blocks[: len(results)]):
                turn["content"] = results + [b for b in blocks if b["type"] != "tool_result"]
    last = turns[-1]
    if last["role"] == "assistant" and last["content"][-1]["type"] == "text":
        text = last["content"][-1]["text"].rstrip()
        if text:
            last["content"][-1]["text"] = text
        else:
            last["content"].pop()
            if not last["content"]:
                turns.pop()
                if not turns:
                    raise _bad("'messages' must contain at least one user message with content.", "messages")
    for turn in turns:
        blocks = turn["content"]
        if len(blocks) == 1 and blocks[0]["type"] == "text" and len(blocks[0]) == 2:
            turn["content"] = blocks[0]["text"]


def to_anthropic_request(payload: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """An OpenAI chat completions body → a Messages API body for ``upstream_model``.

    Raises :class:`GatewayError` (400, with ``param``) for what Anthropic cannot express or a malformed body.
    """
    _reject_unsupported(payload)
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array.", "messages")
    system, turns = _translate_messages(messages)
    temperature = _number(payload, "temperature", 1.0)
    top_p = _number(payload, "top_p", 1.0)
    max_tokens, thinking = _thinking(payload, *_max_tokens(payload))
    body: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens}
    if system is not None:
        body["system"] = system
    body["messages"] = turns
    if temperature is not None:
        body["temperature"] = temperature
    if top_p is not None:
        body["top_p"] = top_p
    top_k = payload.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
        body["top_k"] = top_k
    stop = _stop_sequences(payload.get("stop"))
    if stop:
        body["stop_sequences"] = stop
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean.", "stream")
    if stream:
        body["stream"] = True
    body.update(tool_fields(payload, thinking is not None))
    if thinking is not None:
        body["thinking"] = thinking
    user = next((u for u in (payload.get("safety_identifier"), payload.get("user")) if isinstance(u, str) and u), None)
    if user is not None:
        body["metadata"] = {"user_id": user}
    if "simulate" in payload:
        body["simulate"] = payload["simulate"]
    return body


# ---- unary response --------------------------------------------------------------------------------------------
