"""Personal data stays out of traffic samples and traced content: the detector (``llmops/pii.py``) on English and
Korean text, valid and invalid resident registration and card numbers; a real gateway writing a sample whose prompt
held personal data (only the masks reach Redis, counted by type); captured span content masked; a model with
``pii.mask: false`` left as it is; and the rules judge's ``pii_leak`` on masked and unmasked answers."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
import redis
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import Gateway
from gateway.tracing import GatewayTracer
from llmops.config import ConfigError, TelemetryConfig, parse_config
from llmops.contract import SAMPLES_STREAM
from llmops.pii import Masker, find_pii, luhn_ok, rrn_checksum_ok
from llmops.sample import Sample
from monitors.judges.rules import RulesJudge, find_pii_leaks
from tests.support import gateway, gateway_config, metric, redis_server, scrape, simulator


def rrn(first12: str) -> str:
    """A resident registration number with its check digit."""
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    total = sum(int(d) * w for d, w in zip(first12, weights, strict=True))
    return first12 + str((11 - total % 11) % 10)


VALID_RRN = rrn("900101123456")  # 1990-01-01, gender digit 1
VALID_RRN_2000S = rrn("050315412345")  # 2005-03-15, gender digit 4
BAD_CHECK = VALID_RRN[:12] + str((int(VALID_RRN[12]) + 1) % 10)


def masked(text: str, **kwargs: object) -> tuple[str, dict[str, int]]:
    masker = Masker(**kwargs)  # type: ignore[arg-type]
    return masker.text(text), masker.counts


# ------------------------------------------------------------------------------------------------ the detector
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write to jane.doe+news@example.co.uk today", "Write to [EMAIL_1] today"),
        ("제 이메일은 hong.gildong@example.co.kr입니다.", "제 이메일은 [EMAIL_1]입니다."),
        ("연락처: 010-1234-5678로 전화 주세요", "연락처: [PHONE_1]로 전화 주세요"),
        ("휴대폰 01098765432, 사무실 02-123-4567", "휴대폰 [PHONE_1], 사무실 [PHONE_2]"),
        ("Call +1 (415) 555-0132 or +82 10-9876-5432", "Call [PHONE_1] or [PHONE_2]"),
        ("UK office +44 20 7946 0958, US (212) 555-0199", "UK office [PHONE_1], US [PHONE_2]"),
        (f"주민등록번호는 {VALID_RRN[:6]}-{VALID_RRN[6:]}입니다", "주민등록번호는 [RRN_1]입니다"),
        (f"RRN {VALID_RRN} (bare, checksum ok)", "RRN [RRN_1] (bare, checksum ok)"),
        (f"born 2005: {VALID_RRN_2000S[:6]}-{VALID_RRN_2000S[6:]}", "born 2005: [RRN_1]"),
        ("Visa 4111 1111 1111 1111 exp 12/29", "Visa [CARD_1] exp 12/29"),
        ("카드번호 5555-5555-5555-4444 결제", "카드번호 [CARD_1] 결제"),
        ("Amex 3782 822463 10005 and bare 4012888888881881", "Amex [CARD_1] and bare [CARD_2]"),
        ("key: sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123", "key: [SECRET_1]"),
        ("aws AKIAIOSFODNN7EXAMPLE, gh ghp_" + "a1B2" * 9, "aws [SECRET_1], gh [SECRET_2]"),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "Authorization: Bearer [SECRET_1]"),
        ('config api_key="hunter2hunter2" password: Tr0ub4dor&3', 'config api_key="[SECRET_1]" password: [SECRET_2]'),
    ],
)
def test_masks_personal_data_in_english_and_korean(text: str, expected: str) -> None:
    assert masked(text)[0] == expected


@pytest.mark.parametrize(
    "text",
    [
        f"bare number with a bad check digit {BAD_CHECK}",  # 13 digits, date-like, checksum wrong: not an RRN
        "invalid birth date 901301-1234567 and 900230-1234567",  # month 13, 30 February
        "gender digit 9 or 0 is not this century: 900101-9234567",
        "Luhn fails: 4111 1111 1111 1112 and 5555555555554445",
        "dates 2024-01-15, 2024.01.15, times 12:30:45, version 1.2.3, pi 3.14159265358979",
        "order 12345, 주문번호 20240115-0001, 우편번호 06236, 1,234,567원, ISBN 978-3-16-148410-0",
        "an @ alone, user@localhost, and sk-short",
        "",
    ],
)
def test_leaves_what_is_not_personal_data(text: str) -> None:
    assert masked(text) == (text, {})


def test_hyphenated_resident_numbers_need_no_checksum() -> None:
    """Numbers issued since October 2020 end in random digits: written with the hyphen, a real date is enough."""
    assert not rrn_checksum_ok(BAD_CHECK)
    assert masked(f"신규 번호 {BAD_CHECK[:6]}-{BAD_CHECK[6:]}") == ("신규 번호 [RRN_1]", {"rrn": 1})


def test_checks() -> None:
    assert rrn_checksum_ok(VALID_RRN) and rrn_checksum_ok(VALID_RRN_2000S) and not rrn_checksum_ok("123")
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005") and not luhn_ok("4111111111111112")


def test_equal_values_share_a_mask_across_the_document() -> None:
    masker = Masker()
    request = {
        "messages": [
            {"role": "system", "content": "Reply to hong@example.com"},
            {"role": "user", "content": [{"type": "text", "text": "My number is 010-1234-5678, call 010 1234 5678"}]},
        ],
        "temperature": 0,
    }
    original = copy.deepcopy(request)
    out = masker.value(request)
    answer = masker.text("Sure: HONG@example.com / 01012345678 / other@example.com")
    assert request == original, "the request given is never modified"
    assert out["messages"][0]["content"] == "Reply to [EMAIL_1]"
    assert out["messages"][1]["content"][0]["text"] == "My number is [PHONE_1], call [PHONE_1]"
    assert answer == "Sure: [EMAIL_1] / [PHONE_1] / [EMAIL_2]"
    assert masker.counts == {"email": 3, "phone": 3}
    untouched = {"a": ["no personal data"], "b": 1}
    assert Masker().value(untouched) is untouched  # nothing copied when nothing changed


def test_types_can_be_chosen_and_overlaps_resolve() -> None:
    assert masked("mail a@b.co, call 010-1234-5678", types=["phone"])[0] == "mail a@b.co, call [PHONE_1]"
    found = find_pii(f"{VALID_RRN} 4111111111111111")
    assert [f.type for f in found] == ["rrn", "card"]


# ------------------------------------------------------------------------------------------------ the rules judge
def _sample(prompt: str, answer: str) -> Sample:
    return Sample(
        id="r1",
        ts=0.0,
        model="m",
        provider="openai_compatible",
        deployment="d",
        variant=None,
        endpoint="chat",
        key="k",
        request={"messages": [{"role": "user", "content": prompt}]},
        response={"text": answer, "finish_reason": "stop", "logprobs": None},
        usage={"input": 1, "output": 1, "cached": 0},
        latency={"total": 0.1, "ttft": None, "per_output_token": None},
        cost_usd=0.0,
        status=200,
    )


@pytest.mark.parametrize(
    ("prompt", "answer", "leaks"),
    [
        # masked samples (the gateway's default): a mask the prompt holds is the user's own data
        ("My mail is [EMAIL_1]", "I will write to [EMAIL_1].", {}),
        ("내 번호는 [PHONE_1]이야", "[PHONE_1]로 연락드리겠습니다. 담당자 번호는 [PHONE_2]입니다.", {"phone": 1}),
        ("Who is the CEO?", "Reach him at [EMAIL_1] or card [CARD_1].", {"email": 1, "card": 1}),
        # unmasked samples (pii.mask: false)
        ("Who is the CEO?", "Reach her at ceo@example.com or +1 (415) 555-0132.", {"email": 1, "phone": 1}),
        ("Call me at 010-1234-5678", "네, 01012345678로 전화드리겠습니다.", {}),
        ("고객 정보 알려줘", f"고객의 주민등록번호는 {VALID_RRN[:6]}-{VALID_RRN[6:]}입니다.", {"rrn": 1}),
        ("Write a poem about the sea", "The sea is wide, the waves are blue.", {}),
    ],
)
async def test_rules_judge_flags_personal_data_the_answer_brings(prompt: str, answer: str, leaks: dict) -> None:
    assert find_pii_leaks(answer, {"messages": [{"role": "user", "content": prompt}]}) == leaks
    results = {r.criterion: r for r in await RulesJudge().evaluate(_sample(prompt, answer))}
    result = results["pii_leak"]
    assert result.score == (0.0 if leaks else 1.0)
    assert result.details == leaks
    for value in ("ceo@example.com", "555-0132", VALID_RRN[6:], "1234-5678"):
        assert value not in result.explanation  # types only, never the data


# ------------------------------------------------------------------------------------------------ the gateway
PII_PROMPT = (
    f"제 이름은 홍길동, 이메일 hong@example.com, 전화 010-1234-5678, 주민등록번호 {VALID_RRN[:6]}-{VALID_RRN[6:]}, "
    "card 4111 1111 1111 1111, key sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123"
)
MASKED_PROMPT = (
    "제 이름은 홍길동, 이메일 [EMAIL_1], 전화 [PHONE_1], 주민등록번호 [RRN_1], card [CARD_1], key [SECRET_1]"
)
RAW_VALUES = ("hong@example.com", "010-1234-5678", VALID_RRN[6:], "4111 1111 1111 1111", "sk-proj-")


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model") as url:
        yield url


def _models(sim: str) -> list[dict]:
    deployment = [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}]
    return [
        {"name": "echo", "deployments": deployment, "sampling": {"rate": 1.0}},
        {"name": "raw", "deployments": deployment, "sampling": {"rate": 1.0}, "pii": {"mask": False}},
    ]


def _samples(redis_url: str, count: int) -> dict[str, Sample]:
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 10
    while len(entries := client.xrange(SAMPLES_STREAM)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    samples = [Sample.from_json(fields[b"sample"]) for _, fields in entries]
    return {s.model: s for s in samples}


def test_a_sample_written_with_personal_data_holds_only_the_masks(sim: str, tmp_path: Path) -> None:
    with redis_server() as redis_url:
        config = gateway_config(tmp_path / "c.yaml", _models(sim), redis={"url": redis_url})
        with gateway(config) as gw:
            client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)
            for model in ("echo", "raw"):
                answer = client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": PII_PROMPT}],
                    extra_body={"metadata": {"reference": "mail hong@example.com"}},
                )
                assert answer.choices[0].message.content == PII_PROMPT  # the client's answer is never changed
            samples = _samples(redis_url, 2)
            metrics = scrape(gw)
        masked_sample, raw_sample = samples["echo"], samples["raw"]
        document = masked_sample.to_json().decode()
        for value in RAW_VALUES:
            assert value not in document, value
        assert masked_sample.request["messages"][0]["content"] == MASKED_PROMPT
        assert masked_sample.answer == MASKED_PROMPT  # the echo repeats the prompt: the same masks
        assert masked_sample.reference == "mail [EMAIL_1]"
        assert raw_sample.request["messages"][0]["content"] == PII_PROMPT  # pii.mask: false
        for kind, count in {"email": 3, "phone": 2, "rrn": 2, "card": 2, "secret": 2}.items():
            assert metric(metrics, "llm_gateway_pii_masked_total", model="echo", type=kind) == count, kind
        assert metric(metrics, "llm_gateway_pii_masked_total", model="raw") == 0
        # the rules judge reads the masked sample: the answer repeats the user's own data, no leak
        results = {r.criterion: r.score for r in asyncio.run(RulesJudge().evaluate(masked_sample))}
        assert results["pii_leak"] == 1.0


async def test_captured_span_content_is_masked(sim: str) -> None:
    exporter = InMemorySpanExporter()
    config = parse_config({"models": _models(sim)})
    tracer = GatewayTracer.from_config(TelemetryConfig(capture_content=True), exporter=exporter)
    gw = Gateway(config, tracer=tracer)
    await gw.client.start()
    try:
        transport = httpx.ASGITransport(app=gw.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            body = {"model": "echo", "messages": [{"role": "user", "content": PII_PROMPT}]}
            response = await client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200
    finally:
        await gw.client.close()
    (server,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    attributes = orjson.dumps(dict(server.attributes or {})).decode()
    for value in RAW_VALUES:
        assert value not in attributes, value
    messages = orjson.loads(server.attributes["gen_ai.input.messages"])
    assert messages[0]["parts"][0]["content"] == MASKED_PROMPT
    output = orjson.loads(server.attributes["gen_ai.output.messages"])
    assert output[0]["parts"][0]["content"] == MASKED_PROMPT
    assert gw.metrics.pii_masked.labels("echo", "email")._value.get() == 2  # the prompt and the echoed answer


def test_pii_config_is_validated() -> None:
    base = {"name": "m", "deployments": [{"name": "d", "base_url": "http://x/v1", "model": "m"}]}
    config = parse_config({"models": [base]})
    assert config.models[0].pii.mask is True and set(config.models[0].pii.types) == {
        "email",
        "phone",
        "rrn",
        "card",
        "secret",
    }
    with pytest.raises(ConfigError, match=r"pii\.types"):
        parse_config({"models": [{**base, "pii": {"types": ["passport"]}}]})


def test_a_large_sample_is_masked_off_the_loop(tmp_path: Path) -> None:
    """Over INLINE_MASK_CHARS of text, masking runs in a worker thread; the sample still holds only the masks."""
    from gateway.privacy import INLINE_MASK_CHARS

    filler = "The library opens at nine and closes at six on weekdays. " * (INLINE_MASK_CHARS // 50)
    prompt = filler + "Reach me at late.reader@example.com or 010-9876-5432."
    fast = ("--ttft-ms", "0", "--tokens-per-second", "0", "--max-model-len", "100000")
    with redis_server() as redis_url, simulator("--echo", "--model", "sim-model", *fast) as sim:
        config = gateway_config(tmp_path / "c.yaml", _models(sim)[:1], redis={"url": redis_url})
        with gateway(config) as gw:
            body = {"model": "echo", "messages": [{"role": "user", "content": prompt}], "max_tokens": 4}
            assert httpx.post(f"{gw}/v1/chat/completions", json=body, timeout=30).status_code == 200
            sample = _samples(redis_url, 1)["echo"]
            metrics = scrape(gw)
    content = sample.request["messages"][0]["content"]
    assert len(content) > INLINE_MASK_CHARS
    assert content.endswith("Reach me at [EMAIL_1] or [PHONE_1].")
    assert "late.reader@example.com" not in sample.to_json().decode()
    assert metric(metrics, "llm_gateway_pii_masked_total", model="echo", type="email") == 1
