"""The Anthropic simulator's extended thinking and ``cache_control`` breakpoints, with the official ``anthropic`` SDK
(``messages.create``, ``messages.stream``) and raw HTTP for the stream's wire format."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from llmops.simulator.anthropic import BackgroundAnthropicSimulator

KEY = "sk-ant-test"
MODEL = "claude-sim-1"
THINKING = {"type": "enabled", "budget_tokens": 2000}
WEATHER = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[BackgroundAnthropicSimulator]:
    with BackgroundAnthropicSimulator(echo=True, api_key=KEY) as running:
        yield running


@pytest.fixture(scope="module")
def client(sim: BackgroundAnthropicSimulator) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.url, api_key=KEY, max_retries=0)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def raw(sim: BackgroundAnthropicSimulator, body: dict[str, Any]) -> httpx.Response:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    return httpx.post(sim.url + "/v1/messages", json={"model": MODEL, **body}, headers=headers)


def events(response: httpx.Response) -> list[dict[str, Any]]:
    out = []
    for block in response.text.strip().split("\n\n"):
        name, data = block.split("\n")
        payload = orjson.loads(data[6:])
        assert payload["type"] == name[7:]
        out.append(payload)
    return out


def test_thinking_block_then_text(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=4000, thinking=THINKING, messages=user("think then echo"))
    thinking, text = message.content
    assert thinking.type == "thinking" and len(thinking.thinking.split()) == 24 and thinking.signature
    assert text.type == "text" and text.text == "think then echo" and message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 24 + 3
    again = client.messages.create(model=MODEL, max_tokens=4000, thinking=THINKING, messages=user("think then echo"))
    assert again.content[0].thinking == thinking.thinking and again.content[0].signature == thinking.signature
    plain = client.messages.create(model=MODEL, max_tokens=50, messages=user("no thinking"))
    assert [block.type for block in plain.content] == ["text"]
    disabled = client.messages.create(model=MODEL, max_tokens=50, thinking={"type": "disabled"}, messages=user("x"))
    assert [block.type for block in disabled.content] == ["text"]


def test_thinking_stream_with_the_sdk(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=4000, thinking=THINKING, messages=user("stream it")) as stream:
        kinds = [(event.type, getattr(getattr(event, "delta", None), "type", None)) for event in stream]
        final = stream.get_final_message()
    assert ("content_block_delta", "thinking_delta") in kinds and ("content_block_delta", "signature_delta") in kinds
    assert final.content[0].type == "thinking" and final.content[0].signature
    assert final.content[1].text == "stream it" and final.usage.output_tokens == 24 + 2


def test_thinking_stream_wire_format(sim: BackgroundAnthropicSimulator) -> None:
    got = events(raw(sim, {"max_tokens": 3000, "thinking": THINKING, "messages": user("a b"), "stream": True}))
    kinds = [e["type"] for e in got]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"] and kinds.count("ping") == 1
    starts = [e for e in got if e["type"] == "content_block_start"]
    assert starts[0] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    }
    assert starts[1]["index"] == 1 and starts[1]["content_block"] == {"type": "text", "text": ""}
    deltas = [e for e in got if e["type"] == "content_block_delta"]
    thinking = [e["delta"]["thinking"] for e in deltas if e["delta"]["type"] == "thinking_delta"]
    signatures = [e for e in deltas if e["delta"]["type"] == "signature_delta"]
    assert len(thinking) == 24 and len(signatures) == 1 and signatures[0]["index"] == 0
    after_signature = kinds.index("content_block_stop")
    assert got[after_signature - 1] == signatures[0]  # the signature closes the thinking block
    assert "".join(e["delta"]["text"] for e in deltas if e["delta"]["type"] == "text_delta") == "a b"
    assert got[-2]["usage"]["output_tokens"] == 26


def test_thinking_with_tool_use_and_the_round_trip(
    client: anthropic.Anthropic, sim: BackgroundAnthropicSimulator
) -> None:
    ask = user('call tool get_weather {"city": "Seoul"}')
    first = client.messages.create(model=MODEL, max_tokens=4000, thinking=THINKING, tools=[WEATHER], messages=ask)
    assert [block.type for block in first.content] == ["thinking", "tool_use"] and first.stop_reason == "tool_use"
    tool_use = first.content[1]
    assert tool_use.input == {"city": "Seoul"}
    turn = [
        *ask,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "Sunny"}]},
    ]
    second = client.messages.create(model=MODEL, max_tokens=4000, thinking=THINKING, tools=[WEATHER], messages=turn)
    assert second.content[-1].type == "text" and second.stop_reason == "end_turn"
    got = events(
        raw(sim, {"max_tokens": 4000, "thinking": THINKING, "tools": [WEATHER], "messages": ask, "stream": True})
    )
    tool_start = next(e for e in got if e["type"] == "content_block_start" and e["index"] == 1)
    assert tool_start["content_block"]["type"] == "tool_use"
    partial = [e["delta"]["partial_json"] for e in got if e.get("delta", {}).get("type") == "input_json_delta"]
    assert orjson.loads("".join(partial)) == {"city": "Seoul"}
    unsigned = [*ask, {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}]}, *user("go on")]
    response = raw(sim, {"max_tokens": 10, "messages": unsigned})
    assert response.status_code == 400 and "signature" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 500}}, "greater than or equal to 1024"),
        ({"max_tokens": 1500, "thinking": {"type": "enabled", "budget_tokens": 2000}}, "`max_tokens` must be greater"),
        ({"max_tokens": 4000, "thinking": THINKING, "temperature": 0.5}, "`temperature` may only be set to 1"),
        (
            {"max_tokens": 4000, "thinking": THINKING, "tools": [WEATHER], "tool_choice": {"type": "any"}},
            "forces tool use",
        ),
        ({"max_tokens": 4000, "thinking": {"type": "on"}}, "thinking: Input tag"),
    ],
)
def test_thinking_validation(sim: BackgroundAnthropicSimulator, body: dict[str, Any], message: str) -> None:
    response = raw(sim, {**body, "messages": user("x")})
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


def test_cache_control_breakpoints_in_messages(client: anthropic.Anthropic) -> None:
    document = f"Long shared document {uuid.uuid4().hex} with several words in it"  # 9 tokens
    cached = {"type": "text", "text": document, "cache_control": {"type": "ephemeral"}}
    messages = [{"role": "user", "content": [cached, {"type": "text", "text": "Question one?"}]}]
    first = client.messages.create(model=MODEL, max_tokens=20, system="Be brief.", messages=messages)
    assert first.usage.cache_creation_input_tokens == 2 + 9 and first.usage.cache_read_input_tokens == 0
    assert first.usage.input_tokens == 2  # the words after the breakpoint
    messages[0]["content"][1]["text"] = "A different question now?"
    second = client.messages.create(model=MODEL, max_tokens=20, system="Be brief.", messages=messages)
    assert second.usage.cache_read_input_tokens == 11 and second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == 4
    counted = client.messages.count_tokens(model=MODEL, system="Be brief.", messages=messages)
    assert counted.input_tokens == 15  # counting tokens reads no cache
    with client.messages.stream(model=MODEL, max_tokens=20, system="Be brief.", messages=messages) as stream:
        assert stream.get_final_message().usage.cache_read_input_tokens == 11
