"""Structured output, reasoning effort and the other OpenAI fields on Anthropic deployments, on fixed inputs:
``response_format`` → a forced response tool and its input back as message content (unary and streamed), the
``tool_choice`` precedence, ``reasoning_effort`` → ``thinking``, and what is refused."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.errors import GatewayError
from gateway.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    DROPPED_FIELDS,
    AnthropicStreamTranslator,
    from_anthropic_response,
    parse_sse_event,
    to_anthropic_request,
)
from gateway.providers.anthropic.tools import JSON_TOOL_NAME, response_tool_name
from gateway.sse import SSEDecoder

UPSTREAM = "claude-sonnet-4-5-20250929"
PUBLIC = "claude-public"
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "Person", "schema": PERSON, "strict": True}}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ANTHROPIC_WEATHER = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
HI = [{"role": "user", "content": "김민수 씨는 서른 살입니다."}]


def translate(**payload: Any) -> dict[str, Any]:
    payload.setdefault("model", PUBLIC)
    payload.setdefault("messages", HI)
    return to_anthropic_request(payload, UPSTREAM)


def rejected(**payload: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        translate(**payload)
    assert caught.value.status == 400
    return caught.value


def response_tool(name: str, schema: dict[str, Any], extra: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "description": "Give your complete answer with this tool: its input is the response, as JSON that matches "
        "the schema." + extra,
        "input_schema": schema,
    }


def forced(name: str) -> dict[str, Any]:
    return {"type": "tool", "name": name, "disable_parallel_tool_use": True}


# ---- request: response_format --------------------------------------------------------------------------------


def test_json_schema_becomes_a_forced_response_tool() -> None:
    body = translate(response_format=SCHEMA_FORMAT)
    assert body["tools"] == [response_tool("Person", PERSON)]
    assert body["tool_choice"] == forced("Person")
    assert response_tool_name({"messages": HI, "response_format": SCHEMA_FORMAT}) == "Person"
    described = {"type": "json_schema", "json_schema": {"name": "Person", "description": "한 사람", "schema": PERSON}}
    assert translate(response_format=described)["tools"] == [response_tool("Person", PERSON, " 한 사람")]


def test_json_object_is_an_object_with_any_properties() -> None:
    body = translate(response_format={"type": "json_object"})
    assert body["tools"] == [
        response_tool(JSON_TOOL_NAME, {"type": "object", "additionalProperties": True}),
    ]
    assert body["tool_choice"] == forced(JSON_TOOL_NAME)
    without_schema = translate(response_format={"type": "json_schema", "json_schema": {"name": "free"}})
    assert without_schema["tools"][0]["input_schema"] == {"type": "object", "additionalProperties": True}


def test_text_format_adds_nothing() -> None:
    body = translate(response_format={"type": "text"})
    assert "tools" not in body and "tool_choice" not in body
    assert response_tool_name({"response_format": {"type": "text"}}) is None
    assert response_tool_name({}) is None


def test_schema_names_follow_anthropics_tool_name_pattern() -> None:
    def name_of(name: Any) -> str:
        spec = {"schema": PERSON} if name is None else {"name": name, "schema": PERSON}
        body = translate(response_format={"type": "json_schema", "json_schema": spec})
        assert body["tool_choice"]["name"] == body["tools"][-1]["name"]
        return str(body["tools"][-1]["name"])

    assert name_of("사람 정보.v2") == "______v2"
    assert name_of("x" * 80) == "x" * 64
    assert name_of(None) == JSON_TOOL_NAME
    assert name_of("") == JSON_TOOL_NAME


def test_a_client_tool_of_the_same_name_keeps_its_name() -> None:
    taken = {"type": "function", "function": {"name": "Person", "parameters": {"type": "object"}}}
    twice = {"type": "function", "function": {"name": "Person_response", "parameters": {"type": "object"}}}
    payload = {"messages": HI, "response_format": SCHEMA_FORMAT, "tools": [taken, twice]}
    body = translate(**payload)
    assert [tool["name"] for tool in body["tools"]] == ["Person", "Person_response", "Person_response2"]
    assert response_tool_name(payload) == "Person_response2"


def test_a_root_ref_is_inlined_and_other_roots_are_refused() -> None:
    node = {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}
    recursive = {"$defs": {"Node": node}, "$ref": "#/$defs/Node"}
    body = translate(response_format={"type": "json_schema", "json_schema": {"name": "Node", "schema": recursive}})
    assert body["tools"][0]["input_schema"] == {"$defs": {"Node": node}, **node}
    untyped = {"properties": {"a": {"type": "string"}}}
    body = translate(response_format={"type": "json_schema", "json_schema": {"name": "A", "schema": untyped}})
    assert body["tools"][0]["input_schema"] == {"type": "object", **untyped}
    for schema in ({"type": "array", "items": {"type": "string"}}, {"type": "string"}, "object"):
        error = rejected(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
        assert error.param == "response_format"
    assert rejected(response_format="json").param == "response_format"
    assert rejected(response_format={"type": "json_schema"}).param == "response_format"
    assert rejected(response_format={"type": "grammar"}).param == "response_format"


# ---- request: tool_choice precedence --------------------------------------------------------------------------


def test_client_tools_are_kept_and_some_tool_must_be_called() -> None:
    """tool_choice absent or auto: the client's tools or the answer (Anthropic's ``any``)."""
    for choice in ({}, {"tool_choice": "auto"}):
        body = translate(response_format=SCHEMA_FORMAT, tools=[WEATHER], **choice)
        assert body["tools"] == [ANTHROPIC_WEATHER, response_tool("Person", PERSON)]
        assert body["tool_choice"] == {"type": "any"}
    serial = translate(response_format=SCHEMA_FORMAT, tools=[WEATHER], parallel_tool_calls=False)
    assert serial["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_tool_choice_none_answers_now_with_the_tools_still_defined() -> None:
    body = translate(response_format=SCHEMA_FORMAT, tools=[WEATHER], tool_choice="none")
    assert body["tools"] == [ANTHROPIC_WEATHER, response_tool("Person", PERSON)]
    assert body["tool_choice"] == forced("Person")


def test_a_forced_call_of_the_clients_tools_wins_over_the_format() -> None:
    """``required`` or a named function: this turn is a tool call, the format is for a later turn."""
    named = {"type": "function", "function": {"name": "get_weather"}}
    for choice, expected in (("required", {"type": "any"}), (named, {"type": "tool", "name": "get_weather"})):
        payload = {"messages": HI, "response_format": SCHEMA_FORMAT, "tools": [WEATHER], "tool_choice": choice}
        body = translate(**payload)
        assert body["tools"] == [ANTHROPIC_WEATHER]
        assert body["tool_choice"] == expected
        assert response_tool_name(payload) is None
    # without tools of its own, a client's tool_choice changes nothing
    assert translate(response_format=SCHEMA_FORMAT, tool_choice="required")["tool_choice"] == forced("Person")
    assert rejected(response_format=SCHEMA_FORMAT, tools=[WEATHER], tool_choice="sometimes").param == "tool_choice"


# ---- request: reasoning_effort and the other fields -----------------------------------------------------------


@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("medium", 4096), ("high", 16384), ("xhigh", 32768)])
def test_reasoning_effort_becomes_a_thinking_budget(effort: str, budget: int) -> None:
    body = translate(reasoning_effort=effort)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS + budget  # the default answer length, on top of the thinking


def test_reasoning_effort_within_the_clients_max_tokens() -> None:
    body = translate(reasoning_effort="high", max_completion_tokens=8000)
    assert body["max_tokens"] == 8000 and body["thinking"]["budget_tokens"] == 7999
    body = translate(reasoning_effort="low", max_tokens=20000)
    assert body["max_tokens"] == 20000 and body["thinking"]["budget_tokens"] == 1024
    assert rejected(reasoning_effort="low", max_completion_tokens=1024).param == "max_completion_tokens"
    for effort in ("none", "minimal"):
        body = translate(reasoning_effort=effort)
        assert "thinking" not in body and body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert rejected(reasoning_effort="maximal").param == "reasoning_effort"


def test_thinking_refuses_what_anthropic_refuses_with_it() -> None:
    assert translate(reasoning_effort="low", temperature=1, top_p=0.95)["thinking"]["budget_tokens"] == 1024
    assert rejected(reasoning_effort="low", temperature=0.2).param == "temperature"
    assert rejected(reasoning_effort="low", top_p=0.5).param == "top_p"
    assert rejected(reasoning_effort="low", top_k=5).param == "top_k"
    assert rejected(reasoning_effort="low", response_format=SCHEMA_FORMAT).param == "response_format"
    assert rejected(reasoning_effort="low", tools=[WEATHER], tool_choice="required").param == "tool_choice"
    body = translate(reasoning_effort="low", tools=[WEATHER], tool_choice="auto")
    assert body["tool_choice"] == {"type": "auto"} and "thinking" in body


def test_safety_identifier_is_the_user_id_and_the_rest_is_dropped() -> None:
    assert translate(safety_identifier="hash-1", user="u")["metadata"] == {"user_id": "hash-1"}
    assert translate(user="u")["metadata"] == {"user_id": "u"}
    body = translate(prompt_cache_key="k", prompt_cache_retention="24h", verbosity="low", service_tier="flex")
    assert set(body) == {"model", "max_tokens", "messages"}
    assert {"prompt_cache_retention", "verbosity", "service_tier"} <= DROPPED_FIELDS
    assert not {"reasoning_effort", "safety_identifier", "response_format"} & DROPPED_FIELDS
    assert rejected(n=3).param == "n"


# ---- unary response -------------------------------------------------------------------------------------------


def message(content: list[dict[str, Any]], stop_reason: str = "tool_use") -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": UPSTREAM,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 12},
    }


def call(name: str, tool_input: dict[str, Any], block_id: str = "toolu_1") -> dict[str, Any]:
    return {"type": "tool_use", "id": block_id, "name": name, "input": tool_input}


KIM = {"name": "김민수", "age": 30}


def test_the_response_tools_input_is_the_content() -> None:
    out = from_anthropic_response(message([call("Person", KIM)]), PUBLIC, "Person")
    ChatCompletion.model_validate(out)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    assert orjson.loads(choice["message"]["content"]) == KIM
    assert "김민수" in choice["message"]["content"]  # UTF-8 JSON, not \\u escapes


def test_client_tool_calls_beside_the_answer_stay_tool_calls() -> None:
    body = message(
        [
            {"type": "text", "text": "Let me check."},
            call("get_weather", {"city": "서울"}, "toolu_w"),
            call("Person", KIM),
            call("Person", {"name": "second"}, "toolu_2"),
        ]
    )
    choice = from_anthropic_response(body, PUBLIC, "Person")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_weather"]
    assert orjson.loads(choice["message"]["content"]) == KIM  # the first call only; text left out
    only_tools = from_anthropic_response(message([call("get_weather", {"city": "부산"})]), PUBLIC, "Person")
    assert only_tools["choices"][0]["finish_reason"] == "tool_calls"
    assert only_tools["choices"][0]["message"]["content"] is None


def test_an_answer_cut_by_max_tokens_is_length() -> None:
    out = from_anthropic_response(message([call("Person", {})], "max_tokens"), PUBLIC, "Person")
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["choices"][0]["message"]["content"] == "{}"
    plain = from_anthropic_response(message([call("Person", KIM)]), PUBLIC)  # no response_format: a tool call
    assert plain["choices"][0]["finish_reason"] == "tool_calls"


# ---- streamed response ----------------------------------------------------------------------------------------


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def json_delta(index: int, fragment: str) -> bytes:
    delta = {"type": "input_json_delta", "partial_json": fragment}
    return event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def block_stop(index: int) -> bytes:
    return event("content_block_stop", {"type": "content_block_stop", "index": index})


def streamed_call(index: int, name: str, tool_input: dict[str, Any], block_id: str) -> bytes:
    text = orjson.dumps(tool_input).decode()
    pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
    return (
        block_start(index, {"type": "tool_use", "id": block_id, "name": name, "input": {}})
        + json_delta(index, "")
        + b"".join(json_delta(index, piece) for piece in pieces)
        + block_stop(index)
    )


def stream(*blocks: bytes, stop_reason: str = "tool_use") -> bytes:
    start = {"type": "message_start", "message": {"id": "msg_s", "usage": {"input_tokens": 30, "output_tokens": 1}}}
    end = {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 12}}
    return (
        event("message_start", start)
        + b"".join(blocks)
        + event("message_delta", end)
        + event("message_stop", {"type": "message_stop"})
    )


def run(raw: bytes, response_tool: str | None) -> tuple[list[dict[str, Any]], AnthropicStreamTranslator]:
    decoder = SSEDecoder()
    translator = AnthropicStreamTranslator(PUBLIC, True, response_tool)
    lines: list[bytes] = []
    for at in range(0, len(raw), 7):  # 7-byte reads split UTF-8 characters
        for one in decoder.feed(raw[at : at + 7]):
            parsed = parse_sse_event(one)
            assert parsed is not None
            lines.extend(translator.feed(*parsed))
    assert lines[-1] == b"data: [DONE]\n\n"
    out = [orjson.loads(line[6:]) for line in lines[:-1]]
    for chunk in out:
        ChatCompletionChunk.model_validate(chunk)
    return out, translator


def deltas(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in out if c["choices"]]


def finish_reasons(out: list[dict[str, Any]]) -> list[str]:
    return [c["choices"][0]["finish_reason"] for c in out if c["choices"] and c["choices"][0]["finish_reason"]]


def test_streamed_answer_fragments_are_content() -> None:
    out, translator = run(stream(streamed_call(0, "Person", KIM, "toolu_1")), "Person")
    content = "".join(d.get("content") or "" for d in deltas(out))
    assert orjson.loads(content) == KIM
    assert not any("tool_calls" in d for d in deltas(out))
    assert finish_reasons(out) == ["stop"] and translator.finish_reason == "stop"
    assert translator.text == content and translator.has_output
    assert out[-1]["usage"]["completion_tokens"] == 12


def test_streamed_empty_answer_is_an_empty_object() -> None:
    out, _ = run(stream(streamed_call(0, "json_response", {}, "toolu_1")), "json_response")
    assert "".join(d.get("content") or "" for d in deltas(out)) == "{}"


def test_streamed_client_calls_beside_the_answer() -> None:
    text = block_start(0, {"type": "text", "text": ""}) + event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "잠시만요"}},
    )
    raw = stream(
        text + block_stop(0),
        streamed_call(1, "get_weather", {"city": "서울"}, "toolu_w"),
        streamed_call(2, "Person", KIM, "toolu_p"),
        streamed_call(3, "Person", {"name": "second"}, "toolu_q"),
    )
    out, translator = run(raw, "Person")
    calls = [c for d in deltas(out) for c in d.get("tool_calls", [])]
    assert {c["index"] for c in calls} == {0} and calls[0]["function"]["name"] == "get_weather"
    assert orjson.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "서울"}
    assert orjson.loads("".join(d.get("content") or "" for d in deltas(out))) == KIM
    assert finish_reasons(out) == ["tool_calls"]
    assert translator.text == orjson.dumps(KIM).decode()


def test_without_a_response_tool_the_stream_is_unchanged() -> None:
    out, _ = run(stream(streamed_call(0, "Person", KIM, "toolu_1")), None)
    assert finish_reasons(out) == ["tool_calls"]
    assert all(not d.get("content") for d in deltas(out))
