"""Tools and structured output on ``/v1/chat/completions``, the way vLLM answers them, checked with the openai SDK
(``chat.completions.create`` and ``.parse``) and raw HTTP for the stream's fragments."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import orjson
import pytest
from pydantic import BaseModel, Field

from llmops.cli import build_parser
from llmops.simulator.background import BackgroundSimulator
from llmops.simulator.schema import instance
from llmops.simulator.settings import settings_from_args

SimulatorFactory = Callable[..., BackgroundSimulator]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
TOOLS = [WEATHER, TIME]


def sdk(sim: BackgroundSimulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="unused", max_retries=0)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def chat(sim: BackgroundSimulator, **body: Any) -> httpx.Response:
    return httpx.post(sim.base_url + "/chat/completions", json={"model": "sim-model", **body})


def test_auto_calls_the_tools_the_user_mentions(simulator_factory: SimulatorFactory) -> None:
    client = sdk(simulator_factory())
    completion = client.chat.completions.create(
        model="sim-model", messages=user("What does get_weather say?"), tools=TOOLS
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("chatcmpl-tool-") and call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "city", "unit": "c"}  # a valid instance of the schema
    assert completion.usage.completion_tokens == 1 + len(call.function.arguments.split())  # header + argument words
    plain = client.chat.completions.create(model="sim-model", messages=user("What is the weather?"), tools=TOOLS)
    assert plain.choices[0].finish_reason == "stop" and plain.choices[0].message.tool_calls == []
    assert plain.choices[0].message.content


def test_parallel_calls_and_parallel_tool_calls_false(simulator_factory: SimulatorFactory) -> None:
    client = sdk(simulator_factory())
    ask = user("get_time, then get_weather for Seoul")
    both = client.chat.completions.create(model="sim-model", messages=ask, tools=TOOLS)
    assert [c.function.name for c in both.choices[0].message.tool_calls] == ["get_time", "get_weather"]
    assert len({c.id for c in both.choices[0].message.tool_calls}) == 2
    one = client.chat.completions.create(model="sim-model", messages=ask, tools=TOOLS, parallel_tool_calls=False)
    assert [c.function.name for c in one.choices[0].message.tool_calls] == ["get_time"]


def test_tool_choice_named_required_and_none(simulator_factory: SimulatorFactory) -> None:
    client = sdk(simulator_factory())
    named = client.chat.completions.create(
        model="sim-model",
        messages=user('call tool get_weather {"city": "Paris", "unit": "c"}'),
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = named.choices[0]
    assert choice.finish_reason == "stop" and choice.message.content == ""  # as vLLM answers a named function
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris", "unit": "c"}
    required = client.chat.completions.create(
        model="sim-model", messages=user("hello"), tools=TOOLS, tool_choice="required"
    )
    assert required.choices[0].finish_reason == "tool_calls"
    assert required.choices[0].message.tool_calls[0].function.name == "get_weather"  # nothing mentioned: the first
    none = client.chat.completions.create(
        model="sim-model", messages=user("get_weather now"), tools=TOOLS, tool_choice="none"
    )
    assert none.choices[0].message.tool_calls == [] and none.choices[0].finish_reason == "stop"


def test_streamed_tool_call_fragments(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory()
    body = {
        "messages": user('call tool get_weather {"city": "Busan", "unit": "f"} and call tool get_time'),
        "tools": TOOLS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    lines = [line[6:] for line in chat(sim, **body).text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [orjson.loads(line) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    fragments = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-1]]
    heads = [f for f in fragments if "id" in f]
    assert [(h["index"], h["type"], h["function"]["name"], h["function"]["arguments"]) for h in heads] == [
        (0, "function", "get_weather", ""),
        (1, "function", "get_time", ""),
    ]
    arguments = {0: "", 1: ""}
    for fragment in fragments:
        if "id" not in fragment:
            assert set(fragment) == {"index", "function"} and set(fragment["function"]) == {"arguments"}
            arguments[fragment["index"]] += fragment["function"]["arguments"]
    assert json.loads(arguments[0]) == {"city": "Busan", "unit": "f"} and json.loads(arguments[1]) == {}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks[:-1]]
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == len(fragments)
    # the SDK assembles the same calls
    stream = sdk(sim).chat.completions.create(
        model="sim-model", stream=True, **{k: body[k] for k in ("messages", "tools")}
    )
    names = [d.function.name for c in stream for d in c.choices[0].delta.tool_calls or [] if d.function.name]
    assert names == ["get_weather", "get_time"]


def test_tool_round_trip_answers_text(simulator_factory: SimulatorFactory) -> None:
    client = sdk(simulator_factory())
    messages: list[Any] = user("Use get_weather for Paris please")
    first = client.chat.completions.create(model="sim-model", messages=messages, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"})
    second = client.chat.completions.create(model="sim-model", messages=messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.tool_calls == []
    # the user's words, the call's name and arguments, the tool's answer
    assert second.usage.prompt_tokens == 5 + 1 + len(call.function.arguments.split()) + 3


def test_scripted_and_simulated_tool_calls(simulator_factory: SimulatorFactory, tmp_path: Path) -> None:
    script = tmp_path / "tools.yaml"
    script.write_text(
        "- match: '(?i)forecast'\n"
        "  tool_calls: [{name: get_weather, arguments: {city: Oslo, unit: c}}]\n"
        "  response: 'No tools today.'\n"
    )
    rules = settings_from_args(build_parser().parse_args(["simulate", "--script", str(script)])).script
    client = sdk(simulator_factory(script=rules))
    scripted = client.chat.completions.create(model="sim-model", messages=user("The forecast?"), tools=TOOLS)
    assert json.loads(scripted.choices[0].message.tool_calls[0].function.arguments) == {"city": "Oslo", "unit": "c"}
    without_tools = client.chat.completions.create(model="sim-model", messages=user("The forecast?"))
    assert without_tools.choices[0].message.content == "No tools today."
    forced = client.chat.completions.create(
        model="sim-model",
        messages=user("anything"),
        tools=TOOLS,
        extra_body={"simulate": {"tool_calls": [{"name": "get_time"}, {"name": "get_weather", "arguments": {"x": 1}}]}},
    )
    assert [(c.function.name, c.function.arguments) for c in forced.choices[0].message.tool_calls] == [
        ("get_time", "{}"),
        ("get_weather", '{"x": 1}'),
    ]


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"tool_choice": "required"}, "tool_choice", "When using `tool_choice`, `tools` must be set."),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "Tool 'nope' has not been passed in `tools`.",
        ),
        ({"tools": [{"type": "function", "function": {}}]}, "tools", "tools.0.function.name: Field required"),
        ({"response_format": {"type": "xml"}}, "response_format", "response_format.type"),
        ({"tools": TOOLS, "simulate": {"tool_calls": [{"name": "nope"}]}}, "simulate", "'nope' is not one of"),
    ],
)
def test_tool_errors_are_400s(simulator_factory: SimulatorFactory, body: dict, param: str, message: str) -> None:
    response = chat(simulator_factory(), messages=user("hi"), **body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and message in error["message"] and error["code"] == 400


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: str
    postcode: str = Field(min_length=5, max_length=5)


class Person(BaseModel):
    name: str
    age: int = Field(ge=18)
    ratio: float = Field(gt=0, lt=1)
    tags: list[str] = Field(min_length=2)
    address: Address
    color: Color
    kind: Literal["a", "b"]
    nickname: str | None


def test_structured_output_with_a_pydantic_model(simulator_factory: SimulatorFactory) -> None:
    client = sdk(simulator_factory())
    parsed = client.chat.completions.parse(model="sim-model", messages=user("Describe someone"), response_format=Person)
    person = parsed.choices[0].message.parsed
    assert isinstance(person, Person) and person.age == 18 and len(person.tags) == 2 and person.color is Color.RED
    assert parsed.choices[0].finish_reason == "stop"
    again = client.chat.completions.parse(model="sim-model", messages=user("Describe someone"), response_format=Person)
    assert again.choices[0].message.content == parsed.choices[0].message.content  # deterministic


def test_json_object_and_streamed_json_schema(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(echo=True)
    client = sdk(sim)
    as_object = client.chat.completions.create(
        model="sim-model", messages=user("plain words"), response_format={"type": "json_object"}
    )
    assert json.loads(as_object.choices[0].message.content) == {"answer": "plain words"}
    already = client.chat.completions.create(
        model="sim-model", messages=user('{"ok": true}'), response_format={"type": "json_object"}
    )
    assert json.loads(already.choices[0].message.content) == {"ok": True}
    schema = Person.model_json_schema()
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}
    stream = client.chat.completions.create(model="sim-model", messages=user("x"), response_format=fmt, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert Person.model_validate_json(text) == Person.model_validate(instance(schema))
    cut = client.chat.completions.create(model="sim-model", messages=user("x"), response_format=fmt, max_tokens=3)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 3
