"""The official openai SDK through a real gateway process to a real simulator process: sync, async, streaming with
and without usage, completions, embeddings, models, and exact metrics after a known sequence of requests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import gateway, gateway_config, metric, scrape, simulator

PRICING = {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "cached_input_per_mtok": 0.5}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model") as sim:
        config = gateway_config(
            tmp_path_factory.mktemp("gw") / "config.yaml",
            [
                {
                    "name": "echo",
                    "deployments": [{"name": "sim-a", "base_url": f"{sim}/v1", "model": "sim-model"}],
                    "pricing": PRICING,
                }
            ],
        )
        with gateway(config) as url:
            yield url


@pytest.fixture()
def client(stack: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack}/v1", api_key="unused", max_retries=0)


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_chat_sync_returns_public_model_and_request_id(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="echo", messages=_messages("hello there gateway"))
    completion = raw.parse()
    assert completion.choices[0].message.content == "hello there gateway"
    assert completion.model == "echo"  # the upstream's own name never reaches the client
    assert completion.usage is not None and completion.usage.prompt_tokens == 3
    assert completion.usage.completion_tokens == 3
    assert len(raw.headers["x-request-id"]) >= 16


def test_client_request_id_is_kept(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="echo", messages=_messages("hi"), extra_headers={"x-request-id": "my-trace-0001"}
    )
    assert raw.headers["x-request-id"] == "my-trace-0001"


async def test_chat_async(stack: str) -> None:
    async with openai.AsyncOpenAI(base_url=f"{stack}/v1", api_key="unused", max_retries=0) as aclient:
        completion = await aclient.chat.completions.create(model="echo", messages=_messages("async works fine"))
        assert completion.choices[0].message.content == "async works fine"
        stream = await aclient.chat.completions.create(model="echo", messages=_messages("a b c d"), stream=True)
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        assert text == "a b c d"


def test_stream_without_include_usage_strips_the_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="echo", messages=_messages("one two three four"), stream=True))
    assert all(chunk.model == "echo" for chunk in chunks)
    assert all(chunk.choices for chunk in chunks), "a usage-only chunk reached a client that did not ask for it"
    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three four"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_with_include_usage_keeps_exactly_one_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="echo",
            messages=_messages("five words are right here"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    assert usage_chunks[0] is chunks[-1] and usage_chunks[0].choices == []
    assert usage_chunks[0].usage.prompt_tokens == 5
    assert usage_chunks[0].usage.completion_tokens == 5


def test_completions_plain_and_streaming(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="echo", prompt="complete this please", max_tokens=16)
    assert completion.model == "echo"
    assert completion.choices[0].text
    chunks = list(client.completions.create(model="echo", prompt="stream this", max_tokens=4, stream=True))
    assert chunks and all(c.model == "echo" for c in chunks)
    assert all(c.choices for c in chunks)


def test_embeddings_with_sdk_default_base64(client: openai.OpenAI) -> None:
    response = client.embeddings.create(model="echo", input=["first text", "second text here"])
    assert response.model == "echo"
    assert len(response.data) == 2
    assert len(response.data[0].embedding) > 1
    assert response.usage.prompt_tokens == 5


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["echo"]
    assert client.models.retrieve("echo").id == "echo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_health_and_ready(stack: str) -> None:
    assert httpx.get(f"{stack}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{stack}/ready")
    assert ready.status_code == 200
    assert ready.json()["models"] == {"echo": ["sim-a"]}
    assert "x-request-id" in ready.headers


def test_exact_metrics_after_known_sequence(stack: str, client: openai.OpenAI) -> None:
    before = scrape(stack)
    client.chat.completions.create(model="echo", messages=_messages("alpha beta"))  # 2 in, 2 out
    client.chat.completions.create(model="echo", messages=_messages("alpha beta gamma"))  # 3 in, 3 out
    list(client.chat.completions.create(model="echo", messages=_messages("one two three four"), stream=True))  # 4/4
    client.embeddings.create(model="echo", input="six tokens in this input text")  # 6 in
    after = scrape(stack)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    common = {"model": "echo", "provider": "openai_compatible", "deployment": "sim-a", "key": "anonymous"}
    assert delta("llm_gateway_requests_total", endpoint="chat", stream="false", status="200", **common) == 2
    assert delta("llm_gateway_requests_total", endpoint="chat", stream="true", status="200", **common) == 1
    assert delta("llm_gateway_requests_total", endpoint="embeddings", status="200", **common) == 1
    assert delta("llm_gateway_tokens_total", model="echo", type="input") == 2 + 3 + 4 + 6
    assert delta("llm_gateway_tokens_total", model="echo", type="output") == 2 + 3 + 4
    assert delta("llm_gateway_cost_usd_total", model="echo") == pytest.approx(((2 + 3 + 4 + 6) * 1.0 + 9 * 2.0) / 1e6)
    assert delta("llm_gateway_request_duration_seconds_count", model="echo", endpoint="chat") == 3
    assert delta("llm_gateway_time_to_first_token_seconds_count", model="echo") == 1
    assert delta("llm_gateway_time_per_output_token_seconds_count", model="echo") == 1
    assert delta("llm_gateway_overhead_seconds_count", endpoint="chat") == 3
    assert metric(after, "llm_gateway_requests_in_flight", model="echo") == 0


def test_metrics_exposition_is_prometheus_text(stack: str) -> None:
    response = httpx.get(f"{stack}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE llm_gateway_requests_total counter" in response.text
    assert "process_resident_memory_bytes" in response.text


def test_streamed_usage_costs_same_as_unary(stack: str, client: openai.OpenAI, tmp_path: Path) -> None:
    """The LiteLLM trap: streamed requests billed at 0. Ours are costed from the usage we always ask for."""
    before = scrape(stack)
    list(client.chat.completions.create(model="echo", messages=_messages("w " * 10), stream=True))
    middle = scrape(stack)
    client.chat.completions.create(model="echo", messages=_messages("w " * 10))
    after = scrape(stack)
    streamed = metric(middle, "llm_gateway_cost_usd_total") - metric(before, "llm_gateway_cost_usd_total")
    unary = metric(after, "llm_gateway_cost_usd_total") - metric(middle, "llm_gateway_cost_usd_total")
    assert streamed > 0
    assert streamed == pytest.approx(unary)
