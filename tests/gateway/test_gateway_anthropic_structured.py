"""Structured output on an Anthropic deployment through a real gateway, with the clients people use: the openai SDK's
``chat.completions.parse()`` and ``.stream()``, ``stream=True`` with a JSON schema, the Responses API's ``text.format``
and LangChain's ``with_structured_output`` (its default method, a JSON schema ``response_format``).

The Anthropic simulator answers a forced tool (the gateway's response tool) with the input that the last user text
scripts (``call tool NAME {json}``), else with ``{}``: a real model fills the schema itself. So the prompts below
script the model's answer, and what is tested is everything around it: the request (a tool named after the schema:
the simulator scripts calls only of tools the request defines, and refuses fields Anthropic does not know), that
tool's input back as message content (unary and streamed), the clients' parsing, and Korean text kept intact.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import openai
import pytest
from pydantic import BaseModel

from llmops.simulator.anthropic import BackgroundAnthropicSimulator
from tests.support import gateway, gateway_config


class Person(BaseModel):
    name: str
    age: int


class WeatherQuery(BaseModel):
    city: str


KIM = Person(name="김민수", age=30)
SCRIPT = 'call tool Person {"name": "김민수", "age": 30}'
SYSTEM = {"role": "system", "content": "문장에서 사람의 이름과 나이를 추출하세요."}
PERSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "Person",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with BackgroundAnthropicSimulator(echo=True, api_key="sk-ant-test") as sim:
        deployment = {
            "name": "anthropic-sim",
            "provider": "anthropic",
            "base_url": sim.base_url,
            "model": "claude-sonnet-4-5",
            "api_key": "sk-ant-test",
        }
        config = gateway_config(
            tmp_path_factory.mktemp("gw") / "config.yaml", [{"name": "claude", "deployments": [deployment]}]
        )
        with gateway(config) as url:
            yield url


@pytest.fixture()
def client(gw: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model="claude", messages=[SYSTEM, {"role": "user", "content": SCRIPT}], response_format=Person
    )
    choice = completion.choices[0]
    assert choice.message.parsed == KIM
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert json.loads(choice.message.content or "") == {"name": "김민수", "age": 30}
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_parse_streamed(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="claude", messages=[SYSTEM, {"role": "user", "content": SCRIPT}], response_format=Person
    ) as stream:
        pieces = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(pieces) > 1  # the tool's input_json_delta fragments, one content delta each
    assert final.choices[0].message.parsed == KIM
    assert final.choices[0].finish_reason == "stop"


def test_stream_true_with_a_json_schema(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": 'call tool Person {"name": "이서연", "age": 27}'}],
            response_format=PERSON_SCHEMA,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert json.loads("".join(d.content or "" for d in deltas)) == {"name": "이서연", "age": 27}
    assert not any(d.tool_calls for d in deltas)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_json_object_without_a_scripted_answer(client: openai.OpenAI) -> None:
    """What the simulator itself answers a forced tool: ``{}``, which is still valid JSON content."""
    completion = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "JSON으로 답하세요."}],
        response_format={"type": "json_object"},
    )
    assert completion.choices[0].message.content == "{}"
    assert completion.choices[0].finish_reason == "stop"


def test_the_clients_tools_then_the_structured_answer(client: openai.OpenAI) -> None:
    """With tools of its own, the model may call them first (finish_reason tool_calls, nothing parsed); the next
    turn's answer is parsed."""
    tools = [openai.pydantic_function_tool(WeatherQuery, name="get_weather")]
    ask = {"role": "user", "content": 'call tool get_weather {"city": "서울"}'}
    first = client.chat.completions.parse(model="claude", messages=[ask], tools=tools, response_format=Person)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.parsed is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.function.parsed_arguments == WeatherQuery(city="서울")
    second = client.chat.completions.parse(
        model="claude",
        messages=[
            ask,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call.model_dump(exclude={"function": {"parsed_arguments"}})],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "맑음, 21도"},
            {"role": "user", "content": SCRIPT},
        ],
        tools=tools,
        response_format=Person,
    )
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.parsed == KIM


def test_responses_api_text_format(client: openai.OpenAI) -> None:
    response = client.responses.parse(model="claude", input=SCRIPT, text_format=Person)
    assert response.output_parsed == KIM


def test_langchain_with_structured_output(gw: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{gw}/v1", api_key="x", model="claude", max_retries=0)  # type: ignore[arg-type]
    structured = llm.with_structured_output(Person)  # the default method: a json_schema response_format
    assert structured.invoke([("system", SYSTEM["content"]), ("human", SCRIPT)]) == KIM
    raw = llm.with_structured_output(Person, include_raw=True).invoke(SCRIPT)
    assert raw["parsed"] == KIM and raw["parsing_error"] is None
    assert not raw["raw"].tool_calls and json.loads(raw["raw"].content) == KIM.model_dump()  # content, not a tool call
    with warnings.catch_warnings():  # LangChain's own serializer warning about its parsed chunk
        warnings.simplefilter("ignore", UserWarning)
        assert list(structured.stream(SCRIPT)) == [KIM]  # streamed: the openai SDK's .stream() underneath


def test_reasoning_effort_and_what_is_refused_with_it(client: openai.OpenAI) -> None:
    thought = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "생각해 보세요"}], reasoning_effort="low"
    )
    assert thought.choices[0].message.content == "생각해 보세요"
    with pytest.raises(openai.BadRequestError) as both:
        client.chat.completions.parse(
            model="claude",
            messages=[{"role": "user", "content": SCRIPT}],
            response_format=Person,
            reasoning_effort="low",
        )
    assert both.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], n=2, stream=True)
    assert many.value.body["param"] == "n"
