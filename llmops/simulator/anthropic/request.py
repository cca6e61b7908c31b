"""Validation of a Messages API request body, as Anthropic answers it (400 ``invalid_request_error`` naming the
field), reduced to what the simulator needs: :func:`parse_messages_request`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from llmops.simulator.anthropic.errors import invalid
from llmops.simulator.anthropic.thinking import parse_thinking
from llmops.simulator.text import count_tokens, text_digest

_TOP_LEVEL = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "simulate",
    }
)
_BLOCK_TYPES = frozenset(
    {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking", "search_result"}
)
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


@dataclass(slots=True)
class MessagesRequest:
    """A validated Messages API request, reduced to what the simulator needs."""

    model: str
    max_tokens: int
    stream: bool
    system_text: str
    last_user_text: str
    input_tokens: int
    system_tokens: int
    digest: bytes
    tools: list[str]
    tool_choice: dict[str, Any] | None
    stop_sequences: list[str]
    simulate: Any
    thinking_budget: int | None = None  # extended thinking (see :mod:`llmops.simulator.anthropic.thinking`)
    cache_prefix: tuple[int, bytes] | None = None  # (tokens, key) up to the last cache_control breakpoint


def _text_of(blocks: Any) -> str:
    if isinstance(blocks, str):
        return blocks
    if isinstance(blocks, list):
        return "\n".join(b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def _check_block(block: Any, where: str, role: str) -> None:
    if not isinstance(block, dict):
        raise invalid(f"{where}: Input should be a valid dictionary")
    kind = block.get("type")
    if kind not in _BLOCK_TYPES:
        raise invalid(f"{where}.type: Input tag {kind!r} found using 'type' does not match any of the expected tags")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise invalid(f"{where}.text: Field required")
        if not block["text"]:
            raise invalid("messages: text content blocks must be non-empty")
    elif kind == "image":
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
            raise invalid(f"{where}.source: Input should be a base64 or url image source")
        if source["type"] == "base64" and source.get("media_type") not in _IMAGE_TYPES:
            raise invalid(
                f"{where}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
            )
        if source["type"] == "url" and not isinstance(source.get("url"), str):
            raise invalid(f"{where}.source.url: Field required")
    elif kind == "tool_use":
        if role != "assistant":
            raise invalid(f"{where}: `tool_use` blocks can only be in `assistant` messages")
        for name, kinds in (("id", str), ("name", str), ("input", dict)):
            if not isinstance(block.get(name), kinds):
                raise invalid(f"{where}.{name}: Field required")
    elif kind == "tool_result":
        if role != "user":
            raise invalid(f"{where}: `tool_result` blocks can only be in `user` messages")
        if not isinstance(block.get("tool_use_id"), str):
            raise invalid(f"{where}.tool_use_id: Field required")
    elif kind in ("thinking", "redacted_thinking"):
        if role != "assistant":
            raise invalid(f"{where}: `{kind}` blocks can only be in `assistant` messages")
        for name in ("thinking", "signature") if kind == "thinking" else ("data",):
            if not isinstance(block.get(name), str):
                raise invalid(f"{where}.{kind}.{name}: Field required")


def _check_messages(messages: Any) -> list[list[dict[str, Any]]]:
    """Validate ``messages``; returns each message's content as blocks."""
    if messages is None:
        raise invalid("messages: Field required")
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: at least one message is required")
    contents: list[list[dict[str, Any]]] = []
    previous = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise invalid('messages: first message must use the "user" role')
        if role == previous:
            raise invalid(
                f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" roles '
                "in a row"
            )
        previous = role
        content = message.get("content")
        last = i == len(messages) - 1
        if isinstance(content, str):
            blocks = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            for j, block in enumerate(content):
                _check_block(block, f"messages.{i}.content.{j}", role)
            blocks = content
        else:
            raise invalid(f"messages.{i}.content: Field required")
        if not blocks and not (last and role == "assistant"):
            raise invalid(
                f"messages.{i}: all messages must have non-empty content except for the optional final assistant "
                "message"
            )
        if last and role == "assistant" and blocks and blocks[-1].get("type") == "text":
            text = blocks[-1]["text"]
            if text != text.rstrip():
                raise invalid("messages: final assistant content cannot end with trailing whitespace")
        contents.append(blocks)
    _check_tool_pairs(messages, contents)
    return contents


def _check_tool_pairs(messages: list[dict[str, Any]], contents: list[list[dict[str, Any]]]) -> None:
    """Every ``tool_use`` has its ``tool_result`` in the next message, and every ``tool_result`` its ``tool_use``
    in the previous one."""
    for i, blocks in enumerate(contents):
        if messages[i]["role"] == "user":
            used = {b["id"] for b in contents[i - 1] if b.get("type") == "tool_use"} if i else set()
            for j, block in enumerate(blocks):
                if block.get("type") == "tool_result" and block["tool_use_id"] not in used:
                    raise invalid(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block['tool_use_id']}. Each `tool_result` block must have a corresponding `tool_use` "
                        "block in the previous message."
                    )
            continue
        ids = [b["id"] for b in blocks if b.get("type") == "tool_use"]
        if not ids or i + 1 == len(contents):
            continue
        answered = {b.get("tool_use_id") for b in contents[i + 1] if b.get("type") == "tool_result"}
        missing = [tool_id for tool_id in ids if tool_id not in answered]
        if missing:
            raise invalid(
                f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in the "
                "next message."
            )


def _check_number(body: dict[str, Any], name: str, low: float, high: float | None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{name}: Input should be a valid number")
    if value < low:
        raise invalid(f"{name}: Input should be greater than or equal to {low:g}")
    if high is not None and value > high:
        raise invalid(f"{name}: Input should be less than or equal to {high:g}")


def _check_system(system: Any) -> str:
    """The system prompt's text."""
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string or a list of text blocks")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise invalid(f"system.{i}: Input should be a valid text block")
        if not block["text"]:
            raise invalid("system: text content blocks must be non-empty")
    return "\n".join(block["text"] for block in system)


def _check_tools(body: dict[str, Any]) -> tuple[list[str], dict[str, Any] | None]:
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
                raise invalid(f"tools.{i}.name: Field required")
            if tool.get("type", "custom") == "custom":
                schema = tool.get("input_schema")
                if not isinstance(schema, dict):
                    raise invalid(f"tools.{i}.custom.input_schema: Field required")
                if schema.get("type") != "object":
                    raise invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
            names.append(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise invalid(
                "tool_choice: Input tag found using 'type' does not match any of the expected tags: 'auto', 'any', "
                "'tool', 'none'"
            )
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            raise invalid("tool_choice.tool.name: Field required")
        extra = set(choice) - {"type", "name", "disable_parallel_tool_use"}
        if extra:
            raise invalid(f"tool_choice.{choice['type']}.{sorted(extra)[0]}: Extra inputs are not permitted")
    return names, choice


def _last_user_text(messages: list[dict[str, Any]], contents: list[list[dict[str, Any]]]) -> str:
    for message, blocks in zip(reversed(messages), reversed(contents), strict=True):
        if message["role"] != "user":
            continue
        text = _text_of([b for b in blocks if b.get("type") == "text"])
        if text:
            return text
        return "\n".join(_text_of(b.get("content")) for b in blocks if b.get("type") == "tool_result")
    return ""


def _block_tokens(block: dict[str, Any]) -> int:
    """Input tokens of one content block (earlier turns' thinking is not part of the context, as Anthropic)."""
    kind = block.get("type")
    if kind == "text":
        return count_tokens(block["text"])
    if kind == "tool_result":
        return count_tokens(_text_of(block.get("content")))
    if kind == "tool_use":
        return count_tokens(orjson.dumps(block["input"]).decode())
    return 0


def _count_input(system_text: str, contents: list[list[dict[str, Any]]]) -> int:
    return count_tokens(system_text) + sum(_block_tokens(block) for blocks in contents for block in blocks)


def _cache_prefix(
    system: Any, messages: list[dict[str, Any]], contents: list[list[dict[str, Any]]]
) -> tuple[int, bytes] | None:
    """(tokens, key) of the prompt up to its last ``cache_control`` breakpoint (system or message blocks), or None."""
    parts: list[str] = []
    tokens = 0
    found: tuple[int, int] | None = None
    for block in system if isinstance(system, list) else [{"text": system}] if system else []:
        parts.append(block["text"])
        tokens += count_tokens(block["text"])
        if block.get("cache_control"):
            found = (tokens, len(parts))
    for message, blocks in zip(messages, contents, strict=True):
        parts.append(f"<{message['role']}>")
        for block in blocks:
            bare = {key: value for key, value in block.items() if key != "cache_control"}
            parts.append(orjson.dumps(bare, option=orjson.OPT_SORT_KEYS).decode())
            tokens += _block_tokens(block)
            if block.get("cache_control"):
                found = (tokens, len(parts))
    if found is None:
        return None
    return found[0], text_digest("cache", *parts[: found[1]])


def parse_messages_request(body: dict[str, Any], need_max_tokens: bool = True) -> MessagesRequest:
    """Validate a Messages API body as Anthropic does; raises :class:`AnthropicError` (400)."""
    for name in body:
        if name not in _TOP_LEVEL:
            raise invalid(f"{name}: Extra inputs are not permitted")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None and need_max_tokens:
        raise invalid("max_tokens: Field required")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
        raise invalid("max_tokens: Input should be a valid integer")
    if max_tokens is not None and max_tokens < 1:
        raise invalid("max_tokens: Input should be greater than or equal to 1")
    messages = body.get("messages")
    contents = _check_messages(messages)
    system_text = _check_system(body.get("system"))
    _check_number(body, "temperature", 0, 1)
    _check_number(body, "top_p", 0, 1)
    _check_number(body, "top_k", 0, None)
    stop = body.get("stop_sequences") or []
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise invalid("stop_sequences: Input should be a valid list of strings")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream: Input should be a valid boolean")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise invalid("metadata: Input should be a valid dictionary")
        for name in metadata:
            if name != "user_id":
                raise invalid(f"metadata.{name}: Extra inputs are not permitted")
    tools, choice = _check_tools(body)
    thinking = parse_thinking(body, max_tokens or 0, choice)
    assert isinstance(messages, list)
    return MessagesRequest(
        model=model,
        max_tokens=max_tokens or 0,
        stream=stream,
        system_text=system_text,
        last_user_text=_last_user_text(messages, contents),
        input_tokens=_count_input(system_text, contents),
        system_tokens=count_tokens(system_text),
        digest=text_digest(system_text, orjson.dumps(messages).decode()),
        tools=tools,
        tool_choice=choice,
        stop_sequences=stop,
        simulate=body.get("simulate"),
        thinking_budget=thinking,
        cache_prefix=_cache_prefix(body.get("system"), messages, contents),
    )
