"""``llmops simulate``: vLLM's wire formats checked with the official openai SDK, metrics, faults, prefix caching."""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmops.cli import build_parser, main
from llmops.simulator.background import BackgroundSimulator
from llmops.simulator.errors import SimulatorSettingsError
from llmops.simulator.settings import build_settings, settings_from_args
from llmops.simulator.text import count_tokens, split_tokens
from tests.support import REPO
from tests.support import simulator as simulator_process

SimulatorFactory = Callable[..., BackgroundSimulator]  # the simulator_factory fixture of conftest.py
ECHO_TEXT = "Hello,   wide\tworld! How are you?"  # 6 tokens, odd whitespace on purpose


def client(sim: BackgroundSimulator, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="unused", max_retries=0, **kwargs)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(sim: BackgroundSimulator) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return parse_metrics(httpx.get(sim.url + "/metrics").text)


def value(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, x) in ls for k, x in labels.items()))


def sse_events(response: httpx.Response) -> Iterator[str]:
    """The data of each event, as it arrives."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line[len("data: ") :]


# -- tokenizer, settings and command line ------------------------------------------------------------------------


def test_tokens_are_words_and_pieces_concatenate_back() -> None:
    assert count_tokens(ECHO_TEXT) == 6
    pieces = split_tokens(" lead  trail \n")
    assert pieces == [" lead", "  trail \n"] and "".join(pieces) == " lead  trail \n"
    assert split_tokens("   ") == []


def test_settings_errors_name_the_flag() -> None:
    with pytest.raises(SimulatorSettingsError, match=r"--error-rate: .*less than or equal to 1"):
        build_settings(error_rate=1.5)
    with pytest.raises(SimulatorSettingsError, match=r"--ttft-ms: .*greater than or equal to 0"):
        build_settings(ttft_ms=-1)
    with pytest.raises(SimulatorSettingsError, match="--model"):
        build_settings(models=("a", "a"))
    args = build_parser().parse_args(["simulate", "--slow-rate", "2", "--model", "m1", "--model", "m2"])
    with pytest.raises(SimulatorSettingsError, match="--slow-rate"):
        settings_from_args(args)
    args = build_parser().parse_args(["simulate", "--model", "m1", "--model", "m2", "--echo", "--seed", "3"])
    settings = settings_from_args(args)
    assert settings.models == ("m1", "m2") and settings.echo and settings.seed == 3
    assert settings.ttft_ms == 50 and settings.tokens_per_second == 100 and settings.max_num_seqs == 256


# every flag `llmops simulate` had before the flags were generated: all must keep working
FLAGS_OF_BEFORE = [
    "--host",
    "--port",
    "--model",
    "--api-key",
    "--log-level",
    "--ttft-ms",
    "--tokens-per-second",
    "--output-tokens",
    "--echo",
    "--script",
    "--seed",
    "--embedding-dim",
    "--max-num-seqs",
    "--max-model-len",
    "--kv-cache-tokens",
    "--block-size",
    "--enable-prompt-tokens-details",
    "--legacy-metric-names",
    "--error-rate",
    "--slow-rate",
    "--slow-ms",
    "--midstream-error-rate",
]
# flags added since, for vLLM's tokenizer endpoints and Responses API store
FLAGS_ADDED = ["--enable-tokenizer-info-endpoint", "--enable-responses-store", "--skill", "--answer-key"]


def test_flags_are_generated_from_the_settings() -> None:
    """One source: each field of SimulatorSettings is one flag whose default and help come from the field; the fault
    config is the settings' run-time part, not a copy of its fields."""
    import argparse

    from llmops.simulator.command import add_arguments
    from llmops.simulator.flags import flag_name
    from llmops.simulator.settings import AnthropicSimulatorSettings, FaultConfig, SimulatorSettings

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    actions = {action.dest: action for action in parser._actions}
    assert set(SimulatorSettings.model_fields) | {"api", "help"} == set(actions)
    assert sorted(o for a in parser._actions for o in a.option_strings if o not in ("-h", "--help", "--api")) == sorted(
        FLAGS_OF_BEFORE + FLAGS_ADDED
    )
    for name, field in SimulatorSettings.model_fields.items():
        action = actions[name]
        assert action.option_strings == [flag_name(SimulatorSettings, name)]
        assert field.description and action.help and action.help.startswith(field.description.replace("%", "%%"))
        if name not in ("models", "script", "answer_key", "api_key"):
            assert action.default == field.default, name
    assert parser.parse_args([]).api == "openai"
    assert issubclass(SimulatorSettings, FaultConfig)
    settings = build_settings(error_rate=0.5, ttft_ms=7, seed=3)
    assert settings.fault_config() == FaultConfig(error_rate=0.5, ttft_ms=7)
    for name in AnthropicSimulatorSettings.model_fields.keys() - {"models"}:
        shared = AnthropicSimulatorSettings.model_fields[name]
        assert (shared.default, shared.description) == (
            SimulatorSettings.model_fields[name].default,
            SimulatorSettings.model_fields[name].description,
        )


def test_cli_reports_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--midstream-error-rate", "-0.1"]) == 2
    assert "--midstream-error-rate" in capsys.readouterr().err


def test_settings_errors_are_one_line_and_exit_2() -> None:
    """A bad flag value and a port that cannot be bound: one line naming the flag on stderr, no traceback, status 2;
    the simulator's own error type, not the gateway configuration's."""
    from llmops.config import ConfigError

    assert not issubclass(SimulatorSettingsError, ConfigError)
    bad = subprocess.run(
        [sys.executable, "-m", "llmops.cli", "simulate", "--error-rate", "2"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "llmops simulate: invalid simulator settings: --error-rate: Input should be less than or equal to 1 (got 2.0)"
    ]
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = str(busy.getsockname()[1])
        taken = subprocess.run(
            [sys.executable, "-m", "llmops.cli", "simulate", "--port", port], capture_output=True, text=True
        )
    assert taken.returncode == 2 and "Traceback" not in taken.stderr
    assert [line for line in taken.stderr.splitlines() if "--host/--port" in line], taken.stderr
    assert taken.stderr.strip().splitlines()[-1].startswith("llmops simulate: --host/--port: cannot listen on")


def test_simulator_does_not_import_the_gateway_config() -> None:
    code = (
        "import sys, llmops.simulator.server, llmops.simulator.background, llmops.simulator.anthropic; "
        "print('llmops.config' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == "False"


def test_script_file_errors_name_the_entry(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text("- {match: 'ok', response: 'fine'}\n- {match: '([', response: 'x'}\n")
    args = build_parser().parse_args(["simulate", "--script", str(script)])
    with pytest.raises(SimulatorSettingsError, match=r"entry 2: `match` is not a valid regular expression"):
        settings_from_args(args)
    script.write_text("- {match: 'ok'}\n")
    with pytest.raises(SimulatorSettingsError, match=r"entry 1: `response`: Field required"):
        settings_from_args(args)


def test_command_line_serves_and_stops() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "llmops.cli", "simulate", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in ("--ttft-ms", "--tokens-per-second", "--echo", "--script", "--max-num-seqs", "--legacy-metric-names"):
        assert flag in help_text
    with simulator_process("--echo", "--ttft-ms", "0", "--model", "cli-model") as url:
        answer = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model="cli-model", messages=user("from the command line")
        )
        assert answer.choices[0].message.content == "from the command line"


# -- chat --------------------------------------------------------------------------------------------------------


def test_chat_echo_exact_body_and_usage(simulator_echo: BackgroundSimulator) -> None:
    completion = client(simulator_echo).chat.completions.create(model="sim-model", messages=user(ECHO_TEXT))
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == "sim-model"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == ECHO_TEXT
    assert choice.finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        6,
        6,
        12,
    )
    raw = httpx.post(
        simulator_echo.base_url + "/chat/completions",
        json={
            "model": "sim-model",
            "messages": [{"role": "system", "content": "be brief"}, *user(ECHO_TEXT)],
            "some_unknown_field": {"ignored": True},
        },
        headers={"X-Request-Id": "abc123"},
    )
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("application/json")
    body = raw.json()
    assert body["id"] == "chatcmpl-abc123"
    assert body["choices"][0]["message"]["tool_calls"] == [] and body["choices"][0]["stop_reason"] is None
    assert body["choices"][0]["logprobs"] is None
    assert body["usage"] == {
        "prompt_tokens": 8,
        "total_tokens": 14,
        "completion_tokens": 6,
        "prompt_tokens_details": None,
    }


def test_chat_content_parts_count_text_only(simulator_echo: BackgroundSimulator) -> None:
    content = [
        {"type": "text", "text": "two words"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "three more words"},
    ]
    completion = client(simulator_echo).chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": content}]
    )
    assert completion.usage.prompt_tokens == 5
    assert completion.choices[0].message.content == "two words\nthree more words"


def test_chat_n_choices_are_distinct_and_deterministic(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(output_tokens=7)
    first = client(sim).chat.completions.create(model="sim-model", messages=user("tell me"), n=2)
    again = client(sim).chat.completions.create(model="sim-model", messages=user("tell me"), n=2)
    assert [c.index for c in first.choices] == [0, 1]
    texts = [c.message.content for c in first.choices]
    assert texts[0] != texts[1] and texts == [c.message.content for c in again.choices]
    assert all(
        count_tokens(text) == 7 and c.finish_reason == "stop" for text, c in zip(texts, first.choices, strict=True)
    )
    assert first.usage.prompt_tokens == 2 and first.usage.completion_tokens == 14
    other_seed = client(sim).chat.completions.create(model="sim-model", messages=user("tell me"), seed=5)
    assert other_seed.choices[0].message.content not in texts


def test_max_tokens_gives_length(simulator_factory: SimulatorFactory) -> None:
    lorem = client(simulator_factory())
    completion = lorem.chat.completions.create(model="sim-model", messages=user("hi"), max_tokens=5)
    assert completion.choices[0].finish_reason == "length" and completion.usage.completion_tokens == 5
    assert count_tokens(completion.choices[0].message.content) == 5
    completion = lorem.chat.completions.create(model="sim-model", messages=user("hi"), max_completion_tokens=40)
    assert completion.usage.completion_tokens == 40
    echo = client(simulator_factory(echo=True))
    cut = echo.chat.completions.create(model="sim-model", messages=user(ECHO_TEXT), max_tokens=2)
    assert cut.choices[0].message.content == "Hello,   wide" and cut.choices[0].finish_reason == "length"
    whole = echo.chat.completions.create(model="sim-model", messages=user(ECHO_TEXT), max_tokens=6)
    assert whole.choices[0].finish_reason == "stop"


def test_stop_strings_cut_the_answer(simulator_echo: BackgroundSimulator) -> None:
    completion = client(simulator_echo).chat.completions.create(
        model="sim-model", messages=user("alpha beta END gamma"), stop=["END", "zzz"]
    )
    choice = completion.choices[0]
    assert choice.message.content == "alpha beta " and choice.finish_reason == "stop"
    assert choice.model_extra["stop_reason"] == "END" and completion.usage.completion_tokens == 2


def test_chat_logprobs_are_openai_shaped_and_deterministic(simulator_echo: BackgroundSimulator) -> None:
    sdk = client(simulator_echo)
    completion = sdk.chat.completions.create(
        model="sim-model", messages=user("one two three"), logprobs=True, top_logprobs=3
    )
    content = completion.choices[0].logprobs.content
    assert [entry.token for entry in content] == ["one", " two", " three"]
    for entry in content:
        assert entry.logprob < 0 and entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == 3 and entry.top_logprobs[0].token == entry.token
        assert sorted((t.logprob for t in entry.top_logprobs), reverse=True) == [t.logprob for t in entry.top_logprobs]
    perplexity = math.exp(-sum(entry.logprob for entry in content) / len(content))
    again = sdk.chat.completions.create(model="sim-model", messages=user("one two three"), logprobs=True)
    assert [e.logprob for e in again.choices[0].logprobs.content] == [e.logprob for e in content]
    assert again.choices[0].logprobs.content[0].top_logprobs == [] and perplexity > 1


# -- streaming ---------------------------------------------------------------------------------------------------


def test_stream_without_usage(simulator_echo: BackgroundSimulator) -> None:
    chunks = list(
        client(simulator_echo).chat.completions.create(model="sim-model", messages=user(ECHO_TEXT), stream=True)
    )
    assert all(chunk.usage is None for chunk in chunks) and all(chunk.choices for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    contents = [chunk.choices[0].delta.content for chunk in chunks[1:]]
    assert len(contents) == 6 and "".join(contents) == ECHO_TEXT
    assert [chunk.choices[0].finish_reason for chunk in chunks] == [None] * 6 + ["stop"]
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"


def test_stream_wire_format(simulator_echo: BackgroundSimulator) -> None:
    with httpx.stream(
        "POST",
        simulator_echo.base_url + "/chat/completions",
        json={"model": "sim-model", "messages": user("a b"), "stream": True, "stream_options": {"include_usage": True}},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    bodies = [orjson.loads(event[len("data: ") :]) for event in events[:-2]]
    assert "usage" not in bodies[0] and "usage" not in bodies[1]
    assert "stop_reason" not in bodies[1]["choices"][0] and bodies[-2]["choices"][0]["stop_reason"] is None
    assert bodies[-1]["choices"] == [] and bodies[-1]["usage"] == {
        "prompt_tokens": 2,
        "total_tokens": 4,
        "completion_tokens": 2,
    }


def test_stream_with_include_usage_and_continuous_stats(simulator_echo: BackgroundSimulator) -> None:
    sdk = client(simulator_echo)
    chunks = list(
        sdk.chat.completions.create(
            model="sim-model", messages=user("one two three"), stream=True, stream_options={"include_usage": True}
        )
    )
    with_usage = [chunk for chunk in chunks if chunk.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1] and chunks[-1].choices == []
    assert (with_usage[0].usage.prompt_tokens, with_usage[0].usage.completion_tokens) == (3, 3)
    chunks = list(
        sdk.chat.completions.create(
            model="sim-model",
            messages=user("one two three"),
            stream=True,
            stream_options={"include_usage": True, "continuous_usage_stats": True},
        )
    )
    assert all(chunk.usage is not None for chunk in chunks)
    assert [chunk.usage.completion_tokens for chunk in chunks] == [0, 1, 2, 3, 3]


def test_stream_n2_and_logprobs(simulator_echo: BackgroundSimulator) -> None:
    chunks = list(
        client(simulator_echo).chat.completions.create(
            model="sim-model", messages=user("x y"), stream=True, n=2, logprobs=True, top_logprobs=2
        )
    )
    for index in (0, 1):
        mine = [chunk.choices[0] for chunk in chunks if chunk.choices[0].index == index]
        assert "".join(choice.delta.content or "" for choice in mine) == "x y"
        assert [len(choice.logprobs.content) for choice in mine[1:]] == [1, 1]
        assert mine[-1].finish_reason == "stop"


async def test_async_client_chat_and_stream(simulator_echo: BackgroundSimulator) -> None:
    async with openai.AsyncOpenAI(base_url=simulator_echo.base_url, api_key="x", max_retries=0) as sdk:
        completions = await asyncio.gather(
            *(sdk.chat.completions.create(model="sim-model", messages=user(f"number {i}")) for i in range(5))
        )
        assert [c.choices[0].message.content for c in completions] == [f"number {i}" for i in range(5)]
        stream = await sdk.chat.completions.create(
            model="sim-model", messages=user(ECHO_TEXT), stream=True, stream_options={"include_usage": True}
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            usage = chunk.usage or usage
        assert text == ECHO_TEXT and usage.completion_tokens == 6


def test_pacing_and_flushing(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(ttft_ms=200, tokens_per_second=25, echo=True)
    started = time.monotonic()
    arrivals = []
    with httpx.stream(
        "POST",
        sim.base_url + "/chat/completions",
        json={"model": "sim-model", "messages": user("a b c d e"), "stream": True},
    ) as response:
        for _ in sse_events(response):
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 7  # role, 5 tokens, [DONE]
    assert 0.19 <= arrivals[0] < 0.5, "the role chunk comes with the first token after --ttft-ms, as vLLM's"
    assert arrivals[1] - arrivals[0] < 0.03, "the first token right behind the role chunk"
    assert arrivals[5] - arrivals[1] >= 0.15, "4 more tokens at 25 tokens/s, each flushed when produced"


# -- completions and embeddings ----------------------------------------------------------------------------------


def test_completions_plain_streaming_and_batched(simulator_echo: BackgroundSimulator) -> None:
    sdk = client(simulator_echo)
    completion = sdk.completions.create(model="sim-model", prompt="complete this please")
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.choices[0].text == "complete this please" and completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 3 and completion.usage.completion_tokens == 3
    chunks = list(
        sdk.completions.create(
            model="sim-model", prompt="stream this now", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "stream this now"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 6
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None, None, "stop"]
    echoed = sdk.completions.create(model="sim-model", prompt="say it", echo=True, max_tokens=1)
    assert echoed.choices[0].text == "say itsay" and echoed.usage.completion_tokens == 1
    batched = sdk.completions.create(model="sim-model", prompt=["first one", "second prompt here"], max_tokens=2)
    assert [(c.index, c.text, c.finish_reason) for c in batched.choices] == [
        (0, "first one", "stop"),
        (1, "second prompt", "length"),
    ]
    assert batched.usage.prompt_tokens == 5 and batched.usage.completion_tokens == 4


def test_completion_logprobs(simulator_echo: BackgroundSimulator) -> None:
    completion = client(simulator_echo).completions.create(model="sim-model", prompt="aa bb", logprobs=2)
    logprobs = completion.choices[0].logprobs
    assert logprobs.tokens == ["aa", " bb"] and logprobs.text_offset == [0, 2]
    assert all(lp < 0 for lp in logprobs.token_logprobs)
    assert [len(top) for top in logprobs.top_logprobs] == [2, 2] and logprobs.top_logprobs[1][" bb"] < 0


def test_embeddings_float_and_sdk_default_base64(simulator_factory: SimulatorFactory) -> None:
    sdk = client(simulator_factory(embedding_dim=32))
    as_float = sdk.embeddings.create(model="sim-model", input=["the cat sat", "dogs run"], encoding_format="float")
    as_base64 = sdk.embeddings.create(model="sim-model", input=["the cat sat", "dogs run"])  # SDK asks base64
    assert [d.index for d in as_float.data] == [0, 1] and len(as_float.data[0].embedding) == 32
    for a, b in zip(as_float.data, as_base64.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
        assert math.fsum(x * x for x in a.embedding) == pytest.approx(1.0)
    assert as_float.usage.prompt_tokens == 5 and as_float.usage.total_tokens == 5
    similar = sdk.embeddings.create(model="sim-model", input=["the cat sat down", "quantum flux capacitor"])
    cat, unrelated = (d.embedding for d in similar.data)
    cosine = sum(x * y for x, y in zip(as_float.data[0].embedding, cat, strict=True))
    assert cosine > 0.5 > abs(sum(x * y for x, y in zip(as_float.data[0].embedding, unrelated, strict=True)))
    tokens = sdk.embeddings.create(model="sim-model", input=[[1, 2, 3], [4, 5]], encoding_format="float")
    assert tokens.usage.prompt_tokens == 5
    shorter = sdk.embeddings.create(model="sim-model", input="x", dimensions=8, encoding_format="float")
    assert len(shorter.data[0].embedding) == 8
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        sdk.embeddings.create(model="sim-model", input="x", dimensions=33)


# -- models, errors, health --------------------------------------------------------------------------------------


def test_models_and_aliases(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(models=("alpha", "beta"), max_model_len=4096, echo=True)
    sdk = client(sim)
    models = sdk.models.list()
    assert [m.id for m in models.data] == ["alpha", "beta"]
    assert all(m.owned_by == "vllm" and m.model_extra["max_model_len"] == 4096 for m in models.data)
    assert sdk.chat.completions.create(model="beta", messages=user("hi")).model == "beta"
    assert 'model_name="alpha"' in httpx.get(sim.url + "/metrics").text


def test_unknown_model_is_404(simulator_echo: BackgroundSimulator) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(simulator_echo).chat.completions.create(model="nope", messages=user("x"))
    assert caught.value.response.json() == {
        "error": {"message": "The model `nope` does not exist.", "type": "NotFoundError", "param": "model", "code": 404}
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "sim-model", "messages": "not a list"}, "messages"),
        ({"model": "sim-model"}, "messages"),
        ({"model": "sim-model", "messages": [{"content": "no role"}]}, "messages.0.role"),
        ({"model": "sim-model", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"model": "sim-model", "messages": [{"role": "user", "content": "x"}], "n": "two"}, "n"),
        ({"model": "sim-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        (
            {"model": "sim-model", "messages": [{"role": "user", "content": "x"}], "stream_options": {}},
            "stream_options",
        ),
        ({"model": "sim-model", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs"),
        (
            {"model": "sim-model", "messages": [{"role": "user", "content": "x"}], "simulate": {"fault": "?"}},
            "simulate",
        ),
        ({"model": 7, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
def test_wrong_types_are_400(simulator_echo: BackgroundSimulator, body: dict, param: str) -> None:
    response = httpx.post(simulator_echo.base_url + "/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "BadRequestError" and error["code"] == 400 and error["param"] == param


def test_bad_json_context_length_and_sdk_400(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(max_model_len=10, echo=True)
    response = httpx.post(sim.base_url + "/completions", content=b"{not json", headers={"content-type": "x"})
    assert response.status_code == 400 and response.json()["error"]["code"] == 400
    with pytest.raises(openai.BadRequestError, match="maximum context length is 10 tokens"):
        client(sim).chat.completions.create(model="sim-model", messages=user("w " * 10))
    with pytest.raises(openai.BadRequestError, match="too large: 8"):
        client(sim).completions.create(model="sim-model", prompt="a b c", max_tokens=8)


def test_health_and_api_key(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(api_key="secret", echo=True)
    health = httpx.get(sim.url + "/health")
    assert health.status_code == 200 and health.content == b""
    assert httpx.get(sim.base_url + "/models").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        client(sim).chat.completions.create(model="sim-model", messages=user("x"))
    sdk = openai.OpenAI(base_url=sim.base_url, api_key="secret", max_retries=0)
    assert sdk.chat.completions.create(model="sim-model", messages=user("x")).choices[0].message.content == "x"


# -- metrics -----------------------------------------------------------------------------------------------------


def test_metrics_after_a_known_sequence(simulator_echo: BackgroundSimulator) -> None:
    sdk = client(simulator_echo)
    sdk.chat.completions.create(model="sim-model", messages=user("a b c"))  # 3 in, 3 out, stop
    list(sdk.chat.completions.create(model="sim-model", messages=user("d e f g"), stream=True))  # 4 in, 4 out
    sdk.chat.completions.create(model="sim-model", messages=user("h i j k l"), max_tokens=2)  # 5 in, 2 out, length
    sdk.embeddings.create(model="sim-model", input="m n")  # 2 in, stop
    samples = scrape(simulator_echo)
    labels = {"model_name": "sim-model", "engine": "0"}
    assert value(samples, "vllm:prompt_tokens_total", **labels) == 14
    assert value(samples, "vllm:generation_tokens_total", **labels) == 9
    assert value(samples, "vllm:request_success_total", finished_reason="stop") == 3
    assert value(samples, "vllm:request_success_total", finished_reason="length") == 1
    assert value(samples, "vllm:request_success_total", finished_reason="abort") == 0
    assert value(samples, "vllm:time_to_first_token_seconds_count", **labels) == 3
    assert value(samples, "vllm:inter_token_latency_seconds_count") == 9 - 3
    assert value(samples, "vllm:request_time_per_output_token_seconds_count") == 3
    assert value(samples, "vllm:e2e_request_latency_seconds_count") == 4
    assert value(samples, "vllm:request_queue_time_seconds_count") == 4
    assert value(samples, "vllm:request_prompt_tokens_sum") == 14
    assert value(samples, "vllm:request_generation_tokens_sum") == 9
    assert value(samples, "vllm:request_generation_tokens_bucket", le="2.0") == 2  # the embedding and max_tokens=2
    assert value(samples, "vllm:num_requests_running", **labels) == 0
    assert value(samples, "vllm:num_requests_waiting", **labels) == 0
    assert value(samples, "vllm:kv_cache_usage_perc", **labels) == 0
    assert value(samples, "vllm:num_preemptions_total") == 0
    assert ("vllm:gpu_cache_usage_perc", tuple(sorted(labels.items()))) not in samples


def test_legacy_metric_names(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(legacy_metric_names=True, echo=True)
    client(sim).chat.completions.create(model="sim-model", messages=user("a b"))
    names = {name for name, _ in scrape(sim)}
    assert {"vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds_count"} <= names
    assert not names & {"vllm:kv_cache_usage_perc", "vllm:inter_token_latency_seconds_count"}


async def test_queue_beyond_max_num_seqs(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(max_num_seqs=1, ttft_ms=400, echo=True, kv_cache_tokens=100)
    seen_waiting, first_kv = 0.0, 0.0
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as sdk:
        calls = asyncio.gather(
            *(
                sdk.chat.completions.create(model="sim-model", messages=user("five words in this prompt"))
                for _ in range(3)
            )
        )
        task = asyncio.ensure_future(calls)
        async with httpx.AsyncClient() as http:
            while not task.done():
                samples = parse_metrics((await http.get(sim.url + "/metrics")).text)
                seen_waiting = max(seen_waiting, value(samples, "vllm:num_requests_waiting"))
                # the first request's prefill (400 ms: many scrapes) comes before any generated token, which the
                # KV cache counts too: a max over the whole run once caught one (0.06)
                first_kv = first_kv or value(samples, "vllm:kv_cache_usage_perc")
                await asyncio.sleep(0.02)
        await task
    assert seen_waiting == 2 and first_kv == pytest.approx(0.05)  # 5 prompt tokens of 100
    samples = scrape(sim)
    assert value(samples, "vllm:request_queue_time_seconds_sum") >= 0.4 + 0.8 - 0.05
    assert value(samples, "vllm:request_queue_time_seconds_count") == 3
    assert value(samples, "vllm:num_requests_running") == 0


def test_preemption_when_the_kv_cache_overflows(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(kv_cache_tokens=10, echo=True)
    client(sim).chat.completions.create(model="sim-model", messages=user("one two three four five six"))
    assert value(scrape(sim), "vllm:num_preemptions_total") == 1


def test_client_disconnect_is_counted_as_abort(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(tokens_per_second=20)
    with httpx.stream(
        "POST",
        sim.base_url + "/chat/completions",
        json={"model": "sim-model", "messages": user("hi"), "stream": True, "max_tokens": 100},
    ) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        assert value(scrape(sim), "vllm:num_requests_running") == 1
    deadline = time.monotonic() + 3
    while value(samples := scrape(sim), "vllm:request_success_total", finished_reason="abort") < 1:
        assert time.monotonic() < deadline, "the abort was not counted"
        time.sleep(0.02)
    assert value(samples, "vllm:num_requests_running") == 0 and value(samples, "vllm:kv_cache_usage_perc") == 0
    assert value(samples, "vllm:generation_tokens_total") < 100
    assert value(samples, "vllm:request_success_total", finished_reason="stop") == 0


# -- faults ------------------------------------------------------------------------------------------------------


def test_error_rate_one_gives_vllm_500(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(error_rate=1.0)
    with pytest.raises(openai.InternalServerError) as caught:
        client(sim).chat.completions.create(model="sim-model", messages=user("x"))
    error = caught.value.response.json()["error"]
    assert (
        error["type"] == "InternalServerError"
        and error["code"] == 500
        and set(error)
        == {
            "message",
            "type",
            "param",
            "code",
        }
    )
    samples = scrape(sim)
    assert value(samples, "llm_simulator_faults_total", fault="error") == 1
    assert value(samples, "vllm:request_success_total") == 0


def test_midstream_error_after_http_200(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory()
    body = {
        "model": "sim-model",
        "messages": user("x"),
        "stream": True,
        "simulate": {"fault": "midstream_error", "after_tokens": 3},
    }
    with httpx.stream("POST", sim.base_url + "/chat/completions", json=body) as response:
        assert response.status_code == 200
        events = list(sse_events(response))
    assert events[-1] == "[DONE]"
    error = orjson.loads(events[-2])
    assert error == {
        "error": {"message": "Internal server error", "type": "InternalServerError", "param": None, "code": 500}
    }
    assert len(events) == 1 + 3 + 2  # role, 3 tokens, error, [DONE]
    with pytest.raises(openai.APIError):
        for _ in client(sim).chat.completions.create(
            model="sim-model", messages=user("x"), stream=True, extra_body={"simulate": body["simulate"]}
        ):
            pass
    samples = scrape(sim)
    assert value(samples, "vllm:request_success_total", finished_reason="error") == 2
    assert value(samples, "llm_simulator_faults_total", fault="midstream_error") == 2
    # a random mid-stream error rate of 1 breaks every stream, and leaves non-streamed requests alone
    rated = simulator_factory(midstream_error_rate=1.0)
    with httpx.stream("POST", rated.base_url + "/chat/completions", json={**body, "simulate": None}) as response:
        assert "error" in orjson.loads(list(sse_events(response))[-2])
    assert client(rated).chat.completions.create(model="sim-model", messages=user("x")).choices


def test_midstream_error_rate_breaks_streams_only(simulator_factory: SimulatorFactory) -> None:
    """``midstream_error_rate`` is the share of *streamed* requests that get an error event after HTTP 200 and a few
    tokens; a request that is not streamed is never failed by it (it is not a share of requests answered 500, as the
    settings' description once said). Pinned for the flag, the setting and ``POST /admin/faults`` alike."""
    help_text = " ".join(_simulate_help().split())
    assert "--midstream-error-rate" in help_text
    assert "share of streamed requests that send an error event after a few tokens, after HTTP 200" in help_text
    assert "requests that are not streamed are never affected" in help_text
    from_flag = settings_from_args(build_parser().parse_args(["simulate", "--midstream-error-rate", "1"]))
    at_start = simulator_factory(midstream_error_rate=from_flag.midstream_error_rate)
    at_run_time = simulator_factory()
    assert httpx.post(at_run_time.url + "/admin/faults", json={"midstream_error_rate": 1}).status_code == 200
    for sim in (at_start, at_run_time):
        sdk = client(sim)
        for _ in range(10):
            chat = sdk.chat.completions.create(model="sim-model", messages=user("x"), max_tokens=5)
            assert chat.choices[0].finish_reason == "length"
            assert sdk.completions.create(model="sim-model", prompt="x", max_tokens=5).choices[0].text
        body = {"model": "sim-model", "messages": user("x"), "stream": True, "max_tokens": 8}
        for _ in range(3):
            with httpx.stream("POST", sim.base_url + "/chat/completions", json=body) as response:
                assert response.status_code == 200
                events = list(sse_events(response))
            assert events[-1] == "[DONE]" and "error" in orjson.loads(events[-2])
        samples = scrape(sim)
        assert value(samples, "llm_simulator_faults_total", fault="midstream_error") == 3
        assert value(samples, "llm_simulator_faults_total", fault="error") == 0
        assert value(samples, "vllm:request_success_total", finished_reason="length") == 20


def _simulate_help() -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--help"])
    return out.getvalue()


def test_admin_faults_switch_at_run_time(simulator_echo: BackgroundSimulator) -> None:
    sdk = client(simulator_echo)
    admin = simulator_echo.url + "/admin/faults"
    assert httpx.get(admin).json()["error_rate"] == 0
    changed = httpx.post(admin, json={"error_rate": 1.0, "ttft_ms": 0})
    assert changed.status_code == 200 and changed.json()["error_rate"] == 1.0
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="sim-model", messages=user("x"))
    assert httpx.post(admin, json={"error_rate": 0}).json()["error_rate"] == 0
    assert sdk.chat.completions.create(model="sim-model", messages=user("back")).choices[0].message.content == "back"
    bad = httpx.post(admin, json={"error_rate": 2})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "error_rate"
    assert httpx.post(admin, json={"nonsense": 1}).status_code == 400
    httpx.post(admin, json={"slow_rate": 1, "slow_ms": 5})
    assert httpx.delete(admin).json()["slow_rate"] == 0


def test_per_request_faults(simulator_echo: BackgroundSimulator) -> None:
    sdk = client(simulator_echo)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model="sim-model", messages=user("x"), extra_body={"simulate": {"fault": "error", "status": 503}}
        )
    assert caught.value.status_code == 503
    assert caught.value.response.json()["error"]["type"] == "ServiceUnavailableError"
    started = time.monotonic()
    slow = sdk.chat.completions.create(
        model="sim-model", messages=user("x"), extra_body={"simulate": {"fault": "slow", "delay_ms": 200}}
    )
    assert time.monotonic() - started >= 0.2 and slow.choices[0].message.content == "x"
    fixed = sdk.chat.completions.create(
        model="sim-model", messages=user("x"), extra_body={"simulate": {"response": "fixed text here"}}
    )
    assert fixed.choices[0].message.content == "fixed text here" and fixed.usage.completion_tokens == 3
    with pytest.raises(openai.APIConnectionError):
        sdk.chat.completions.create(
            model="sim-model", messages=user("x"), extra_body={"simulate": {"fault": "disconnect"}}
        )
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in sdk.chat.completions.create(
            model="sim-model",
            messages=user("one two three four"),
            stream=True,
            extra_body={"simulate": {"fault": "disconnect", "after_tokens": 2}},
        ):
            received.append(chunk)
    assert "".join(c.choices[0].delta.content for c in received) == "one two"
    samples = scrape(simulator_echo)
    assert value(samples, "llm_simulator_faults_total", fault="disconnect") == 2
    assert value(samples, "vllm:request_success_total", finished_reason="abort") == 1
    assert sdk.chat.completions.create(model="sim-model", messages=user("still up")).choices[0].message.content


# -- prefix caching and scripts ----------------------------------------------------------------------------------


def test_prefix_caching_reports_cached_tokens(simulator_factory: SimulatorFactory) -> None:
    sdk = client(simulator_factory(enable_prompt_tokens_details=True, echo=True, block_size=1))
    system = {"role": "system", "content": "you are a helpful assistant"}  # 5 tokens
    first = sdk.chat.completions.create(model="sim-model", messages=[system, *user("what is up")])
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    follow_up = [system, *user("what is up"), {"role": "assistant", "content": "what is up"}, *user("and now")]
    second = sdk.chat.completions.create(model="sim-model", messages=follow_up)
    assert second.usage.prompt_tokens == 13 and second.usage.prompt_tokens_details.cached_tokens == 8
    other = sdk.chat.completions.create(model="sim-model", messages=[system, *user("something else")])
    assert other.usage.prompt_tokens_details.cached_tokens == 5
    stream = list(
        sdk.chat.completions.create(
            model="sim-model", messages=follow_up, stream=True, stream_options={"include_usage": True}
        )
    )
    # all 13 seen before, but vLLM recomputes the last prompt token for the first output's logits
    assert stream[-1].usage.prompt_tokens_details.cached_tokens == 12
    plain = client(simulator_factory(echo=True)).chat.completions.create(model="sim-model", messages=[system])
    assert plain.usage.prompt_tokens_details is None


def test_prefix_cache_hits_are_whole_blocks(simulator_factory: SimulatorFactory) -> None:
    sdk = client(simulator_factory(enable_prompt_tokens_details=True, echo=True))  # vLLM's default: 16-token blocks
    system = {"role": "system", "content": " ".join(f"rule{i}" for i in range(40))}  # 40 tokens
    first = sdk.chat.completions.create(model="sim-model", messages=[system, *user("hello there")])
    assert first.usage.prompt_tokens == 42 and first.usage.prompt_tokens_details.cached_tokens == 0
    second = sdk.chat.completions.create(model="sim-model", messages=[system, *user("something else entirely")])
    assert second.usage.prompt_tokens_details.cached_tokens == 32  # the system prompt's 2 full blocks, not 40
    short = [{"role": "system", "content": "you are a helpful assistant"}, *user("hi")]
    sdk.chat.completions.create(model="sim-model", messages=short)
    again = sdk.chat.completions.create(model="sim-model", messages=short)
    assert again.usage.prompt_tokens_details.cached_tokens == 0  # 6 tokens seen before, but no full block


def test_prefix_cache_metrics(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(echo=True, block_size=1)
    sdk = client(sim)
    sdk.chat.completions.create(model="sim-model", messages=user("a b c d"))
    sdk.chat.completions.create(model="sim-model", messages=[*user("a b c d"), *user("e")])
    samples = scrape(sim)
    assert value(samples, "vllm:prefix_cache_queries_total") == 4 + 5
    assert value(samples, "vllm:prefix_cache_hits_total") == 4


def test_script_answers_the_first_match(simulator_factory: SimulatorFactory, tmp_path: Path) -> None:
    script = tmp_path / "judge.yaml"
    script.write_text(
        """
- match: "(?i)rate the response"
  response: "The answer is accurate. Rating: [[8]]"
- match: "which assistant"
  response: "[[A]]"
  finish_reason: length
- match: "rate"
  response: "never reached for the judge prompt"
"""
    )
    settings = settings_from_args(build_parser().parse_args(["simulate", "--script", str(script)]))
    sim = simulator_factory(script=settings.script)
    sdk = client(sim)
    judged = sdk.chat.completions.create(
        model="sim-model",
        messages=[{"role": "system", "content": "rate the response"}, *user("Please RATE THE RESPONSE below")],
    )
    assert judged.choices[0].message.content == "The answer is accurate. Rating: [[8]]"
    pairwise = sdk.completions.create(model="sim-model", prompt="which assistant was better?")
    assert pairwise.choices[0].text == "[[A]]" and pairwise.choices[0].finish_reason == "length"
    other = sdk.chat.completions.create(model="sim-model", messages=user("no match here"))
    assert "Rating" not in other.choices[0].message.content and other.usage.completion_tokens == 32


def test_top_logprobs_up_to_vllm_maximum_are_distinct(simulator_echo: BackgroundSimulator) -> None:
    """Every top_logprobs count vLLM accepts (up to 20) is answered with that many distinct alternatives (a count
    above 3 used to loop forever on the server's event loop)."""
    from llmops.simulator.protocol import MAX_LOGPROBS
    from llmops.simulator.text import top_alternatives

    for count in range(MAX_LOGPROBS + 1):
        for token in ("one", " two", "x"):
            alternatives = top_alternatives(token, 3, count)
            assert len(alternatives) == count
            assert len({alt for alt, _ in alternatives}) == count
    completion = client(simulator_echo).chat.completions.create(
        model="sim-model", messages=user("one two"), logprobs=True, top_logprobs=MAX_LOGPROBS, timeout=10
    )
    assert [len(entry.top_logprobs) for entry in completion.choices[0].logprobs.content] == [MAX_LOGPROBS] * 2
    legacy = client(simulator_echo).completions.create(model="sim-model", prompt="alpha beta", logprobs=5, timeout=10)
    assert [len(top) for top in legacy.choices[0].logprobs.top_logprobs] == [5, 5]


def test_injected_error_with_a_non_standard_status(simulator_echo: BackgroundSimulator) -> None:
    """Statuses outside http.HTTPStatus (499, 529) are answered as asked, in vLLM's error shape."""
    import httpx

    for status in (499, 529):
        response = httpx.post(
            f"{simulator_echo.url}/v1/chat/completions",
            json={"model": "sim-model", "messages": user("x"), "simulate": {"fault": "error", "status": status}},
            timeout=10,
        )
        assert response.status_code == status
        assert response.json()["error"]["code"] == status
        assert response.json()["error"]["message"] == f"Simulated fault: HTTP {status}"
