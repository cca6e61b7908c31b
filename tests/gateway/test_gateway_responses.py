"""OpenAI's Responses API (``POST /v1/responses``) with the official ``openai`` SDK through a real gateway, answered
through chat completions by deployments that do not serve it: a chat-only OpenAI-compatible host (the vLLM-like
simulator, echoing, ``responses_api: translate``) and an Anthropic one. Usage, tokens and cost on ``/metrics`` equal
what the client received."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from llmops.simulator.anthropic import BackgroundAnthropicSimulator
from tests.support import gateway, gateway_config, metric, scrape, simulator

PRICES = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with (
        BackgroundAnthropicSimulator(echo=True, api_key="sk-ant-test") as claude,
        simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "llama") as llama,
    ):
        config = gateway_config(
            tmp_path_factory.mktemp("gw") / "config.yaml",
            [
                {
                    "name": "llama",
                    "deployments": [
                        {
                            "name": "chat-only",
                            "base_url": f"{llama}/v1",
                            "model": "llama",
                            "responses_api": "translate",
                        }
                    ],
                    "pricing": PRICES,
                },
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
            ],
        )
        with gateway(config) as url:
            yield url


@pytest.fixture()
def client(gw: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)


def _delta(gw: str, before: str, name: str, **labels: str) -> float:
    return metric(scrape(gw), name, **labels) - metric(before, name, **labels)


def _expected_cost(usage: openai.types.responses.ResponseUsage) -> float:
    return (usage.input_tokens * PRICES["input_per_mtok"] + usage.output_tokens * PRICES["output_per_mtok"]) / 1e6


@pytest.mark.parametrize("model", ["llama", "claude"])
def test_text_with_instructions(gw: str, client: openai.OpenAI, model: str) -> None:
    before = scrape(gw)
    response = client.responses.create(
        model=model, instructions="You are terse.", input="안녕하세요, responses through chat", max_output_tokens=64
    )
    assert response.model == model and response.status == "completed"
    assert response.output_text == "안녕하세요, responses through chat"
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert _delta(gw, before, "llm_gateway_tokens_total", model=model, type="output") == usage.output_tokens
    assert _delta(gw, before, "llm_gateway_cost_usd_total", model=model) == pytest.approx(_expected_cost(usage))
    assert _delta(gw, before, "llm_gateway_requests_total", model=model, endpoint="responses", status="200") == 1


@pytest.mark.parametrize("model", ["llama", "claude"])
def test_streamed(gw: str, client: openai.OpenAI, model: str) -> None:
    before = scrape(gw)
    events = list(
        client.responses.create(model=model, input=[{"role": "user", "content": "stream 스트림"}], stream=True)
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for kind in ("response.output_item.added", "response.content_part.added", "response.output_text.done"):
        assert kind in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "stream 스트림"
    final = events[-1].response
    assert final.output_text == "stream 스트림" and final.model == model
    usage = final.usage
    assert usage is not None and usage.output_tokens > 0
    assert _delta(gw, before, "llm_gateway_tokens_total", model=model, type="output") == usage.output_tokens
    assert _delta(gw, before, "llm_gateway_cost_usd_total", model=model) == pytest.approx(_expected_cost(usage))
    assert _delta(gw, before, "llm_gateway_time_to_first_token_seconds_count", model=model) == 1


def test_a_function_tool_round_trip_through_anthropic(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model="claude", input='call tool get_weather {"city": "Seoul"}', tools=[WEATHER], max_output_tokens=64
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Seoul"}
    second = client.responses.create(
        model="claude",
        input=[
            {"role": "user", "content": 'call tool get_weather {"city": "Seoul"}'},
            {
                "type": "function_call",
                "call_id": calls[0].call_id,
                "name": "get_weather",
                "arguments": calls[0].arguments,
            },
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
            {"role": "user", "content": "thanks"},
        ],
        tools=[WEATHER],
        max_output_tokens=64,
    )
    assert second.output_text == "thanks"


def test_streamed_function_call_through_anthropic(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model="claude", input='call tool get_weather {"city": "Busan"}', tools=[WEATHER], stream=True
        )
    )
    added = [e for e in events if e.type == "response.output_item.added" and e.item.type == "function_call"]
    assert len(added) == 1 and added[0].item.name == "get_weather"
    arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(arguments) == {"city": "Busan"}
    final = events[-1].response
    assert [item.type for item in final.output] == ["function_call"]


def test_state_the_gateway_does_not_keep_is_refused(gw: str, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="llama", input="again", previous_response_id="resp_123")
    assert refused.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as builtin:
        client.responses.create(model="llama", input="x", tools=[{"type": "web_search"}])
    assert "tools[0]" in builtin.value.body["message"]
    missing = httpx.post(f"{gw}/v1/responses", json={"model": "llama"}, timeout=10)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "input"


def test_json_schema_output_reaches_the_host_as_response_format(gw: str) -> None:
    """``text.format`` becomes chat's ``response_format`` (the echo simulator answers the prompt; the translation of
    the format itself is checked in test_responses_translation)."""
    reply = httpx.post(
        f"{gw}/v1/responses",
        json={
            "model": "llama",
            "input": '{"city": "Seoul"}',
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        },
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert json.loads(body["output"][0]["content"][0]["text"]) == {"city": "Seoul"}


@pytest.fixture(scope="module")
def relay_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A deployment that serves the Responses API itself (the vLLM-like simulator does): relayed as it is."""
    with simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "upstream-name") as sim:
        config = gateway_config(
            tmp_path_factory.mktemp("relay") / "config.yaml",
            [
                {
                    "name": "native",
                    "deployments": [{"name": "vllm-sim", "base_url": f"{sim}/v1", "model": "upstream-name"}],
                    "pricing": PRICES,
                }
            ],
        )
        with gateway(config) as url:
            yield url


def test_relayed_to_a_host_that_serves_it(relay_gw: str) -> None:
    client = openai.OpenAI(base_url=f"{relay_gw}/v1", api_key="x", max_retries=0)
    before = scrape(relay_gw)
    response = client.responses.create(model="native", input="relayed 릴레이", instructions="be brief")
    assert response.model == "native" and response.output_text == "relayed 릴레이"
    assert response.id.startswith("resp_")
    events = list(client.responses.create(model="native", input="streamed 스트림", stream=True))
    assert events[0].type == "response.created" and events[0].response.model == "native"
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "streamed 스트림"
    usages = [response.usage, events[-1].response.usage]
    assert all(u is not None for u in usages)
    outputs = sum(u.output_tokens for u in usages if u is not None)
    assert _delta(relay_gw, before, "llm_gateway_tokens_total", model="native", type="output") == outputs
    cost = sum(_expected_cost(u) for u in usages if u is not None)
    assert _delta(relay_gw, before, "llm_gateway_cost_usd_total", model="native") == pytest.approx(cost)
    assert _delta(relay_gw, before, "llm_gateway_time_to_first_token_seconds_count", model="native") == 1
    # a function tool round trip, relayed
    first = client.responses.create(model="native", input='call tool get_weather {"city": "Seoul"}', tools=[WEATHER])
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Seoul"}
    # the simulator, like vLLM without a store, answers 404 for state it does not keep: relayed as it is
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="native", input="again", previous_response_id="resp_missing")
