"""The Anthropic provider's translation layer: OpenAI chat requests → Messages API bodies, and Messages API
responses, SSE streams and errors → OpenAI's shapes (pure functions, no network)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.errors import GatewayError
from gateway.pricing import Usage
from gateway.providers.anthropic import (
    ANTHROPIC_PATH,
    DEFAULT_MAX_TOKENS,
    AnthropicStreamTranslator,
    anthropic_error,
    finish_reason,
    from_anthropic_response,
    parse_sse_event,
    request_headers,
    to_anthropic_request,
    usage_from_anthropic,
)
from gateway.sse import SSEDecoder

UPSTREAM = "claude-sonnet-4-5-20250929"
PUBLIC = "claude-public"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def translate(**payload: Any) -> dict[str, Any]:
    payload.setdefault("model", PUBLIC)
    return to_anthropic_request(payload, UPSTREAM)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def rejected(**payload: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        translate(**payload)
    assert caught.value.status == 400
    return caught.value


# ---- request ---------------------------------------------------------------------------------------------------


def test_path_and_headers() -> None:
    assert ANTHROPIC_PATH == "/messages"
    assert request_headers("sk-ant") == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant",
    }
    assert "x-api-key" not in request_headers(None)


def test_minimal_request_gets_the_default_max_tokens() -> None:
    body = translate(messages=[user("Hi")])
    assert body == {"model": UPSTREAM, "max_tokens": DEFAULT_MAX_TOKENS, "messages": [user("Hi")]}
    assert DEFAULT_MAX_TOKENS == 4096


def test_client_max_tokens_win_and_max_completion_tokens_first() -> None:
    assert translate(messages=[user("Hi")], max_tokens=7)["max_tokens"] == 7
    assert translate(messages=[user("Hi")], max_tokens=7, max_completion_tokens=9)["max_tokens"] == 9
    assert rejected(messages=[user("Hi")], max_tokens=0).param == "max_tokens"
    assert rejected(messages=[user("Hi")], max_completion_tokens="9").param == "max_completion_tokens"


def test_system_and_developer_messages_become_the_system_field() -> None:
    body = translate(
        messages=[
            {"role": "system", "content": "You are terse."},
            {
                "role": "developer",
                "content": [{"type": "text", "text": "Answer in French."}, {"type": "text", "text": "No emoji."}],
            },
            user("Hi"),
        ]
    )
    assert body["system"] == "You are terse.\n\nAnswer in French.\nNo emoji."
    assert body["messages"] == [user("Hi")]


def test_system_cache_control_is_kept_as_blocks() -> None:
    part = {"type": "text", "text": "Long shared context.", "cache_control": {"type": "ephemeral"}}
    body = translate(messages=[{"role": "system", "content": [part]}, user("Hi")])
    assert body["system"] == [{"type": "text", "text": "Long shared context.", "cache_control": {"type": "ephemeral"}}]


def test_multi_turn_merges_consecutive_roles_and_strips_a_final_prefill() -> None:
    body = translate(
        messages=[
            user("First."),
            {"role": "user", "content": [{"type": "text", "text": "Second."}]},
            {"role": "assistant", "content": "Answer."},
            {"role": "assistant", "content": ""},  # empty: left out
            user("Again?"),
            {"role": "assistant", "content": "Sure, "},
        ]
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "First."}, {"type": "text", "text": "Second."}]},
        {"role": "assistant", "content": "Answer."},
        {"role": "user", "content": "Again?"},
        {"role": "assistant", "content": "Sure,"},
    ]


def test_images_from_data_and_http_urls() -> None:
    body = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare:"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ]
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare:"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    bad = {"type": "image_url", "image_url": {"url": "ftp://example.com/cat.jpg"}}
    assert "image" in rejected(messages=[{"role": "user", "content": [bad]}]).message


def test_sampling_stop_stream_user_and_dropped_fields() -> None:
    body = translate(
        messages=[user("Hi")],
        temperature=0.2,
        top_p=0.9,
        stop="END",
        stream=True,
        stream_options={"include_usage": True},
        user="user-42",
        seed=7,
        frequency_penalty=0.5,
        presence_penalty=0.1,
        metadata={"reference": "x"},
        n=1,
        logprobs=False,
        store=False,
    )
    assert body == {
        "model": UPSTREAM,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [user("Hi")],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": True,
        "metadata": {"user_id": "user-42"},
    }
    assert translate(messages=[user("Hi")], stop=["a", "", "b"])["stop_sequences"] == ["a", "b"]
    assert "stop_sequences" not in translate(messages=[user("Hi")], stop=[])
    assert "stream" not in translate(messages=[user("Hi")], stream=False)
    assert rejected(messages=[user("Hi")], temperature=1.5).param == "temperature"


def test_simulate_field_reaches_the_simulator() -> None:
    assert translate(messages=[user("Hi")], simulate={"fault": "error"})["simulate"] == {"fault": "error"}


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": True,
        },
    },
    {"type": "function", "function": {"name": "now"}},
]


def test_tools_and_tool_choice() -> None:
    body = translate(messages=[user("Hi")], tools=TOOLS)
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather of a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body
    cases = {
        "auto": {"type": "auto"},
        "required": {"type": "any"},
        "none": {"type": "none"},
    }
    for choice, expected in cases.items():
        assert translate(messages=[user("Hi")], tools=TOOLS, tool_choice=choice)["tool_choice"] == expected
    named = {"type": "function", "function": {"name": "now"}}
    assert translate(messages=[user("Hi")], tools=TOOLS, tool_choice=named)["tool_choice"] == {
        "type": "tool",
        "name": "now",
    }
    assert translate(messages=[user("Hi")], tools=TOOLS, parallel_tool_calls=False)["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    assert rejected(messages=[user("Hi")], tools=[{"type": "custom", "custom": {"name": "x"}}]).param == "tools[0]"


def test_tool_calls_and_tool_results() -> None:
    body = translate(
        messages=[
            user("Weather in Paris and Rome?"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {"id": "call.2:x", "type": "function", "function": {"name": "now", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 C"},
            {"role": "tool", "tool_call_id": "call.2:x", "content": [{"type": "text", "text": "12:00"}]},
            user("Thanks!"),
        ],
        tools=TOOLS,
    )
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2_x", "name": "now", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny, 24 C"},
                {"type": "tool_result", "tool_use_id": "call_2_x", "content": [{"type": "text", "text": "12:00"}]},
                {"type": "text", "text": "Thanks!"},
            ],
        },
    ]


def test_assistant_text_with_tool_calls_and_results_go_first() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "now", "arguments": "{}"}}
    body = translate(
        messages=[
            user("Time?"),
            {"role": "assistant", "content": "Let me check.", "tool_calls": [call]},
            user("(waiting)"),
            {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
        ],
    )
    assert body["messages"][1]["content"][0] == {"type": "text", "text": "Let me check."}
    assert [block["type"] for block in body["messages"][2]["content"]] == ["tool_result", "text"]


def test_bad_tool_call_arguments_are_a_400() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "now", "arguments": "{not json"}}
    error = rejected(messages=[user("Hi"), {"role": "assistant", "tool_calls": [call]}])
    assert "not valid JSON" in error.message and error.param == "messages[1].tool_calls[0]"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"response_format": {"type": "grammar", "grammar": "root ::= x"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "l", "schema": {"type": "array"}}}},
            "response_format",
        ),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"web_search_options": {}}, "web_search_options"),
    ],
)
def test_unsupported_fields_are_rejected(fields: dict[str, Any], param: str) -> None:
    error = rejected(messages=[user("Hi")], **fields)
    assert error.param == param
    assert "not supported" in error.message and "Anthropic" in error.message
    assert error.body()["error"]["type"] == "invalid_request_error"


def test_malformed_messages_are_a_400() -> None:
    assert rejected(messages=[{"role": "system", "content": "only a system prompt"}]).param == "messages"
    assert rejected(messages=[{"role": "wizard", "content": "x"}]).param == "messages"
    assert rejected(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]).param == "messages[0].content[0]"
    assert rejected(messages=[]).param == "messages"
    assert rejected(messages=[user("Hi")], n=0).param == "n"


# ---- unary response --------------------------------------------------------------------------------------------


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": UPSTREAM,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6, **usage},
    }


def test_text_response() -> None:
    body = message(
        [{"type": "text", "text": "Hello"}, {"type": "text", "text": ", world"}],
        cache_read_input_tokens=100,
        cache_creation_input_tokens=20,
    )
    out = from_anthropic_response(body, PUBLIC)
    ChatCompletion.model_validate(out)
    assert out["id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert out["object"] == "chat.completion" and out["model"] == PUBLIC and isinstance(out["created"], int)
    assert out["choices"][0]["message"]["content"] == "Hello, world"
    assert "tool_calls" not in out["choices"][0]["message"]
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"] == {
        "prompt_tokens": 132,
        "completion_tokens": 6,
        "total_tokens": 138,
        "prompt_tokens_details": {"cached_tokens": 100},
    }


def test_tool_use_response() -> None:
    tool = {
        "type": "tool_use",
        "id": "toolu_01A09q90qw90lq917835lq9",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    out = from_anthropic_response(message([tool], "tool_use"), PUBLIC)
    ChatCompletion.model_validate(out)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    with_text = from_anthropic_response(message([{"type": "text", "text": "Checking."}, tool], "tool_use"), PUBLIC)
    assert with_text["choices"][0]["message"]["content"] == "Checking."


def test_not_a_message_is_an_invalid_upstream_response() -> None:
    with pytest.raises(GatewayError) as caught:
        from_anthropic_response({"type": "something"}, PUBLIC)
    assert caught.value.status == 502 and caught.value.code == "upstream_invalid_response"


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("some_future_reason", "stop"),
        (None, None),
    ],
)
def test_finish_reasons(stop_reason: str | None, expected: str | None) -> None:
    assert finish_reason(stop_reason) == expected


def test_usage_counts_cache_reads_and_writes_as_input_and_keeps_them_apart() -> None:
    usage = {"input_tokens": 10, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 50, "output_tokens": 7}
    measured = usage_from_anthropic(usage)
    assert measured == Usage(input=360, output=7, cached_input=300, cache_write=50)
    assert measured is not None and measured.uncached_input == 10
    assert usage_from_anthropic({"input_tokens": 3, "output_tokens": 1, "cache_read_input_tokens": None}) == Usage(
        3, 1, 0
    )
    assert usage_from_anthropic(None) is None


# ---- errors ----------------------------------------------------------------------------------------------------


def anthropic_body(err_type: str, text: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": err_type, "message": text}, "request_id": "req_011"})


@pytest.mark.parametrize(
    ("status", "err_type", "client_status", "openai_type", "code"),
    [
        (400, "invalid_request_error", 400, "invalid_request_error", None),
        (401, "authentication_error", 502, "upstream_error", "upstream_auth_error"),
        (403, "permission_error", 502, "upstream_error", "upstream_auth_error"),
        (404, "not_found_error", 404, "invalid_request_error", "not_found"),
        (413, "request_too_large", 413, "invalid_request_error", "request_too_large"),
        (429, "rate_limit_error", 429, "requests", "rate_limit_exceeded"),
        (500, "api_error", 502, "upstream_error", "upstream_http_error"),
        (529, "overloaded_error", 502, "upstream_error", "upstream_overloaded"),
    ],
)
def test_error_mapping(status: int, err_type: str, client_status: int, openai_type: str, code: str | None) -> None:
    got_status, body = anthropic_error(status, anthropic_body(err_type, "the message"))
    assert got_status == client_status
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == openai_type and body["error"]["code"] == code
    assert "the message" in body["error"]["message"]
    if status in (400, 404, 413, 429):
        assert body["error"]["message"] == "the message"


def test_error_without_a_json_body() -> None:
    status, body = anthropic_error(502, b"<html>Bad Gateway</html>")
    assert status == 502 and "Bad Gateway" in body["error"]["message"]
    assert anthropic_error(500, b"")[1]["error"]["message"].endswith("HTTP 500")


# ---- streaming -------------------------------------------------------------------------------------------------

# Shaped like the tool-use streaming example of Anthropic's documentation, with a ping and split TCP reads.
RECORDED = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message",'
    b'"role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,'
    b'"cache_creation_input_tokens":0,"cache_read_input_tokens":1024,"output_tokens":2},"content":[],'
    b'"stop_reason":null}}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b"event: ping\n"
    b'data: {"type": "ping"}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", let\'s check"}}\n\n'
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":0}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use",'
    b'"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":"{\\"location\\": \\"San Fra"}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":"ncisco, CA\\"}"}}\n\n'
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":1}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
    b'"usage":{"output_tokens":89}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)


def run_stream(raw: bytes, include_usage: bool, read_size: int = 37) -> tuple[list[bytes], AnthropicStreamTranslator]:
    """Feed ``raw`` in reads of ``read_size`` bytes through the gateway's SSE decoder and the translator."""
    decoder = SSEDecoder()
    translator = AnthropicStreamTranslator(PUBLIC, include_usage)
    out: list[bytes] = []
    for at in range(0, len(raw), read_size):
        for event in decoder.feed(raw[at : at + read_size]):
            parsed = parse_sse_event(event)
            assert parsed is not None
            out.extend(translator.feed(*parsed))
    assert decoder.flush() is None
    return out, translator


def chunks(lines: list[bytes]) -> list[dict[str, Any]]:
    assert all(line.startswith(b"data: ") and line.endswith(b"\n\n") for line in lines)
    assert lines[-1] == b"data: [DONE]\n\n"
    return [orjson.loads(line[6:]) for line in lines[:-1]]


def test_stream_translation_of_text_and_tool_use() -> None:
    lines, translator = run_stream(RECORDED, include_usage=True)
    parsed = chunks(lines)
    for chunk in parsed:
        ChatCompletionChunk.model_validate(chunk)
        assert chunk["id"] == "msg_014p7gG3wDgGV9EUtLvnow3U" and chunk["model"] == PUBLIC
        assert chunk["object"] == "chat.completion.chunk"
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in parsed if c["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == "Okay, let's check"
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert orjson.loads(arguments) == {"location": "San Francisco, CA"}
    assert all(call["index"] == 0 for call in calls)
    finish = [c for c in parsed if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "tool_calls"
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"] == {
        "prompt_tokens": 1496,
        "completion_tokens": 89,
        "total_tokens": 1585,
        "prompt_tokens_details": {"cached_tokens": 1024},
    }
    assert translator.usage == Usage(input=1496, output=89, cached_input=1024)
    assert translator.finish_reason == "tool_calls"
    assert translator.text == "Okay, let's check"
    assert translator.done and translator.error is None and translator.has_output


def test_stream_without_include_usage_still_measures_usage() -> None:
    lines, translator = run_stream(RECORDED, include_usage=False, read_size=5)
    assert all(c["choices"] for c in chunks(lines))
    assert translator.usage == Usage(input=1496, output=89, cached_input=1024)


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def message_start(message_id: str = "msg_1") -> bytes:
    usage = {"input_tokens": 3, "output_tokens": 1}
    return event("message_start", {"type": "message_start", "message": {"id": message_id, "usage": usage}})


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def test_tool_call_without_input_gets_empty_object_arguments() -> None:
    raw = (
        message_start()
        + block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}})
        + block_delta(0, {"type": "input_json_delta", "partial_json": ""})
        + event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {}})
        + event("message_stop", {"type": "message_stop"})
    )
    parsed = chunks(run_stream(raw, include_usage=False)[0])
    calls = [call for c in parsed for call in c["choices"][0]["delta"].get("tool_calls", [])]
    assert "".join(call["function"]["arguments"] for call in calls) == "{}"


def test_error_event_mid_stream() -> None:
    raw = (
        message_start()
        + block_start(0, {"type": "text", "text": ""})
        + block_delta(0, {"type": "text_delta", "text": "Hel"})
        + event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        + block_delta(0, {"type": "text_delta", "text": "lo"})
    )
    lines, translator = run_stream(raw, include_usage=True)
    assert lines[-1] == b"data: [DONE]\n\n"
    error = orjson.loads(lines[-2][6:])
    assert error == translator.error
    assert error["error"]["type"] == "upstream_error" and error["error"]["code"] == "upstream_overloaded"
    assert "Overloaded" in error["error"]["message"]
    assert translator.error_status == 502 and translator.done
    assert translator.text == "Hel"  # what came after the error was ignored
    assert translator.finish_reason is None


def test_invalid_request_error_event_keeps_its_message() -> None:
    translator = AnthropicStreamTranslator(PUBLIC, include_usage=False)
    translator.feed("error", {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
    assert translator.error_status == 400 and translator.error is not None
    assert translator.error["error"]["message"] == "bad"


def test_ping_and_unknown_events_give_nothing() -> None:
    translator = AnthropicStreamTranslator(PUBLIC, include_usage=True)
    assert translator.feed("ping", {"type": "ping"}) == []
    assert translator.feed("some_new_event", {"type": "some_new_event"}) == []
    assert translator.usage is None and not translator.done and not translator.has_output
    assert translator.feed("message_start", {"type": "message_start", "message": {"id": "msg_2"}})
    assert not translator.has_output  # the role chunk is not output


def test_parse_sse_event() -> None:
    assert parse_sse_event(b'event: ping\ndata: {"type": "ping"}') == ("ping", {"type": "ping"})
    multi = b'event: message_stop\ndata: {"type":\ndata: "message_stop"}'
    assert parse_sse_event(multi) == ("message_stop", {"type": "message_stop"})
    assert parse_sse_event(b'data: {"type": "message_stop"}') == ("message_stop", {"type": "message_stop"})
    assert parse_sse_event(b'event:ping\ndata:{"type":"ping"}') == ("ping", {"type": "ping"})
    assert parse_sse_event(b": keep-alive comment") is None
    assert parse_sse_event(b"event: ping\ndata: {not json") is None
    assert parse_sse_event(b"event: x\ndata: [1, 2]") is None
    assert parse_sse_event(b"data: {}") is None  # no event name and no type


def test_feed_raw_and_events_after_the_end_are_ignored() -> None:
    translator = AnthropicStreamTranslator(PUBLIC, include_usage=False)
    out = translator.feed_raw(b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_9"}}')
    assert len(out) == 1 and b'"role":"assistant"' in out[0]
    assert translator.feed_raw(b"garbage") == []
    assert translator.feed("message_stop", {"type": "message_stop"}) == [b"data: [DONE]\n\n"]
    assert translator.feed("message_stop", {"type": "message_stop"}) == []
