"""The Anthropic Messages API simulator over real HTTP (the official ``anthropic`` SDK and raw HTTP for the wire
format), and the gateway's translation layer run against it: OpenAI request → Messages API → OpenAI response."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anthropic
import httpx
import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.errors import GatewayError
from gateway.providers.anthropic import (
    ANTHROPIC_PATH,
    AnthropicStreamTranslator,
    anthropic_error,
    from_anthropic_response,
    request_headers,
    to_anthropic_request,
)
from gateway.sse import SSEDecoder
from llmops.simulator.anthropic import BackgroundAnthropicSimulator
from tests.support import REPO, free_port, wait_http

KEY = "sk-ant-test"
MODEL = "claude-sim-1"
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    {"name": "now", "input_schema": {"type": "object", "properties": {}}},
]


@pytest.fixture(scope="module")
def sim() -> Iterator[BackgroundAnthropicSimulator]:
    """An echo simulator that wants ``KEY``."""
    with BackgroundAnthropicSimulator(echo=True, api_key=KEY) as running:
        yield running


@pytest.fixture(scope="module")
def client(sim: BackgroundAnthropicSimulator) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.url, api_key=KEY, max_retries=0)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def raw_post(sim: BackgroundAnthropicSimulator, body: dict[str, Any], **headers: str) -> httpx.Response:
    sent = {"x-api-key": KEY, "anthropic-version": "2023-06-01", **headers}
    return httpx.post(sim.url + "/v1/messages", json=body, headers={k: v for k, v in sent.items() if v})


def sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """Events as (name, data), checking Anthropic's framing: ``event: NAME\\ndata: JSON`` and a blank line."""
    assert response.headers["content-type"].startswith("text/event-stream")
    text = response.text
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        name, data = name_line[7:], orjson.loads(data_line[6:])
        assert data["type"] == name
        events.append((name, data))
    return events


# ---- the simulator, with Anthropic's SDK -----------------------------------------------------------------------


def test_echo_message(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, system="Be brief.", messages=user("Hello there,  wide world")
    )
    assert raw.headers["request-id"].startswith("req_")
    message = raw.parse()
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hello there,  wide world"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == 6
    assert message.usage.output_tokens == 4


def test_stream_with_the_sdk(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=100, messages=user("one two three")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "one two three" == final.content[0].text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 3 and final.usage.input_tokens == 3


def test_stream_wire_format(sim: BackgroundAnthropicSimulator) -> None:
    response = raw_post(sim, {"model": MODEL, "max_tokens": 100, "stream": True, "messages": user("a b c")})
    assert response.status_code == 200 and response.headers["request-id"].startswith("req_")
    events = sse(response)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["type"] == "message" and start["role"] == "assistant"
    assert start["model"] == MODEL and start["content"] == []
    assert start["stop_reason"] is None and start["stop_sequence"] is None
    assert {"input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens"} <= set(
        start["usage"]
    )
    assert start["usage"]["input_tokens"] == 3
    assert events[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert deltas == [{"type": "text_delta", "text": t} for t in ("a", " b", " c")]
    assert events[6][1] == {"type": "content_block_stop", "index": 0}
    assert events[7][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 3},
    }
    assert events[8][1] == {"type": "message_stop"}


def test_max_tokens_and_stop_sequences(client: anthropic.Anthropic) -> None:
    cut = client.messages.create(model=MODEL, max_tokens=2, messages=user("one two three four"))
    assert cut.content[0].text == "one two" and cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 2
    stopped = client.messages.create(
        model=MODEL, max_tokens=100, stop_sequences=["three"], messages=user("one two three four")
    )
    assert stopped.content[0].text == "one two " and stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == "three"


def test_generated_answers_are_deterministic() -> None:
    with BackgroundAnthropicSimulator(output_tokens=5) as lorem:
        client = anthropic.Anthropic(base_url=lorem.url, api_key="anything", max_retries=0)
        first = client.messages.create(model=MODEL, max_tokens=100, messages=user("Tell me a story"))
        again = client.messages.create(model=MODEL, max_tokens=100, messages=user("Tell me a story"))
    assert first.content[0].text == again.content[0].text
    assert len(first.content[0].text.split()) == 5 == first.usage.output_tokens


def test_scripted_tool_call(client: anthropic.Anthropic) -> None:
    ask = user('Please call tool get_weather {"city": "Paris"} now')
    message = client.messages.create(model=MODEL, max_tokens=100, tools=TOOLS, messages=ask)
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
    assert block.id.startswith("toolu_")
    with client.messages.stream(model=MODEL, max_tokens=100, tools=TOOLS, messages=ask) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == {"city": "Paris"} and final.stop_reason == "tool_use"
    # without the tool in the request, the phrase is just text
    plain = client.messages.create(model=MODEL, max_tokens=100, messages=ask)
    assert plain.stop_reason == "end_turn"


def test_tool_stream_wire_format(sim: BackgroundAnthropicSimulator) -> None:
    body = {"model": MODEL, "max_tokens": 100, "stream": True, "tools": TOOLS, "messages": user("call tool now")}
    events = sse(raw_post(sim, body))
    assert events[1][1]["content_block"]["type"] == "tool_use"
    assert events[1][1]["content_block"]["name"] == "now" and events[1][1]["content_block"]["input"] == {}
    pieces = [data["delta"]["partial_json"] for name, data in events if name == "content_block_delta"]
    assert pieces[0] == "" and all(
        d["delta"]["type"] == "input_json_delta" for n, d in events if n.endswith("delta") and "index" in d
    )
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_tool_choice_forces_or_forbids_calls(client: anthropic.Anthropic) -> None:
    forced = client.messages.create(
        model=MODEL, max_tokens=100, tools=TOOLS, tool_choice={"type": "any"}, messages=user("hello")
    )
    assert forced.content[0].type == "tool_use" and forced.content[0].name == "get_weather"
    named = client.messages.create(
        model=MODEL, max_tokens=100, tools=TOOLS, tool_choice={"type": "tool", "name": "now"}, messages=user("hi")
    )
    assert named.content[0].name == "now"
    none = client.messages.create(
        model=MODEL, max_tokens=100, tools=TOOLS, tool_choice={"type": "none"}, messages=user("call tool now")
    )
    assert none.stop_reason == "end_turn"


def test_tool_result_round_trip(client: anthropic.Anthropic) -> None:
    messages = [
        {"role": "user", "content": "call tool now"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "It is noon"}]},
    ]
    answer = client.messages.create(model=MODEL, max_tokens=100, tools=TOOLS, messages=messages)
    assert answer.content[0].text == "It is noon" and answer.stop_reason == "end_turn"


def test_cache_tokens_for_a_system_prompt_seen_before(client: anthropic.Anthropic) -> None:
    system = f"You are a helpful assistant {uuid.uuid4().hex}."
    first = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=user("hi there"))
    assert first.usage.cache_read_input_tokens == 0 and first.usage.input_tokens == 8
    second = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=user("hi there"))
    assert second.usage.cache_read_input_tokens == 6 and second.usage.input_tokens == 2
    cached = [{"type": "text", "text": f"Cached context {uuid.uuid4().hex}", "cache_control": {"type": "ephemeral"}}]
    written = client.messages.create(model=MODEL, max_tokens=10, system=cached, messages=user("hi"))
    assert written.usage.cache_creation_input_tokens == 3 and written.usage.input_tokens == 1


def test_api_key_is_checked(sim: BackgroundAnthropicSimulator) -> None:
    wrong = anthropic.Anthropic(base_url=sim.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        wrong.messages.create(model=MODEL, max_tokens=10, messages=user("hi"))
    assert caught.value.status_code == 401
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert (
        raw_post(sim, {"model": MODEL, "max_tokens": 5, "messages": user("hi")}, **{"x-api-key": ""}).status_code == 401
    )


def test_anthropic_version_header_is_required(sim: BackgroundAnthropicSimulator) -> None:
    response = raw_post(sim, {"model": MODEL, "max_tokens": 5, "messages": user("hi")}, **{"anthropic-version": ""})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }


TOOL_USE = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "now", "input": {}}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": MODEL, "messages": user("hi")}, "max_tokens: Field required"),
        ({"max_tokens": 5, "messages": user("hi")}, "model: Field required"),
        ({"model": MODEL, "max_tokens": 5}, "messages: Field required"),
        ({"model": MODEL, "max_tokens": 5, "messages": user("hi"), "seed": 1}, "seed: Extra inputs are not permitted"),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "assistant", "content": "hi"}]},
            'first message must use the "user" role',
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": user("a") + user("b")},
            'roles must alternate between "user" and "assistant"',
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}],
            },
            "text content blocks must be non-empty",
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [*user("a"), {"role": "assistant", "content": "b "}]},
            "final assistant content cannot end with trailing whitespace",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}],
            },
            "unexpected `tool_use_id` found in `tool_result` blocks: toolu_x",
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [*user("a"), TOOL_USE, *user("b")]},
            "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_9",
        ),
        ({"model": MODEL, "max_tokens": 5, "messages": user("a"), "temperature": 1.5}, "temperature"),
        ({"model": MODEL, "max_tokens": 5, "messages": user("a"), "tool_choice": {"type": "auto_x"}}, "tool_choice"),
        ({"model": MODEL, "max_tokens": 0, "messages": user("a")}, "max_tokens"),
    ],
)
def test_validation_errors(sim: BackgroundAnthropicSimulator, body: dict[str, Any], message: str) -> None:
    response = raw_post(sim, body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["type"] == "error" and payload["request_id"].startswith("req_")
    assert payload["error"]["type"] == "invalid_request_error"
    assert message in payload["error"]["message"]


def test_fault_errors(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        client.messages.create(
            model=MODEL, max_tokens=5, messages=user("hi"), extra_body={"simulate": {"fault": "error", "status": 529}}
        )
    assert overloaded.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(
            model=MODEL, max_tokens=5, messages=user("hi"), extra_body={"simulate": {"fault": "error", "status": 429}}
        )
    assert limited.value.response.headers["retry-after"] == "1"
    with pytest.raises(anthropic.InternalServerError) as failed:
        client.messages.create(
            model=MODEL,
            max_tokens=5,
            messages=user("hi"),
            extra_body={"simulate": {"fault": "error", "message": "boom"}},
        )
    assert failed.value.status_code == 500 and failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert failed.value.body["error"]["message"] == "boom"  # type: ignore[index]


def test_midstream_error(sim: BackgroundAnthropicSimulator, client: anthropic.Anthropic) -> None:
    simulate = {"fault": "midstream_error", "after_tokens": 2}
    body = {"model": MODEL, "max_tokens": 50, "stream": True, "messages": user("a b c d e"), "simulate": simulate}
    response = raw_post(sim, body)
    assert response.status_code == 200
    events = sse(response)
    assert [name for name, _ in events][-3:] == ["content_block_delta", "content_block_delta", "error"]
    assert events[-1][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        client.messages.stream(
            model=MODEL, max_tokens=50, messages=user("a b c d"), extra_body={"simulate": simulate}
        ) as stream,
    ):
        for _ in stream:
            pass
    unary = raw_post(sim, {**body, "stream": False})
    assert unary.status_code == 529 and unary.json()["error"]["type"] == "overloaded_error"


def test_models_count_tokens_unknown_model_and_paths() -> None:
    with BackgroundAnthropicSimulator(models=(MODEL,)) as only:
        client = anthropic.Anthropic(base_url=only.url, api_key="x", max_retries=0)
        with pytest.raises(anthropic.NotFoundError) as caught:
            client.messages.create(model="claude-other", max_tokens=5, messages=user("hi"))
        assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
        assert client.messages.count_tokens(model=MODEL, system="Be nice.", messages=user("a b c")).input_tokens == 5
        assert [model.id for model in client.models.list()] == [MODEL]
        missing = httpx.get(only.url + "/v1/nothing")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_command_line() -> None:
    port = free_port()
    command = ["simulate", "--api", "anthropic", "--port", str(port), "--echo", "--api-key", "k"]
    process = subprocess.Popen(
        [sys.executable, "-m", "llmops.cli", *command],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", process=process)
        client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="k", max_retries=0)
        assert client.messages.create(model=MODEL, max_tokens=9, messages=user("ping")).content[0].text == "ping"
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


def test_command_line_flags_of_the_anthropic_api(capsys: pytest.CaptureFixture[str]) -> None:
    """`llmops simulate --api anthropic` takes the server and generation flags (any model unless --model is given);
    a flag only the OpenAI-compatible simulator has is refused, as a bad value is, in one line with status 2."""
    from llmops.cli import build_parser, main
    from llmops.simulator.settings import anthropic_settings_from_args

    args = build_parser().parse_args(["simulate", "--api", "anthropic", "--echo", "--ttft-ms", "5"])
    settings = anthropic_settings_from_args(args)
    assert settings.models == () and settings.echo and settings.ttft_ms == 5 and settings.port == 8000
    named = build_parser().parse_args(["simulate", "--api", "anthropic", "--model", MODEL, "--max-num-seqs", "256"])
    assert anthropic_settings_from_args(named).models == (MODEL,)  # an OpenAI-only flag at its default is harmless
    assert main(["simulate", "--api", "anthropic", "--max-num-seqs", "4", "--error-rate", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err == "llmops simulate: --error-rate, --max-num-seqs: not supported with --api anthropic\n"
    assert main(["simulate", "--api", "anthropic", "--tokens-per-second", "-1"]) == 2
    assert "--tokens-per-second: Input should be greater than or equal to 0" in capsys.readouterr().err


# ---- the translation layer against the simulator ---------------------------------------------------------------


async def exchange(
    sim: BackgroundAnthropicSimulator, payload: dict[str, Any], key: str = KEY
) -> tuple[int, Any, AnthropicStreamTranslator | None]:
    """What the gateway will do: translate, POST, translate back. Returns (status, OpenAI body or chunk lines,
    the stream translator)."""
    body = to_anthropic_request({"model": "public", **payload}, MODEL)
    async with (
        aiohttp.ClientSession() as session,
        session.post(sim.base_url + ANTHROPIC_PATH, data=orjson.dumps(body), headers=request_headers(key)) as up,
    ):
        if up.status >= 400:
            status, error = anthropic_error(up.status, await up.read())
            return status, error, None
        if not body.get("stream"):
            return 200, from_anthropic_response(orjson.loads(await up.read()), "public"), None
        options = payload.get("stream_options") or {}
        translator = AnthropicStreamTranslator("public", bool(options.get("include_usage")))
        decoder = SSEDecoder()
        lines: list[bytes] = []
        async for chunk in up.content.iter_any():
            for event in decoder.feed(chunk):
                lines.extend(translator.feed_raw(event))
        return 200, lines, translator


def openai_chunks(lines: list[bytes]) -> list[dict[str, Any]]:
    assert lines[-1] == b"data: [DONE]\n\n"
    parsed = [orjson.loads(line[6:]) for line in lines[:-1]]
    for chunk in parsed:
        if "error" not in chunk:
            ChatCompletionChunk.model_validate(chunk)
    return parsed


async def test_translated_unary(sim: BackgroundAnthropicSimulator) -> None:
    system = f"Answer briefly {uuid.uuid4().hex}."
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "What is two plus two"}]
    status, body, _ = await exchange(sim, {"messages": messages, "max_tokens": 50})
    assert status == 200
    completion = ChatCompletion.model_validate(body)
    assert completion.model == "public" and completion.choices[0].message.content == "What is two plus two"
    assert completion.choices[0].finish_reason == "stop"
    assert (
        completion.usage is not None and completion.usage.prompt_tokens == 8 and completion.usage.completion_tokens == 5
    )
    _, again, _ = await exchange(sim, {"messages": messages, "max_tokens": 50})
    assert again["usage"]["prompt_tokens"] == 8 and again["usage"]["prompt_tokens_details"]["cached_tokens"] == 3
    _, cut, _ = await exchange(sim, {"messages": messages, "max_completion_tokens": 2})
    assert cut["choices"][0]["message"]["content"] == "What is" and cut["choices"][0]["finish_reason"] == "length"


async def test_translated_stream(sim: BackgroundAnthropicSimulator) -> None:
    payload = {"messages": user("stream me please"), "stream": True, "stream_options": {"include_usage": True}}
    status, lines, translator = await exchange(sim, payload)
    assert status == 200 and translator is not None
    chunks = openai_chunks(lines)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "stream me please"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert translator.text == "stream me please" and translator.usage is not None and translator.usage.output == 3


OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


async def test_translated_tool_call_round_trip(sim: BackgroundAnthropicSimulator) -> None:
    ask = {"role": "user", "content": 'call tool get_weather {"city": "Paris, France"}'}
    status, lines, translator = await exchange(sim, {"messages": [ask], "tools": OPENAI_TOOLS, "stream": True})
    assert status == 200 and translator is not None and translator.finish_reason == "tool_calls"
    calls = [call for c in openai_chunks(lines) for call in c["choices"][0]["delta"].get("tool_calls") or []]
    call_id = calls[0]["id"]
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert calls[0]["function"]["name"] == "get_weather" and orjson.loads(arguments) == {"city": "Paris, France"}
    _, unary, _ = await exchange(sim, {"messages": [ask], "tools": OPENAI_TOOLS})
    message = unary["choices"][0]["message"]
    assert unary["choices"][0]["finish_reason"] == "tool_calls" and message["content"] is None
    assert orjson.loads(message["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris, France"}
    follow_up = [
        ask,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{**calls[0], "function": {"name": "get_weather", "arguments": arguments}}],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "Sunny and warm"},
    ]
    status, answer, _ = await exchange(sim, {"messages": follow_up, "tools": OPENAI_TOOLS})
    assert status == 200 and answer["choices"][0]["message"]["content"] == "Sunny and warm"


async def test_translated_errors(sim: BackgroundAnthropicSimulator) -> None:
    status, body, _ = await exchange(sim, {"messages": user("hi"), "simulate": {"fault": "error", "status": 529}})
    assert status == 502 and body["error"]["code"] == "upstream_overloaded"
    status, body, _ = await exchange(sim, {"messages": user("hi")}, key="sk-wrong")
    assert status == 502 and body["error"]["code"] == "upstream_auth_error"
    status, body, _ = await exchange(sim, {"messages": [{"role": "assistant", "content": "I start"}]})
    assert status == 400 and body["error"]["message"] == 'messages: first message must use the "user" role'
    status, body, _ = await exchange(sim, {"messages": user("hi"), "simulate": {"fault": "error", "status": 429}})
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    simulate = {"fault": "midstream_error", "after_tokens": 2}
    status, lines, translator = await exchange(sim, {"messages": user("a b c d"), "stream": True, "simulate": simulate})
    assert status == 200 and translator is not None and translator.error is not None
    chunks = openai_chunks(lines)
    assert chunks[-1] == translator.error and translator.error_status == 502
    assert translator.text == "a b"


# ---- OpenAI's SDK through a minimal translating proxy ----------------------------------------------------------


@pytest.fixture
async def translating_proxy(sim: BackgroundAnthropicSimulator) -> AsyncIterator[str]:
    """The smallest gateway that speaks OpenAI and calls the simulator, as ``gateway/proxy.py`` will."""

    async def handle(request: web.Request) -> web.StreamResponse:
        payload = orjson.loads(await request.read())
        try:
            body = to_anthropic_request(payload, MODEL)
        except GatewayError as error:
            return web.json_response(error.body(), status=error.status)
        async with (
            aiohttp.ClientSession() as session,
            session.post(sim.base_url + ANTHROPIC_PATH, data=orjson.dumps(body), headers=request_headers(KEY)) as up,
        ):
            if up.status >= 400:
                status, error_body = anthropic_error(up.status, await up.read())
                return web.json_response(error_body, status=status)
            if not body.get("stream"):
                return web.json_response(from_anthropic_response(orjson.loads(await up.read()), payload["model"]))
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            options = payload.get("stream_options") or {}
            translator = AnthropicStreamTranslator(payload["model"], bool(options.get("include_usage")))
            decoder = SSEDecoder()
            async for chunk in up.content.iter_any():
                for event in decoder.feed(chunk):
                    for line in translator.feed_raw(event):
                        await response.write(line)
            return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("/v1"))
    finally:
        await server.close()


async def test_openai_sdk_through_the_translation(translating_proxy: str) -> None:
    client = openai.AsyncOpenAI(base_url=translating_proxy, api_key="unused", max_retries=0)
    completion = await client.chat.completions.create(model="public", messages=user("hello from openai"))
    assert completion.choices[0].message.content == "hello from openai" and completion.model == "public"
    stream = await client.chat.completions.create(
        model="public",
        messages=user('call tool get_weather {"city": "Oslo"}'),
        tools=OPENAI_TOOLS,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    arguments, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                arguments += call.function.arguments or "" if call.function else ""
    assert orjson.loads(arguments) == {"city": "Oslo"} and finish == "tool_calls" and usage is not None
    with pytest.raises(openai.BadRequestError, match="not supported"):
        await client.chat.completions.create(model="public", messages=user("hi"), n=2)
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(
            model="public", messages=user("hi"), extra_body={"simulate": {"fault": "error", "status": 529}}
        )
    assert caught.value.status_code == 502
    stream = await client.chat.completions.create(
        model="public",
        messages=user("a b c d"),
        stream=True,
        extra_body={"simulate": {"fault": "midstream_error", "after_tokens": 1}},
    )
    with pytest.raises(openai.APIError, match="overloaded"):
        async for _ in stream:
            pass
