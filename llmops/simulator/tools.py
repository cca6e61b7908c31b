"""Tool calls and structured output: how the simulator reads ``tools``, ``tool_choice``, ``parallel_tool_calls`` and
``response_format`` (chat) or ``text.format`` (Responses), and when it calls a tool.

When the model calls tools (first rule that applies):

1. no ``tools``, or ``tool_choice: "none"``: never;
2. the request's ``simulate.tool_calls`` (``[{"name": ..., "arguments": {...}}]``): those calls;
3. only when the conversation's last message is the user's (a fresh turn, not a tool result): the first ``--script``
   entry that matches the last user message and has ``tool_calls`` for offered tools; else the phrases
   ``call tool NAME {json}`` in the last user message (as the Anthropic simulator reads them); else every offered tool
   whose name the last user message mentions (as a whole word), in the order they are mentioned;
4. ``tool_choice`` naming a function: always that function (arguments from above when they name it);
   ``"required"``: the calls found above, else the first tool. ``"auto"`` (the default): the calls found above, if any.

With ``parallel_tool_calls: false`` only the first call is made. Arguments nobody gave are a small valid instance of
the tool's ``parameters`` schema (:mod:`llmops.simulator.schema`). As vLLM: the finish reason is ``tool_calls`` for
``auto`` and ``required``, ``stop`` for a named function.

Structured output: ``json_object`` answers the text it would have answered when that is JSON already, else
``{"answer": TEXT}``; ``json_schema`` answers the text when it is JSON already, else a small valid instance of the
schema. ``max_tokens`` still cuts the JSON (finish ``length``), as it would cut a model's.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from llmops.simulator.protocol import RequestError, ToolCall, Tooling
from llmops.simulator.schema import instance
from llmops.simulator.script import ScriptRule, find_tool_rule
from llmops.simulator.text import split_tokens

_CALL_PHRASE = re.compile(r"(?i)call tool\s+([\w.-]+)")


def _choice(value: Any, tools: dict[str, Any], names: tuple[str, str], named_key: str | None) -> tuple[str, str | None]:
    """(kind, function name) of a ``tool_choice``; ``names`` are the field's and the tools' parameter names."""
    field, tools_field = names
    if value is None:
        return ("auto" if tools else "none"), None
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise RequestError(f"{field}: Input should be 'none', 'auto' or 'required' or a named function", field)
        if value != "none" and not tools:
            raise RequestError(f"When using `{field}`, `{tools_field}` must be set.", field)
        return value, None
    if isinstance(value, dict) and value.get("type") == "function":
        holder = value.get(named_key) if named_key else value
        name = holder.get("name") if isinstance(holder, dict) else None
        if not isinstance(name, str):
            raise RequestError(f"{field}.function.name: Field required", field)
        if name not in tools:
            raise RequestError(f"Tool '{name}' has not been passed in `{tools_field}`.", field)
        return "named", name
    if isinstance(value, dict) and value.get("type") in ("auto", "none", "required"):
        return _choice(value["type"], tools, names, named_key)
    raise RequestError(f"{field}: Input should be 'none', 'auto', 'required' or a named function", field)


def _tools(value: Any, nested: bool, field: str) -> dict[str, Any]:
    """Function tools by name (their ``parameters``); ``nested``: chat's ``{"function": {...}}`` form."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise RequestError(f"{field}: Input should be a valid list", field)
    tools: dict[str, Any] = {}
    for i, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise RequestError(f"{field}.{i}: Input should be a valid dictionary", field)
        if tool.get("type", "function") != "function":
            continue  # built-in tools (web search, ...): nothing the simulator calls
        spec = tool.get("function") if nested else tool
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise RequestError(f"{field}.{i}.{'function.' if nested else ''}name: Field required", field)
        parameters = spec.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise RequestError(f"{field}.{i}.parameters: Input should be a valid dictionary", field)
        tools[spec["name"]] = parameters or {"type": "object", "properties": {}}
    return tools


def _output_format(value: Any, field: str, schema_key: str | None) -> dict[str, Any] | None:
    """``{"type": "json_object"}``, ``{"type": "json_schema", "schema": ...}`` or None (text)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RequestError(f"{field}: Input should be a valid dictionary", field)
    kind = value.get("type")
    if kind in ("text", "structural_tag"):
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        holder = value.get(schema_key) if schema_key else value
        schema = holder.get("schema") if isinstance(holder, dict) else None
        if schema is not None and not isinstance(schema, dict):
            raise RequestError(f"{field}.schema: Input should be a valid dictionary", field)
        return {"type": "json_schema", "schema": schema if schema is not None else {}}
    raise RequestError(f"{field}.type: Input should be 'text', 'json_object' or 'json_schema'", field)


def _parallel(body: dict[str, Any]) -> bool:
    value = body.get("parallel_tool_calls")
    if value is not None and not isinstance(value, bool):
        raise RequestError("parallel_tool_calls: Input should be a valid boolean", "parallel_tool_calls")
    return value is not False


def chat_tooling(body: dict[str, Any]) -> Tooling | None:
    """The tools and output format of a ``/v1/chat/completions`` body (None when it has neither)."""
    tools = _tools(body.get("tools"), True, "tools")
    output_format = _output_format(body.get("response_format"), "response_format", "json_schema")
    if not tools and output_format is None and body.get("tool_choice") in (None, "none"):
        return None
    choice, named = _choice(body.get("tool_choice"), tools, ("tool_choice", "tools"), "function")
    return Tooling(tools, choice, named, _parallel(body), output_format)


def responses_tooling(body: dict[str, Any]) -> Tooling | None:
    """The tools and output format of a ``/v1/responses`` body (flat function tools, ``text.format``)."""
    tools = _tools(body.get("tools"), False, "tools")
    text = body.get("text")
    if text is not None and not isinstance(text, dict):
        raise RequestError("text: Input should be a valid dictionary", "text")
    output_format = _output_format((text or {}).get("format"), "text.format", None)
    if not tools and output_format is None and body.get("tool_choice") in (None, "none"):
        return None
    choice, named = _choice(body.get("tool_choice"), tools, ("tool_choice", "tools"), None)
    return Tooling(tools, choice, named, _parallel(body), output_format)


def _phrase_calls(text: str, tools: dict[str, Any]) -> list[tuple[str, Any]]:
    calls = []
    for found in _CALL_PHRASE.finditer(text):
        name = found.group(1).rstrip(".,;:!?")
        if name not in tools:
            continue
        rest = text[found.end() :].lstrip()
        arguments: Any = None
        if rest.startswith("{"):
            try:
                arguments, _ = json.JSONDecoder().raw_decode(rest)
            except ValueError:
                arguments = None
        calls.append((name, arguments if isinstance(arguments, dict) else None))
    return calls


def _mentioned(text: str, tools: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []
    for name in tools:
        hit = re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text)
        if hit:
            found.append((hit.start(), name))
    return [(name, None) for _, name in sorted(found)]


def decide_calls(
    tooling: Tooling | None,
    text: str,
    fresh_turn: bool,
    rules: tuple[ScriptRule, ...],
    forced: list[tuple[str, Any]] | None,
) -> list[tuple[str, Any]]:
    """The (name, arguments or None) of the calls to make (see the module docstring); ``text`` is the last user
    message, ``forced`` the request's ``simulate.tool_calls``."""
    if tooling is None or not tooling.tools or tooling.choice == "none":
        return []
    tools = tooling.tools
    if forced is not None:
        unknown = [name for name, _ in forced if name not in tools]
        if unknown:
            raise RequestError(f"simulate.tool_calls: {unknown[0]!r} is not one of the request's tools", "simulate")
        calls = list(forced)
    else:
        calls = []
        if fresh_turn:
            rule = find_tool_rule(rules, text, set(tools))
            if rule is not None:
                calls = [(call.name, call.arguments) for call in rule.tool_calls if call.name in tools]
            else:
                calls = _phrase_calls(text, tools) or _mentioned(text, tools)
        if tooling.choice == "named" and tooling.named is not None:
            named: tuple[str, Any] = (tooling.named, None)
            calls = [next((call for call in calls if call[0] == tooling.named), named)]
        elif tooling.choice == "required" and not calls:
            calls = [(next(iter(tools)), None)]
    return calls[:1] if not tooling.parallel else calls


def make_calls(tooling: Tooling, calls: list[tuple[str, Any]]) -> list[ToolCall]:
    """:class:`ToolCall` objects with fresh ids; missing arguments made up from each tool's schema."""
    out = []
    for name, arguments in calls:
        if arguments is None:
            arguments = instance(tooling.tools[name])
        out.append(ToolCall(uuid.uuid4().hex, name, json.dumps(arguments, ensure_ascii=False)))
    return out


def tool_tokens(calls: list[ToolCall]) -> tuple[list[str], list[tuple[int, bool]]]:
    """The streamed pieces of ``calls``: per call a header (its name, as an empty piece) and its arguments' words;
    and for each piece, (call index, is the header)."""
    tokens: list[str] = []
    steps: list[tuple[int, bool]] = []
    for index, call in enumerate(calls):
        tokens.append("")
        steps.append((index, True))
        for piece in split_tokens(call.arguments):
            tokens.append(piece)
            steps.append((index, False))
    return tokens, steps


def cut_calls(calls: list[ToolCall], steps: list[tuple[int, bool]], tokens: list[str]) -> list[ToolCall]:
    """``calls`` as far as the first ``len(tokens)`` pieces went (a cut answer's truncated arguments)."""
    arguments: dict[int, list[str]] = {}
    for (index, header), piece in zip(steps, tokens, strict=False):
        parts = arguments.setdefault(index, [])
        if not header:
            parts.append(piece)
    return [ToolCall(calls[i].call_id, calls[i].name, "".join(parts)) for i, parts in arguments.items()]


def structured_text(output_format: dict[str, Any], text: str) -> str:
    """The JSON answer for ``output_format`` (see the module docstring), from the text otherwise answered."""
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    if output_format["type"] == "json_object":
        return json.dumps({"answer": text}, ensure_ascii=False)
    return json.dumps(instance(output_format["schema"]), ensure_ascii=False)


def finish_reason(tooling: Tooling) -> str:
    """The finish reason of an answer that calls tools: ``stop`` for a named function, else ``tool_calls``."""
    return "stop" if tooling.choice == "named" else "tool_calls"
