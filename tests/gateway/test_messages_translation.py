"""Anthropic Messages ⇄ OpenAI chat completions (``gateway/inbound/messages.py``), on fixed inputs."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.inbound.messages import ChatToMessagesStream, check_request, to_chat_request, to_message


def _events(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in raw.decode().strip().split("\n\n"):
        name, data = block.split("\n", 1)
        out.append((name.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return out


def test_a_request_becomes_chat() -> None:
    chat = to_chat_request(
        {
            "model": "m",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "한국어로."}],
            "temperature": 0.2,
            "top_k": 5,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
            "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "look"}, _IMAGE]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "text", "text": "calling"},
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "42"}]},
                        {"type": "text", "text": "and?"},
                    ],
                },
            ],
        }
    )
    assert chat == {
        "model": "m",
        "max_tokens": 100,
        "temperature": 0.2,
        "top_k": 5,
        "stop": ["END"],
        "user": "u-1",
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "description": "d"}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "messages": [
            {"role": "system", "content": "Be brief.\n\n한국어로."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": "calling",
                "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "42"},
            {"role": "user", "content": "and?"},
        ],
    }


_IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice(choice: dict, expected: object) -> None:
    chat = to_chat_request({"model": "m", "max_tokens": 1, "messages": [], "tool_choice": choice})
    assert chat["tool_choice"] == expected


@pytest.mark.parametrize(
    "payload",
    [
        {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
        {"mcp_servers": [{"url": "x"}]},
        {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
        {"messages": [{"role": "system", "content": "x"}]},
    ],
)
def test_what_a_chat_host_cannot_take_is_refused_by_name(payload: dict) -> None:
    request = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}], **payload}
    with pytest.raises(GatewayError) as refused:
        to_chat_request(request)
    assert refused.value.status == 400 and refused.value.param


@pytest.mark.parametrize("max_tokens", [None, 0, -1, "8", True])
def test_max_tokens_is_required(max_tokens: object) -> None:
    with pytest.raises(GatewayError, match="max_tokens"):
        check_request({"model": "m", "max_tokens": max_tokens, "messages": []})


def test_an_answer_becomes_a_message() -> None:
    message = to_message(
        {
            "id": "chatcmpl-1",
            "choices": [
                {
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": "네, 찾아볼게요.",
                        "reasoning_content": "user wants weather",
                        "tool_calls": [
                            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": 30, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 16}},
        },
        "public",
    )
    assert message == {
        "id": "msg_chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "model": "public",
        "content": [
            {"type": "thinking", "thinking": "user wants weather", "signature": ""},
            {"type": "text", "text": "네, 찾아볼게요."},
            {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 14,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 16,
            "output_tokens": 7,
        },
    }


@pytest.mark.parametrize(("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens"), ("x", "end_turn")])
def test_stop_reasons(finish: str, stop: str) -> None:
    assert to_message({"choices": [{"finish_reason": finish, "message": {}}]}, "m")["stop_reason"] == stop


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def test_a_stream_becomes_anthropic_events_in_order() -> None:
    stream = ChatToMessagesStream("public")
    raw = b"".join(
        [
            stream.feed(_chunk({"role": "assistant"})),
            stream.feed(_chunk({"content": "안녕"}) + _chunk({"content": "하세요"})),
            stream.feed(_chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]})),
            # a chunk split across reads
            stream.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]})[:20]),
            stream.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]})[20:]),
            stream.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "tool_calls")),
            stream.feed(b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}\n\n'),
            stream.feed(b"data: [DONE]\n\n"),
        ]
    )
    events = _events(raw)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0][1]["message"]["model"] == "public"
    assert events[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert events[3][1]["delta"] == {"type": "text_delta", "text": "하세요"}
    assert events[5][1]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert [e[1]["delta"]["partial_json"] for e in events[6:8]] == ['{"a":', "1}"]
    assert events[9][1]["delta"]["stop_reason"] == "tool_use"
    assert events[9][1]["usage"]["input_tokens"] == 9 and events[9][1]["usage"]["output_tokens"] == 4


def test_an_error_inside_the_stream_becomes_an_error_event() -> None:
    stream = ChatToMessagesStream("m")
    out = stream.feed(_chunk({"content": "a"}) + b'data: {"error": {"message": "boom", "code": 503}}\n\n')
    name, data = _events(out)[-1]
    assert name == "error" and data == {"type": "error", "error": {"type": "api_error", "message": "boom"}}
