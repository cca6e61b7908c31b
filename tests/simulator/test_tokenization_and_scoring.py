"""vLLM's tokenizer endpoints on the simulator, and what evaluation harnesses need from ``/v1/completions``: prompts
as token ids, ``echo`` with ``logprobs`` (prompt logprobs), ``max_tokens: 0``, and scripted logprobs that pick a
multiple-choice answer. Raw HTTP for the wire shapes, the openai SDK where it applies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import openai

from llmops.cli import build_parser
from llmops.simulator.background import BackgroundSimulator
from llmops.simulator.settings import settings_from_args
from llmops.simulator.tokenizer import decode, encode

SimulatorFactory = Callable[..., BackgroundSimulator]
KOREAN = "안녕하세요, 세계!  오늘 날씨가 좋네요.\n"


def tokenize(sim: BackgroundSimulator, **body: object) -> dict:
    response = httpx.post(sim.url + "/tokenize", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def complete(sim: BackgroundSimulator, **body: object) -> dict:
    response = httpx.post(sim.base_url + "/completions", json={"model": "sim-model", **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_tokenizer_round_trips_any_text_with_words() -> None:
    ids, pieces = encode(KOREAN)
    assert len(ids) == 5 and "".join(pieces) == KOREAN and decode(ids) == KOREAN
    assert encode(KOREAN)[0] == ids  # stable
    assert encode("</s>")[0] == [2] and decode([2]) == "</s>"
    assert decode([7, 8]) == "7 8"  # ids this process never produced read as their digits


def test_tokenize_and_detokenize_wire_shapes(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory()
    body = tokenize(sim, model="sim-model", prompt=KOREAN)
    assert set(body) == {"count", "max_model_len", "tokens", "token_strs"}
    assert body["count"] == len(body["tokens"]) == 5 and body["max_model_len"] == 8192 and body["token_strs"] is None
    assert tokenize(sim, prompt=KOREAN, return_token_strs=True)["token_strs"][0] == "안녕하세요,"  # model optional
    back = httpx.post(sim.url + "/detokenize", json={"model": "sim-model", "tokens": body["tokens"]})
    assert back.json() == {"prompt": KOREAN}
    # a conversation's tokens are its messages' tokens: the count a chat request reports as prompt_tokens
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How are you today?"}]
    counted = tokenize(sim, model="sim-model", messages=messages)
    chat = openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0).chat.completions.create(
        model="sim-model", messages=messages
    )
    assert counted["count"] == chat.usage.prompt_tokens == 6


def test_tokenizer_endpoint_errors(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(api_key="secret")  # like vLLM, the key guards /v1/* only
    unknown = httpx.post(sim.url + "/tokenize", json={"model": "nope", "prompt": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == 404
    missing = httpx.post(sim.url + "/tokenize", json={"model": "sim-model"})
    assert missing.status_code == 400 and missing.json()["error"]["type"] == "BadRequestError"
    out_of_vocabulary = httpx.post(sim.url + "/detokenize", json={"tokens": [1, 2**40]})
    assert out_of_vocabulary.status_code == 400 and "out of vocabulary" in out_of_vocabulary.json()["error"]["message"]
    assert httpx.get(sim.url + "/tokenizer_info").status_code == 404  # only with the flag, as in vLLM


def test_tokenizer_info_as_a_remote_tokenizer_reads_it(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory(enable_tokenizer_info_endpoint=True, max_model_len=4096)
    info = httpx.get(sim.url + "/tokenizer_info").json()
    assert info["tokenizer_class"] == "SimulatorWordTokenizer" and info["model_max_length"] == 4096
    assert info["eos_token"] == "</s>" and info["bos_token"] == "<s>" and "chat_template" in info
    # lm-evaluation-harness's remote tokenizer: eos id = first id of the eos token, no model in the body
    assert tokenize(sim, prompt=info["eos_token"], add_special_tokens=False)["tokens"] == [2]


def test_echo_with_prompt_logprobs_over_token_ids(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory()
    ids = tokenize(sim, prompt="The capital of France is Paris")["tokens"]
    body = complete(sim, prompt=ids, echo=True, logprobs=1, max_tokens=0, temperature=0, seed=1234)
    choice = body["choices"][0]
    assert choice["text"] == "The capital of France is Paris" and choice["finish_reason"] == "length"
    logprobs = choice["logprobs"]
    assert logprobs["tokens"] == ["The", " capital", " of", " France", " is", " Paris"]
    assert logprobs["text_offset"] == [0, 3, 11, 14, 21, 24]
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    rest = zip(logprobs["tokens"][1:], logprobs["token_logprobs"][1:], logprobs["top_logprobs"][1:], strict=True)
    for token, value, top in rest:
        assert value < 0 and top == {token: value}  # logprobs=1: the greedy token alone
    assert body["usage"] == {
        "prompt_tokens": 6,
        "total_tokens": 7,
        "completion_tokens": 1,
        "prompt_tokens_details": None,
    }
    # max_tokens 1: the prompt's logprobs, then the generated token's
    one = complete(sim, prompt=ids, echo=True, logprobs=2, max_tokens=1)["choices"][0]
    assert len(one["logprobs"]["tokens"]) == 7 and one["text"].startswith("The capital of France is Paris")
    assert one["logprobs"]["text_offset"][6] == len("The capital of France is Paris")
    assert len(one["logprobs"]["top_logprobs"][6]) == 2
    # the same prompt as text gives the same numbers
    again = complete(sim, prompt="The capital of France is Paris", echo=True, logprobs=1, max_tokens=0)
    assert again["choices"][0]["logprobs"] == logprobs


def test_batches_of_token_id_prompts_answer_in_order(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory()
    first, second = tokenize(sim, prompt="alpha beta")["tokens"], tokenize(sim, prompt="gamma")["tokens"]
    body = complete(sim, prompt=[first, second], echo=True, logprobs=0, max_tokens=0)
    assert [(c["index"], c["text"]) for c in body["choices"]] == [(0, "alpha beta"), (1, "gamma")]
    assert [c["logprobs"]["token_logprobs"][0] for c in body["choices"]] == [None, None]
    assert body["usage"]["prompt_tokens"] == 3
    sdk = openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0)
    completion = sdk.completions.create(model="sim-model", prompt=[first, second], max_tokens=2)
    assert [c.index for c in completion.choices] == [0, 1]


def test_max_tokens_zero_needs_echo_and_ids_must_be_in_vocabulary(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory()
    zero = httpx.post(sim.base_url + "/completions", json={"model": "sim-model", "prompt": "x", "max_tokens": 0})
    assert zero.status_code == 400 and zero.json()["error"]["param"] == "max_tokens"
    bad = httpx.post(sim.base_url + "/completions", json={"model": "sim-model", "prompt": [1, -3]})
    assert bad.status_code == 400 and bad.json()["error"]["message"] == "Token id -3 is out of vocabulary"


def test_streamed_echo_carries_the_prompt_logprobs_first(simulator_factory: SimulatorFactory) -> None:
    sim = simulator_factory()
    sdk = openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0)
    chunks = list(
        sdk.completions.create(model="sim-model", prompt="one two", echo=True, logprobs=1, max_tokens=2, stream=True)
    )
    assert chunks[0].choices[0].text.startswith("one two")
    assert chunks[0].choices[0].logprobs.tokens[:2] == ["one", " two"]
    assert chunks[0].choices[0].logprobs.token_logprobs[0] is None and len(chunks[0].choices[0].logprobs.tokens) == 3
    assert len(chunks[1].choices[0].logprobs.tokens) == 1


def _loglikelihood(sim: BackgroundSimulator, context: str, continuation: str) -> tuple[float, bool]:
    """What lm-evaluation-harness computes: the continuation's summed logprob, and whether it is greedy."""
    context_ids = tokenize(sim, prompt=context)["tokens"]
    whole = tokenize(sim, prompt=context + continuation)["tokens"]
    body = complete(sim, prompt=whole, echo=True, logprobs=1, max_tokens=1, temperature=0)
    logprobs = body["choices"][0]["logprobs"]
    span = range(len(context_ids), len(whole))
    total = sum(logprobs["token_logprobs"][i] for i in span)
    greedy = all(
        max(logprobs["top_logprobs"][i], key=logprobs["top_logprobs"][i].get) == logprobs["tokens"][i] for i in span
    )
    return total, greedy


def test_a_script_picks_the_multiple_choice_answer(simulator_factory: SimulatorFactory, tmp_path: Path) -> None:
    script = tmp_path / "eval.yaml"
    script.write_text(
        "- match: '(?<=Answer:) Paris$'\n  logprob: -0.01\n"
        "- match: '(?<=Answer:) Rome$'\n  logprob: -9.0\n"
        "- match: 'judge'\n  response: 'not a logprob rule'\n"
    )
    rules = settings_from_args(build_parser().parse_args(["simulate", "--script", str(script)])).script
    sim = simulator_factory(script=rules)
    context = "Question: What is the capital of France?\nAnswer:"
    scores = {choice: _loglikelihood(sim, context, f" {choice}") for choice in ("London", "Paris", "Rome", "Berlin")}
    assert max(scores, key=lambda choice: scores[choice][0]) == "Paris"
    assert scores["Paris"] == (-0.01, True)
    assert scores["Rome"][0] == -9.0 and scores["Rome"][1] is False  # another token is more likely there
    assert all(-2.56 <= scores[choice][0] <= -0.05 and scores[choice][1] for choice in ("London", "Berlin"))
    # the same scores every time: deterministic
    assert _loglikelihood(sim, context, " London") == scores["London"]
