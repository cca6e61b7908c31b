"""OpenAI's Responses API on the vLLM-like simulator: ``client.responses.create`` / ``.stream`` / ``.parse`` of the
official openai SDK, and raw HTTP for the typed SSE events, errors, the store and faults."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from llmops.simulator.background import BackgroundSimulator

SimulatorFactory = Callable[..., BackgroundSimulator]
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
TEXT_END = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def sdk(sim: BackgroundSimulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="unused", max_retries=0)


def post(sim: BackgroundSimulator, **body: Any) -> httpx.Response:
    return httpx.post(sim.base_url + "/responses", json={"model": "sim-model", **body})


def events(response: httpx.Response) -> list[dict[str, Any]]:
    """The typed events, checking the framing: ``event: TYPE`` then ``data: {"type": TYPE, ...}``, numbered from 0."""
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in response.text.strip().split("\n\n"):
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        data = orjson.loads(data_line[6:])
        assert data["type"] == name_line[7:] and data["sequence_number"] == len(out)
        out.append(data)
    return out


def test_text_response_with_the_sdk(simulator_factory: SimulatorFactory) -> None:
    client = sdk(simulator_factory(echo=True))
    response = client.responses.create(model="sim-model", input="Hello there, simulator", instructions="Be brief.")
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    (item,) = response.output
    assert item.type == "message" and item.role == "assistant" and item.id.startswith("msg_")
    assert item.content[0].type == "output_text" and response.output_text == "Hello there, simulator"
    assert response.instructions == "Be brief." and response.model == "sim-model" and response.store is False
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (5, 3, 8)  # instructions count
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0
    items = client.responses.create(
        model="sim-model",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "first question"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "first answer"}]},
            {"role": "user", "content": "second question"},
        ],
    )
    assert items.output_text == "second question" and items.usage.input_tokens == 6


def test_streamed_events_in_order(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(echo=True)
    got = events(post(sim, input="one two three", stream=True))
    assert [e["type"] for e in got] == TEXT_EVENTS + ["response.output_text.delta"] * 3 + TEXT_END
    created, completed = got[0]["response"], got[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert completed["id"] == created["id"] and completed["status"] == "completed"
    assert completed["usage"]["output_tokens"] == 3 and completed["usage"]["input_tokens"] == 3
    deltas = [e for e in got if e["type"] == "response.output_text.delta"]
    assert "".join(e["delta"] for e in deltas) == "one two three" == got[-4]["text"]
    item_id = got[2]["item"]["id"]
    assert got[2]["item"]["status"] == "in_progress" and completed["output"][0]["id"] == item_id
    assert {(e["item_id"], e["output_index"], e["content_index"]) for e in deltas} == {(item_id, 0, 0)}
    assert not post(sim, input="x", stream=True).text.rstrip().endswith("[DONE]")


def test_sdk_stream_helper_and_stream_true(simulator_factory: SimulatorFactory) -> None:
    client = sdk(simulator_factory(echo=True))
    with client.responses.stream(model="sim-model", input="stream me back") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "stream me back"
    kinds = [event.type for event in client.responses.create(model="sim-model", input="a b", stream=True)]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"


def test_function_tool_round_trip(simulator_factory: SimulatorFactory) -> None:
    client = sdk(simulator_factory())
    conversation: list[Any] = [{"role": "user", "content": "What does get_weather say about Seoul?"}]
    first = client.responses.create(model="sim-model", input=conversation, tools=[WEATHER])
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert call.call_id.startswith("call_") and call.id.startswith("fc_")
    assert json.loads(call.arguments) == {"city": "city"}
    conversation += [
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"},
    ]
    second = client.responses.create(model="sim-model", input=conversation, tools=[WEATHER])
    assert second.output[0].type == "message" and second.output_text and second.status == "completed"
    named = client.responses.create(
        model="sim-model", input="hi", tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}
    )
    assert named.output[0].type == "function_call"
    none = client.responses.create(model="sim-model", input="get_weather", tools=[WEATHER], tool_choice="none")
    assert none.output[0].type == "message"


def test_streamed_function_calls(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory()
    time_tool = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
    got = events(
        post(
            sim,
            input='call tool get_weather {"city": "Jeju"} and call tool get_time',
            tools=[WEATHER, time_tool],
            stream=True,
        )
    )
    kinds = [e["type"] for e in got]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds.count("response.output_item.added") == 2 and kinds.count("response.output_item.done") == 2
    assert kinds.count("response.function_call_arguments.done") == 2 and kinds[-1] == "response.completed"
    added = [e for e in got if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["name"], e["item"]["arguments"]) for e in added] == [
        (0, "get_weather", ""),
        (1, "get_time", ""),
    ]
    first_deltas = [
        e["delta"] for e in got if e["type"] == "response.function_call_arguments.delta" and e["output_index"] == 0
    ]
    done = [e for e in got if e["type"] == "response.function_call_arguments.done"]
    assert "".join(first_deltas) == done[0]["arguments"] == '{"city": "Jeju"}' and done[1]["arguments"] == "{}"
    final = got[-1]["response"]["output"]
    assert [item["id"] for item in final] == [e["item"]["id"] for e in added]
    with sdk(sim).responses.stream(model="sim-model", input="use get_weather", tools=[WEATHER]) as stream:
        output = stream.get_final_response().output
    assert output[0].type == "function_call" and json.loads(output[0].arguments) == {"city": "city"}


class Weather(BaseModel):
    city: str
    celsius: float
    tags: list[str]


def test_json_schema_output(simulator_factory: SimulatorFactory) -> None:
    client = sdk(simulator_factory())
    parsed = client.responses.parse(model="sim-model", input="Weather in Paris?", text_format=Weather)
    assert parsed.output_parsed == Weather(city="city", celsius=0.0, tags=["tags"])
    fmt = {"format": {"type": "json_schema", "name": "w", "schema": Weather.model_json_schema(), "strict": True}}
    response = client.responses.create(model="sim-model", input="x", text=fmt)
    assert Weather.model_validate_json(response.output_text) and response.text.format.type == "json_schema"
    with client.responses.stream(model="sim-model", input="x", text_format=Weather) as stream:
        assert stream.get_final_response().output_parsed == parsed.output_parsed


def test_max_output_tokens_and_logprobs(simulator_factory: SimulatorFactory) -> None:
    client = sdk(simulator_factory())
    cut = client.responses.create(model="sim-model", input="x", max_output_tokens=4)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    assert cut.usage.output_tokens == 4 and cut.max_output_tokens == 4
    with_logprobs = client.responses.create(
        model="sim-model", input="x", max_output_tokens=3, include=["message.output_text.logprobs"], top_logprobs=2
    )
    logprobs = with_logprobs.output[0].content[0].logprobs
    assert len(logprobs) == 3 and all(len(entry.top_logprobs) == 2 and entry.logprob < 0 for entry in logprobs)


def test_store_and_previous_response_id(simulator_factory: SimulatorFactory) -> None:
    plain = simulator_factory()
    client = sdk(plain)
    first = client.responses.create(model="sim-model", input="remember me")
    assert first.store is False  # vLLM ignores store=true unless its store is on
    for response in (
        httpx.get(f"{plain.base_url}/responses/{first.id}"),
        post(plain, input="x", previous_response_id=first.id),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == {
            "message": f"Response with id '{first.id}' not found.",
            "type": "invalid_request_error",
            "param": "response_id",
            "code": 404,
        }
    stored = simulator_factory(enable_responses_store=True, echo=True)
    client = sdk(stored)
    first = client.responses.create(model="sim-model", input="my name is Ada", instructions="Be kind.")
    assert first.store is True and client.responses.retrieve(first.id).output_text == "my name is Ada"
    second = client.responses.create(model="sim-model", input="what is my name", previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.output_text == "what is my name"
    assert second.usage.input_tokens == 4 + 4 + 4  # the stored turn (not its instructions), its answer, the new input
    unstored = client.responses.create(model="sim-model", input="forget me", store=False)
    assert httpx.get(f"{stored.base_url}/responses/{unstored.id}").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({}, 400, "input"),
        ({"input": 3}, 400, "input"),
        ({"input": "x", "model": "nope"}, 404, "model"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, 400, "input"),
        ({"input": "x", "background": True}, 400, "background"),
        ({"input": "x", "max_output_tokens": 0}, 400, "max_output_tokens"),
        ({"input": "x", "tool_choice": "required"}, 400, "tool_choice"),
    ],
)
def test_errors_in_vllm_shape(simulator_factory: SimulatorFactory, body: dict, status: int, param: str) -> None:
    response = post(simulator_factory(), **body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param and error["code"] == status and error["message"]


def test_faults_and_pacing_apply(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory()
    failed = post(sim, input="x", simulate={"fault": "error", "status": 503})
    assert failed.status_code == 503 and failed.json()["error"]["type"] == "ServiceUnavailableError"
    got = events(post(sim, input="x", stream=True, simulate={"fault": "midstream_error", "after_tokens": 2}))
    assert [e["type"] for e in got][-3:] == ["response.output_text.delta", "response.output_text.delta", "error"]
    assert got[-1]["code"] == "server_error" and got[-1]["message"]
    with pytest.raises(openai.InternalServerError):
        sdk(sim).responses.create(model="sim-model", input="x", extra_body={"simulate": {"fault": "midstream_error"}})
    started = time.monotonic()
    sdk(sim).responses.create(
        model="sim-model", input="x", max_output_tokens=3, extra_body={"simulate": {"ttft_ms": 150}}
    )
    assert time.monotonic() - started >= 0.15
    errors = [
        sample.value
        for family in text_string_to_metric_families(httpx.get(sim.url + "/metrics").text)
        for sample in family.samples
        if sample.name == "vllm:request_success_total" and sample.labels["finished_reason"] == "error"
    ]
    assert errors == [2.0]  # the two mid-stream faults, counted by the engine as for chat
