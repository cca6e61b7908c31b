"""OpenAI ``tools``, ``tool_choice`` and ``response_format`` → Anthropic ``tools`` and ``tool_choice``.

Structured output is a forced tool, as Anthropic documents it: the *response tool*, whose ``input_schema`` is the
client's JSON schema (see the package docstring for the precedence when the client sends its own tools and
``tool_choice``). :func:`response_tool_name` says which tool that is for a request, so the answer's translators can
turn its input back into message content.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import GatewayError, bad_request

#: The response tool's name for ``json_object`` (and a ``json_schema`` without a name).
JSON_TOOL_NAME = "json_response"
#: Anthropic's (and OpenAI's) tool name pattern: ``^[a-zA-Z0-9_-]{1,64}$``.
TOOL_NAME_MAX = 64
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
_THINKING_CHOICES = " (Anthropic's extended thinking allows only tool_choice auto or none)"
_DESCRIPTION = "Give your complete answer with this tool: its input is the response, as JSON that matches the schema."


def unsupported(field: str, what: str) -> GatewayError:
    """A 400 naming ``field``: ``what`` has no equivalent on Anthropic."""
    return bad_request(f"'{field}': {what} is not supported by this model's provider (Anthropic).", param=field)


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise bad_request("'tools' must be an array.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise unsupported(f"tools[{i}]", "a tool other than a function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request(f"'tools[{i}].function.name' is required.", param="tools")
        schema = function.get("parameters")
        if schema is None:
            schema = {"type": "object", "properties": {}}
        elif not isinstance(schema, dict):
            raise bad_request(f"'tools[{i}].function.parameters' must be a JSON schema object.", param="tools")
        entry: dict[str, Any] = {"name": function["name"]}
        description = function.get("description")
        if isinstance(description, str) and description:
            entry["description"] = description
        entry["input_schema"] = schema
        out.append(entry)
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice is None or choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        return {"type": "tool", "name": choice["function"]["name"]}
    raise unsupported("tool_choice", f"the tool choice {choice!r}")


# ---- response_format -------------------------------------------------------------------------------------------


def _tool_name(name: Any) -> str:
    """A schema's name as a tool name: characters outside ``[A-Za-z0-9_-]`` become ``_``, cut at 64."""
    if not isinstance(name, str) or not name:
        return JSON_TOOL_NAME
    return _NAME_BAD_CHARS.sub("_", name)[:TOOL_NAME_MAX]


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_response``, ``name_response2``, ... (cut to 64) when a client tool already has it."""
    candidate, n = name, 1
    while candidate in taken:
        suffix = "_response" if n == 1 else f"_response{n}"
        candidate = name[: TOOL_NAME_MAX - len(suffix)] + suffix
        n += 1
    return candidate


def _object_schema(schema: Any) -> dict[str, Any]:
    """The JSON schema as a tool's ``input_schema``, whose root Anthropic requires to be an object: a root ``$ref``
    into ``$defs`` (Pydantic's recursive models) is inlined; a root without ``type`` but with ``properties`` is an
    object; any other root (an array, a string, ...) has no faithful translation."""
    where = "response_format"
    if schema is None:
        return dict(_ANY_OBJECT)
    if not isinstance(schema, dict):
        raise bad_request("'response_format.json_schema.schema' must be a JSON schema object.", param=where)
    if schema.get("type") == "object":
        return schema
    if "type" not in schema:
        ref = schema.get("$ref")
        defs = schema.get("$defs")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and isinstance(defs, dict):
            target = defs.get(ref[len("#/$defs/") :])
            if isinstance(target, dict) and target.get("type") == "object":
                return {**{k: v for k, v in schema.items() if k != "$ref"}, **target}
        elif "properties" in schema:
            return {"type": "object", **schema}
    raise unsupported(where, "a JSON schema whose root is not an object (Anthropic's tool input is an object)")


def _response_tool(payload: dict[str, Any], taken: set[str]) -> dict[str, Any] | None:
    """The response tool for ``payload['response_format']`` (``None`` for none or ``text``)."""
    response_format = payload.get("response_format")
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise bad_request("'response_format' must be an object.", param="response_format")
    kind = response_format.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"name": _unique(JSON_TOOL_NAME, taken), "description": _DESCRIPTION, "input_schema": _ANY_OBJECT}
    if kind != "json_schema":
        raise unsupported("response_format", f"the response format {kind!r}")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise bad_request("'response_format.json_schema' must be an object.", param="response_format")
    description = spec.get("description")
    if isinstance(description, str) and description:
        description = f"{_DESCRIPTION} {description}"
    return {
        "name": _unique(_tool_name(spec.get("name")), taken),
        "description": description if isinstance(description, str) and description else _DESCRIPTION,
        "input_schema": _object_schema(spec.get("schema")),
    }


def _client_tool_names(payload: dict[str, Any]) -> set[str]:
    tools = payload.get("tools")
    if not isinstance(tools, list):
        return set()
    names = set()
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def _answers_with_format(payload: dict[str, Any]) -> bool:
    """Whether this turn may be the final answer (the response format applies): not when the client forces a call
    of its own tools (``required`` or a named function) and has tools to call."""
    choice = payload.get("tool_choice")
    return not (payload.get("tools") and (choice == "required" or isinstance(choice, dict)))


def response_tool_name(payload: dict[str, Any]) -> str | None:
    """The name of the response tool :func:`tool_fields` adds for ``payload``, or ``None`` when it adds none (the
    answer's translators turn that tool's input into message content)."""
    response_format = payload.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type", "text") == "text":
        return None
    if not _answers_with_format(payload):
        return None
    try:
        tool = _response_tool(payload, _client_tool_names(payload))
    except GatewayError:
        return None
    return tool["name"] if tool is not None else None


def tool_fields(payload: dict[str, Any], thinking: bool) -> dict[str, Any]:
    """Anthropic's ``tools`` and ``tool_choice`` for ``payload`` (either may be absent). ``thinking``: extended
    thinking is on, with which Anthropic allows only ``auto`` and ``none`` (a forced tool is a 400 here)."""
    tools = payload.get("tools")
    client_tools = _tools(tools) if tools else []
    client_choice = payload.get("tool_choice")
    parallel = payload.get("parallel_tool_calls")
    response = _response_tool(payload, {tool["name"] for tool in client_tools})  # validated even when unused
    if response is None or not _answers_with_format(payload):
        if not client_tools:
            return {}
        choice = _tool_choice(client_choice)
        if choice["type"] == "none":
            return {"tools": client_tools, "tool_choice": choice}
        if choice["type"] != "auto" and thinking:
            raise unsupported("tool_choice", "forcing a tool call together with reasoning_effort" + _THINKING_CHOICES)
        if parallel is False:
            choice["disable_parallel_tool_use"] = True
        elif client_choice is None:
            return {"tools": client_tools}  # Anthropic's default is auto
        return {"tools": client_tools, "tool_choice": choice}
    if client_tools and _tool_choice(client_choice)["type"] == "auto":
        # the client's tools or the answer: some tool must be called, the response tool being the final answer
        choice = {"type": "any"}
        if parallel is False:
            choice["disable_parallel_tool_use"] = True
    else:  # no tools of the client's, or tool_choice none: the answer, in the format, now
        choice = {"type": "tool", "name": response["name"], "disable_parallel_tool_use": True}
    if thinking:
        what = "a JSON response format (a forced tool call) with reasoning_effort"
        raise unsupported("response_format", what + _THINKING_CHOICES)
    return {"tools": [*client_tools, response], "tool_choice": choice}
