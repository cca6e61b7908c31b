"""OpenAI Responses ⇄ chat completions (``gateway/inbound/responses.py``), on fixed inputs."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.inbound.responses import ChatToResponsesStream, as_chat_completion, to_chat_request, to_response


def test_a_request_becomes_chat() -> None:
    chat = to_chat_request(
        {
            "model": "m",
            "instructions": "한국어로 답하세요.",
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "look "}, {"type": "input_text", "text": "here"}],
                },
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
                {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {"type": "function_call_output", "call_id": "c2", "output": {"n": 2}},
                {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
            "max_output_tokens": 50,
            "temperature": 0.1,
            "reasoning": {"effort": "low"},
            "stream": True,
        }
    )
    assert chat == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "한국어로 답하세요."},
            {"role": "user", "content": "look here"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
                    {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": '{"n":2}'},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
        ],
        "max_tokens": 50,
        "temperature": 0.1,
        "stream": True,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
        },
        "reasoning_effort": "low",
    }


def test_a_string_input_is_one_user_message() -> None:
    assert to_chat_request({"model": "m", "input": "hi"})["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"tools": [{"type": "file_search"}]}, "tools[0]"),
        ({"text": {"format": {"type": "grammar"}}}, "text.format"),
        ({"input": [{"type": "computer_call_output"}]}, "input[0]"),
    ],
)
def test_what_chat_cannot_carry_is_refused_by_name(extra: dict, param: str) -> None:
    with pytest.raises(GatewayError) as refused:
        to_chat_request({"model": "m", "input": "hi", **extra})
    assert refused.value.status == 400 and refused.value.param == param


def test_an_answer_becomes_a_response() -> None:
    response = to_response(
        {
            "id": "chatcmpl-9",
            "created": 1700000000,
            "choices": [
                {
                    "finish_reason": "length",
                    "message": {
                        "content": "부분",
                        "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a":1}'}}],
                    },
                }
            ],
            "usage": {
                "prompt_tokens": 20,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 8},
                "completion_tokens_details": {"reasoning_tokens": 2},
            },
        },
        "public",
    )
    assert (
        response["id"] == "resp_chatcmpl-9" and response["model"] == "public" and response["created_at"] == 1700000000
    )
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [item["type"] for item in response["output"]] == ["message", "function_call"]
    assert response["output"][0]["content"] == [{"type": "output_text", "text": "부분", "annotations": []}]
    assert response["output"][1]["call_id"] == "c1" and response["output"][1]["arguments"] == '{"a":1}'
    assert response["usage"] == {
        "input_tokens": 20,
        "input_tokens_details": {"cached_tokens": 8},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 25,
    }
    assert response["store"] is False
    back = as_chat_completion(response)["choices"][0]
    assert back["message"]["content"] == "부분" and back["finish_reason"] == "length"


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    return (
        b"data: "
        + orjson.dumps({"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        + b"\n\n"
    )


def _events(raw: bytes) -> list[dict]:
    return [orjson.loads(block.split(b"\ndata: ", 1)[1]) for block in raw.strip().split(b"\n\n")]


def test_a_stream_becomes_typed_events_in_order() -> None:
    stream = ChatToResponsesStream("public")
    raw = b"".join(
        [
            stream.feed(_chunk({"role": "assistant", "content": ""})),
            stream.feed(_chunk({"content": "Hi"}) + _chunk({"content": " there"})),
            stream.feed(
                _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]})
            ),
            stream.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "tool_calls")),
            stream.feed(b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'),
            stream.feed(b"data: [DONE]\n\n"),
        ]
    )
    events = _events(raw)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[6]["text"] == "Hi there"
    assert events[9]["output_index"] == 1 and events[9]["item"]["name"] == "f"
    assert events[12]["arguments"] == '{"a":1}'
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["usage"]["input_tokens"] == 7 and final["usage"]["output_tokens"] == 3 and final["model"] == "public"


def test_an_error_inside_the_stream_becomes_an_error_event() -> None:
    stream = ChatToResponsesStream("m")
    out = stream.feed(_chunk({"content": "a"}) + b'data: {"error": {"message": "boom", "code": 503}}\n\n')
    last = _events(out)[-1]
    assert last["type"] == "error" and last["message"] == "boom" and last["code"] == "503"
    assert stream.feed(_chunk({"content": "late"})) == b""
