"""Anthropic's Messages API spoken by clients (``POST /v1/messages``), with the official ``anthropic`` SDK through a
real gateway: relayed as it is to an ``anthropic`` deployment (the wire-faithful Anthropic simulator), translated
both ways for an ``openai_compatible`` one (the vLLM-like simulator, echoing). Usage, tokens and cost on ``/metrics``
equal what the client received; errors come in Anthropic's shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from llmops.simulator.anthropic import BackgroundAnthropicSimulator
from tests.support import ScriptedUpstream, gateway, gateway_config, metric, scrape, simulator

KEY = "sk-gw-messages"
PRICES = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}
WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import hashlib

    with (
        BackgroundAnthropicSimulator(echo=True, api_key="sk-ant-test") as claude,
        simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "llama") as llama,
    ):
        config = gateway_config(
            tmp_path_factory.mktemp("gw") / "config.yaml",
            [
                {
                    "name": "claude",
                    "deployments": [
                        {
                            "name": "anthropic-sim",
                            "provider": "anthropic",
                            "base_url": claude.base_url,
                            "model": "claude-sonnet-4-5",
                            "api_key": "sk-ant-test",
                        }
                    ],
                    "pricing": PRICES,
                },
                {
                    "name": "llama",
                    "deployments": [{"name": "vllm-sim", "base_url": f"{llama}/v1", "model": "llama"}],
                    "pricing": PRICES,
                },
            ],
            keys=[{"name": "app", "sha256": hashlib.sha256(KEY.encode()).hexdigest()}],
        )
        with gateway(config) as url:
            yield url


@pytest.fixture()
def client(gw: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw, api_key=KEY, max_retries=0)  # the SDK sends x-api-key


def _cost(gw: str, model: str, before: str) -> float:
    return metric(scrape(gw), "llm_gateway_cost_usd_total", model=model) - metric(
        before, "llm_gateway_cost_usd_total", model=model
    )


def _tokens(gw: str, model: str, kind: str, before: str) -> float:
    return metric(scrape(gw), "llm_gateway_tokens_total", model=model, type=kind) - metric(
        before, "llm_gateway_tokens_total", model=model, type=kind
    )


def _billed_input(usage: Any) -> int:
    return usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)


@pytest.mark.parametrize("model", ["claude", "llama"])
def test_text_with_a_system_prompt(gw: str, client: anthropic.Anthropic, model: str) -> None:
    before = scrape(gw)
    message = client.messages.create(
        model=model,
        max_tokens=64,
        system="You are terse.",
        messages=[{"role": "user", "content": "안녕하세요, hello from the anthropic sdk"}],
    )
    assert message.model == model
    assert message.role == "assistant" and message.type == "message"
    assert message.content[0].type == "text"
    assert message.content[0].text == "안녕하세요, hello from the anthropic sdk"
    assert message.stop_reason == "end_turn"
    usage = message.usage
    assert usage.output_tokens > 0 and _billed_input(usage) > 0
    assert _tokens(gw, model, "output", before) == usage.output_tokens
    assert _tokens(gw, model, "input", before) == usage.input_tokens  # cache reads and writes are types of their own
    expected = (_billed_input(usage) * PRICES["input_per_mtok"] + usage.output_tokens * PRICES["output_per_mtok"]) / 1e6
    assert _cost(gw, model, before) == pytest.approx(expected)
    after = scrape(gw)
    assert metric(after, "llm_gateway_requests_total", model=model, endpoint="messages", status="200") >= 1


@pytest.mark.parametrize("model", ["claude", "llama"])
def test_streamed(gw: str, client: anthropic.Anthropic, model: str) -> None:
    before = scrape(gw)
    with client.messages.stream(
        model=model,
        max_tokens=64,
        system="You are terse.",
        messages=[{"role": "user", "content": "stream me back, 스트리밍"}],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds
    assert final.model == model
    assert "".join(b.text for b in final.content if b.type == "text") == "stream me back, 스트리밍"
    assert final.stop_reason == "end_turn"
    usage = final.usage
    assert usage.output_tokens > 0 and _billed_input(usage) > 0
    assert _tokens(gw, model, "output", before) == usage.output_tokens
    expected = (_billed_input(usage) * PRICES["input_per_mtok"] + usage.output_tokens * PRICES["output_per_mtok"]) / 1e6
    assert _cost(gw, model, before) == pytest.approx(expected)
    after = scrape(gw)
    assert metric(after, "llm_gateway_requests_total", model=model, endpoint="messages", stream="true") >= 1
    assert metric(after, "llm_gateway_time_to_first_token_seconds_count", model=model) > metric(
        before, "llm_gateway_time_to_first_token_seconds_count", model=model
    )


def test_tool_use_is_relayed_to_anthropic(client: anthropic.Anthropic) -> None:
    first = client.messages.create(
        model="claude",
        max_tokens=64,
        tools=[WEATHER],
        messages=[{"role": "user", "content": 'call tool get_weather {"city": "Seoul"}'}],
    )
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "Seoul"}
    second = client.messages.create(
        model="claude",
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": 'call tool get_weather {"city": "Seoul"}'},
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"},
                    {"type": "text", "text": "thanks"},
                ],
            },
        ],
    )
    assert second.content[0].text.endswith("thanks")


def test_a_tool_round_trip_reaches_a_chat_host_as_chat(gw: str) -> None:
    """Tool results and earlier tool calls become chat's tool messages, text beside a tool result a user message
    after them (the echo simulator answers the last user message). The mapping itself: test_messages_translation."""
    reply = httpx.post(
        f"{gw}/v1/messages",
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        json={
            "model": "llama",
            "max_tokens": 32,
            "tools": [WEATHER],
            "messages": [
                {"role": "user", "content": "weather in Seoul?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Seoul"}}
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                        {"type": "text", "text": "그리고 내일은?"},
                    ],
                },
            ],
        },
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["content"][0]["text"] == "그리고 내일은?"


def test_errors_have_anthropics_shape(gw: str, client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nope", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["type"] == "error"
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="llama", max_tokens=0, messages=[{"role": "user", "content": "hi"}])
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in bad.value.body["error"]["message"]
    wrong = anthropic.Anthropic(base_url=gw, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as denied:
        wrong.messages.create(model="llama", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert denied.value.body["error"]["type"] == "authentication_error"
    raw = httpx.post(f"{gw}/v1/messages", headers={"x-api-key": KEY}, content=b"{not json", timeout=10)
    assert raw.status_code == 400 and raw.json()["type"] == "error"
    # The other routes keep OpenAI's shape.
    chat = httpx.post(
        f"{gw}/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"}, json={"model": "nope"}, timeout=10
    )
    assert chat.status_code == 404 and chat.json()["error"]["code"] == "model_not_found"


def test_anthropic_metadata_is_the_clients_and_the_gateways_extras_are_not_sent(gw: str) -> None:
    reply = httpx.post(
        f"{gw}/v1/messages",
        headers={"x-api-key": KEY},
        json={
            "model": "claude",
            "max_tokens": 16,
            "metadata": {"user_id": "user-7"},
            "llmops": {"reference": "hi"},
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=10,
    )
    assert reply.status_code == 200, reply.text  # the simulator refuses unknown top-level fields such as 'llmops'
    assert json.loads(reply.text)["content"][0]["text"] == "hi"


def test_prompt_cache_writes_and_reads_are_metered_and_priced_apart(gw: str, client: anthropic.Anthropic) -> None:
    """A system prompt with ``cache_control``: the first request writes it to the cache, the second reads it. Each
    kind has its own token type, and cost uses the cache-write and cache-read prices (here: the input price for
    both, the configured pricing names neither)."""
    system = [{"type": "text", "text": "긴 시스템 프롬프트 " * 30, "cache_control": {"type": "ephemeral"}}]
    before = scrape(gw)
    first = client.messages.create(
        model="claude", max_tokens=16, system=system, messages=[{"role": "user", "content": "one"}]
    )
    second = client.messages.create(
        model="claude", max_tokens=16, system=system, messages=[{"role": "user", "content": "two"}]
    )
    written = first.usage.cache_creation_input_tokens or 0
    read = second.usage.cache_read_input_tokens or 0
    assert written > 0 and read == written
    assert _tokens(gw, "claude", "cache_write", before) == written
    assert _tokens(gw, "claude", "cached_input", before) == read
    assert _tokens(gw, "claude", "input", before) == first.usage.input_tokens + second.usage.input_tokens
    billed = _billed_input(first.usage) + _billed_input(second.usage)
    outputs = first.usage.output_tokens + second.usage.output_tokens
    expected = (billed * PRICES["input_per_mtok"] + outputs * PRICES["output_per_mtok"]) / 1e6
    assert _cost(gw, "claude", before) == pytest.approx(expected)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_translated_for_a_chat_host(client: anthropic.Anthropic, stream: bool) -> None:
    """The vLLM-like simulator answers chat's tool_calls; the client gets Anthropic's tool_use blocks."""
    request = {
        "model": "llama",
        "max_tokens": 64,
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": 'call tool get_weather {"city": "부산"}'}],
    }
    if stream:
        with client.messages.stream(**request) as events:
            kinds = [event.type for event in events]
            message = events.get_final_message()
        assert "input_json" in kinds  # the tool input arrived in pieces
    else:
        message = client.messages.create(**request)
    assert message.stop_reason == "tool_use"
    call = next(block for block in message.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "부산"}
    assert call.id


def test_tokenizer_endpoints_name_their_model(gw: str) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    # two models here: the root needs the model named, in the body or the path
    unnamed = httpx.post(f"{gw}/tokenize", headers=headers, json={"prompt": "hi"}, timeout=10)
    assert unnamed.status_code == 400 and unnamed.json()["error"]["param"] == "model"
    named = httpx.post(f"{gw}/tokenize", headers=headers, json={"model": "llama", "prompt": "안녕 hello"}, timeout=10)
    assert named.status_code == 200 and named.json()["count"] == 2
    tokens = named.json()["tokens"]
    back = httpx.post(f"{gw}/m/llama/detokenize", headers=headers, json={"tokens": tokens}, timeout=10)
    assert back.status_code == 200 and back.json()["prompt"] == "안녕 hello"
    anthropic_model = httpx.post(f"{gw}/m/claude/tokenize", headers=headers, json={"prompt": "hi"}, timeout=10)
    assert anthropic_model.status_code == 400 and "tokenize" in anthropic_model.json()["error"]["message"]
    unknown = httpx.post(f"{gw}/m/nope/tokenize", headers=headers, json={"prompt": "hi"}, timeout=10)
    assert unknown.status_code == 404
    no_key = httpx.post(f"{gw}/m/llama/tokenize", json={"prompt": "hi"}, timeout=10)
    assert no_key.status_code == 401


@pytest.mark.parametrize("model", ["claude", "llama"])
def test_count_tokens(client: anthropic.Anthropic, model: str) -> None:
    """Relayed to Anthropic; counted by a vLLM-like host's /tokenize over the same conversation as chat."""
    messages = [{"role": "user", "content": "one two three 넷 다섯"}]
    counted = client.messages.count_tokens(model=model, system="be brief", messages=messages)
    assert counted.input_tokens > 0
    created = client.messages.create(model=model, max_tokens=8, system="be brief", messages=messages)
    if model == "claude":  # the same count the model bills
        assert counted.input_tokens == _billed_input(created.usage)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=messages)


def test_anthropic_beta_reaches_an_anthropic_deployment(tmp_path: Path) -> None:
    """Features in beta are asked for with ``anthropic-beta``: relayed with the request to an Anthropic deployment
    answering the Messages API as it is (and never to a chat host)."""
    reply = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-up",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    with ScriptedUpstream() as upstream:
        upstream.reply = (200, {"Content-Type": "application/json"}, json.dumps(reply).encode())
        config = gateway_config(
            tmp_path / "c.yaml",
            [
                {
                    "name": "c",
                    "deployments": [
                        {"name": "a", "provider": "anthropic", "base_url": upstream.url, "model": "claude-up"}
                    ],
                }
            ],
        )
        with gateway(config) as gw:
            beta = "interleaved-thinking-2025-05-14"
            answer = httpx.post(
                f"{gw}/v1/messages",
                headers={"anthropic-beta": beta},
                json={"model": "c", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
                timeout=10,
            )
            assert answer.status_code == 200 and answer.json()["model"] == "c"
            sent = upstream.received[-1]
            assert sent["headers"]["anthropic-beta"] == beta and sent["body"]["model"] == "claude-up"
            httpx.post(
                f"{gw}/v1/chat/completions",
                headers={"anthropic-beta": beta},
                json={"model": "c", "messages": [{"role": "user", "content": "hi"}]},
                timeout=10,
            )
            assert "anthropic-beta" not in upstream.received[-1]["headers"]  # chat is translated: no client betas
