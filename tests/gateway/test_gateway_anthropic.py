"""The official openai SDK through a real gateway to the wire-faithful Anthropic simulator: plain, streaming (with
usage and cost), tool call, and errors mapped to OpenAI's shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from llmops.simulator.anthropic import BackgroundAnthropicSimulator
from tests.support import free_port, gateway, gateway_config, metric, scrape, wait_for

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with BackgroundAnthropicSimulator(echo=True, api_key="sk-ant-test") as sim:
        config = gateway_config(
            tmp_path_factory.mktemp("gw") / "config.yaml",
            [
                {
                    "name": "claude",
                    "deployments": [
                        {
                            "name": "anthropic-sim",
                            "provider": "anthropic",
                            "base_url": sim.base_url,
                            "model": "claude-sonnet-4-5",
                            "api_key": "sk-ant-test",
                        }
                    ],
                    "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
                },
                {
                    "name": "claude-badkey",
                    "deployments": [
                        {
                            "name": "anthropic-badkey",
                            "provider": "anthropic",
                            "base_url": sim.base_url,
                            "model": "claude-sonnet-4-5",
                            "api_key": "wrong",
                        }
                    ],
                },
                {
                    "name": "primary-down",  # an OpenAI-compatible model whose only deployment is gone
                    "deployments": [{"name": "gone", "base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "m"}],
                    "fallbacks": ["claude"],
                },
            ],
            routing={"backoff_seconds": 0},
        )
        with gateway(config) as url:
            yield url


@pytest.fixture()
def client(gw: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)


def test_plain_chat_with_system_prompt(gw: str, client: openai.OpenAI) -> None:
    before = scrape(gw)
    completion = client.chat.completions.create(
        model="claude",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hello from the openai sdk"},
        ],
    )
    assert completion.model == "claude"
    assert completion.choices[0].message.content == "hello from the openai sdk"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    after = scrape(gw)
    prompt = completion.usage.prompt_tokens
    cost = metric(after, "llm_gateway_cost_usd_total", model="claude") - metric(
        before, "llm_gateway_cost_usd_total", model="claude"
    )
    assert cost == pytest.approx((prompt * 3.0 + 5 * 15.0) / 1e6)
    assert metric(after, "llm_gateway_requests_total", model="claude", provider="anthropic", status="200") >= 1


def test_streaming_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "stream these four words"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "stream these four words"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert all(c.model == "claude" for c in chunks)


def test_streaming_without_usage_strips_it(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "a b"}], stream=True)
    )
    assert all(c.choices for c in chunks)


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": 'call tool get_weather {"city": "Seoul"}'}],
        tools=TOOLS,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Seoul"}
    second = client.chat.completions.create(
        model="claude",
        messages=[
            {"role": "user", "content": 'call tool get_weather {"city": "Seoul"}'},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
            {"role": "user", "content": "thanks"},
        ],
        tools=TOOLS,
    )
    assert second.choices[0].message.content == "thanks"


def test_streamed_tool_call(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": 'call tool get_weather {"city": "Busan"}'}],
            tools=TOOLS,
            stream=True,
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "Busan"}


def test_n_choices_fan_out_to_n_calls_with_the_usage_summed(gw: str, client: openai.OpenAI) -> None:
    before = scrape(gw)
    completion = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "셋 three"}], n=3, max_tokens=16
    )
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert all(c.message.content == "셋 three" for c in completion.choices)
    usage = completion.usage
    assert usage is not None and usage.completion_tokens == 3 * 2
    after = scrape(gw)
    cost = metric(after, "llm_gateway_cost_usd_total", model="claude") - metric(
        before, "llm_gateway_cost_usd_total", model="claude"
    )
    assert cost == pytest.approx((usage.prompt_tokens * 3.0 + usage.completion_tokens * 15.0) / 1e6)
    requests = metric(after, "llm_gateway_requests_total", model="claude", status="200") - metric(
        before, "llm_gateway_requests_total", model="claude", status="200"
    )
    assert requests == 1  # one client request, however many calls it took


def test_errors_are_openai_shaped(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], n=2, stream=True)
    assert bad.value.body["param"] == "n" and "stream" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as too_many:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], n=20)
    assert too_many.value.body["param"] == "n"
    with pytest.raises(openai.InternalServerError) as overloaded:
        client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"simulate": {"fault": "error", "status": 529}},
        )
    assert overloaded.value.status_code == 502
    with pytest.raises(openai.InternalServerError) as auth:
        client.chat.completions.create(model="claude-badkey", messages=[{"role": "user", "content": "x"}])
    assert auth.value.status_code == 502 and "credentials" in str(auth.value)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="claude", input="embed me")


def test_error_inside_a_stream(gw: str, client: openai.OpenAI) -> None:
    before = scrape(gw)
    stream = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "one two three four five"}],
        stream=True,
        extra_body={"simulate": {"fault": "midstream_error", "after_tokens": 2}},
    )
    with pytest.raises(openai.APIError):
        list(stream)

    def recorded() -> dict | None:  # the gateway records the stream just after its last bytes left
        samples = scrape(gw)
        counted = metric(samples, "llm_gateway_requests_total", model="claude", stream="true")
        return (
            samples if counted > metric(before, "llm_gateway_requests_total", model="claude", stream="true") else None
        )

    after = wait_for(recorded, timeout=5)
    failed = metric(after, "llm_gateway_requests_total", model="claude", stream="true") - metric(
        before, "llm_gateway_requests_total", model="claude", stream="true"
    )
    ok = metric(after, "llm_gateway_requests_total", model="claude", stream="true", status="200") - metric(
        before, "llm_gateway_requests_total", model="claude", stream="true", status="200"
    )
    assert failed == 1 and ok == 0


def test_a_fallback_that_cannot_take_the_request_does_not_turn_an_outage_into_a_400(client: openai.OpenAI) -> None:
    """The primary is down and its fallback is an Anthropic model, which has no embeddings and refuses temperature
    1.5: the client gets the outage (502, retryable), not a 400 about Anthropic; chat that Anthropic can take is
    served by the fallback."""
    with pytest.raises(openai.InternalServerError) as embeddings:
        client.embeddings.create(model="primary-down", input="embed me")
    assert embeddings.value.status_code == 502
    with pytest.raises(openai.InternalServerError) as too_hot:
        client.chat.completions.create(
            model="primary-down", messages=[{"role": "user", "content": "x"}], temperature=1.5
        )
    assert too_hot.value.status_code == 502
    served = client.chat.completions.with_raw_response.create(
        model="primary-down", messages=[{"role": "user", "content": "hello"}]
    )
    assert served.headers["x-llmops-deployment"] == "anthropic-sim"
    assert served.parse().choices[0].message.content == "hello"


def test_cut_stream_wrong_model_and_a_skipped_deployment(tmp_path: Path) -> None:
    """Against their own simulators: (1) a stream the client leaves is charged an estimate, although Anthropic's
    message_start already said output_tokens 1; (2) a deployment whose model Anthropic does not know is the gateway's
    fault: 502, not the client's 404; (3) an embeddings request to a model whose only deployment is Anthropic's goes
    to its fallback, counted as a fallback."""
    from tests.support import simulator

    slow = BackgroundAnthropicSimulator(
        models=("claude-sonnet-4-5",), echo=False, output_tokens=400, tokens_per_second=40, api_key="k"
    )
    with slow as sim, simulator("--model", "emb", "--ttft-ms", "0", "--tokens-per-second", "0") as openai_sim:

        def anthropic(name: str, model: str) -> dict:
            deployment = {"name": name, "provider": "anthropic", "base_url": sim.base_url, "model": model}
            return {**deployment, "api_key": "k"}

        config = gateway_config(
            tmp_path / "config.yaml",
            [
                {"name": "slow-claude", "deployments": [anthropic("slow", "claude-sonnet-4-5")]},
                {"name": "wrong", "deployments": [anthropic("misnamed", "claude-nope")]},
                {
                    "name": "chat-or-embed",
                    "deployments": [anthropic("chat-only", "claude-sonnet-4-5")],
                    "fallbacks": ["emb"],
                },
                {"name": "emb", "deployments": [{"name": "emb-sim", "base_url": f"{openai_sim}/v1", "model": "emb"}]},
            ],
        )
        with gateway(config) as gw:
            client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)
            before = scrape(gw)
            stream = client.chat.completions.create(
                model="slow-claude", messages=[{"role": "user", "content": "tell me a long story"}], stream=True
            )
            for count, _ in enumerate(stream, start=1):
                if count == 6:
                    break
            stream.close()

            def estimated() -> dict | None:
                samples = scrape(gw)
                return samples if metric(samples, "llm_gateway_usage_estimated_total", model="slow-claude") else None

            after = wait_for(estimated, timeout=10)
            assert metric(after, "llm_gateway_tokens_total", model="slow-claude", type="output") >= 4
            assert metric(after, "llm_gateway_requests_total", model="slow-claude", status="499") == 1

            with pytest.raises(openai.InternalServerError) as wrong:
                client.chat.completions.create(model="wrong", messages=[{"role": "user", "content": "x"}])
            assert wrong.value.status_code == 502
            assert wrong.value.body["code"] == "upstream_not_found"

            embedded = client.embeddings.with_raw_response.create(model="chat-or-embed", input="embed me")
            assert embedded.headers["x-llmops-deployment"] == "emb-sim"
            samples = scrape(gw)
            assert metric(samples, "llm_gateway_fallbacks_total", model="chat-or-embed", fallback_model="emb") == 1
            assert metric(samples, "llm_gateway_retries_total") == metric(before, "llm_gateway_retries_total")
