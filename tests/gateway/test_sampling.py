"""Traffic sampling: deterministic selection, samples in the Redis stream after the response, metadata kept for the
monitors but never sent upstream, judge traffic never sampled, and a Redis outage never failing a user request."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
import redis
import yaml

from llmops.contract import SAMPLES_STREAM as STREAM
from llmops.contract import sampled, sampling_key
from llmops.sample import Sample
from tests.support import gateway, gateway_config, metric, redis_server, scrape, simulator


def test_sampling_decision_is_deterministic_and_proportional() -> None:
    ids = [f"req-{i:06d}" for i in range(20_000)]
    key = sampling_key("a shared secret")
    chosen = [i for i in ids if sampled(i, 0.3, key)]
    assert 0.28 <= len(chosen) / len(ids) <= 0.32
    # same answer every time, and in every process given the same secret
    assert chosen == [i for i in ids if sampled(i, 0.3, sampling_key("a shared secret"))]
    assert all(sampled(i, 1.0, key) for i in ids[:100])
    assert not any(sampled(i, 0.0, key) for i in ids[:100])
    assert set(i for i in ids if sampled(i, 0.1, key)) <= set(chosen)  # a lower rate samples a subset
    other = [i for i in ids if sampled(i, 0.3, sampling_key("another secret"))]
    assert len(set(chosen) & set(other)) < 0.4 * len(chosen)  # another key: another, independent choice
    assert sampling_key(None) != sampling_key(None)  # no secret: a random key per process


def _unkeyed(request_id: str) -> float:
    """Where the former, unkeyed hash put a request id (sampled when below the rate): anyone could compute it."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / float(1 << 64)


def test_clients_cannot_choose_request_ids_that_are_never_sampled(sim: str, tmp_path: Path) -> None:
    """The request id stays the client's (correlation), but whether it is sampled is a keyed hash of it: ids a
    client picked to dodge an unkeyed hash are sampled at the configured rate all the same."""
    dodging = [i for i in (f"client-picked-{n:05d}" for n in range(2000)) if _unkeyed(i) >= 0.5][:60]
    with redis_server() as redis_url:
        config = _config(tmp_path / "c.yaml", sim, redis_url, rate=0.5)
        data = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**data, "sampling_secret": "s3cret-shared-with-the-monitors"}))
        with gateway(config) as gw, httpx.Client(timeout=10) as http:
            for request_id in dodging:
                response = http.post(
                    f"{gw}/v1/chat/completions",
                    json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"x-request-id": request_id},
                )
                assert response.headers["x-request-id"] == request_id  # kept for correlation
            key = sampling_key("s3cret-shared-with-the-monitors")
            expected = {i for i in dodging if sampled(i, 0.5, key)}
            found = {s.id for s in _samples(redis_url, len(expected))}
    assert 15 <= len(expected) <= 45  # about half, though every one of them dodged the unkeyed hash
    assert found == expected  # the monitors, given the same secret, can tell which requests were sampled


def test_sample_document_keeps_its_wire_format() -> None:
    """The gateway builds a :class:`Sample`; the stream entry's JSON is the document the monitors have always read:
    the same keys in the same order, the same values, and it reads back as the same sample."""
    fields = {
        "id": "req-1",
        "ts": 1700000000.25,
        "model": "echo",
        "provider": "openai_compatible",
        "deployment": "sim",
        "variant": None,
        "endpoint": "chat",
        "key": "anonymous",
        "request": {"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        "response": {"text": "hi", "finish_reason": "stop", "logprobs": None},
        "usage": {"input": 1, "output": 1, "cached": 0, "estimated": True},
        "latency": {"total": 0.5, "ttft": None, "per_output_token": None},
        "cost_usd": 0.0,
        "status": 200,
        "trace_id": None,
        "metadata": {"reference": "hi"},
    }
    sample = Sample(**fields)
    assert sample.to_json() == orjson.dumps(fields)
    assert Sample.from_json(sample.to_json()) == sample


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model") as url:
        yield url


def _config(path: Path, sim: str, redis_url: str, rate: float = 1.0) -> Path:
    return gateway_config(
        path,
        [
            {
                "name": "echo",
                "deployments": [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}],
                "pricing": {"input_per_mtok": 1, "output_per_mtok": 2},
                "sampling": {"rate": rate},
            }
        ],
        redis={"url": redis_url},
    )


def _samples(redis_url: str, count: int, timeout: float = 5.0) -> list[Sample]:
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while True:
        entries = client.xrange(STREAM)
        if len(entries) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    samples = []
    for _, fields in entries:
        sample = Sample.from_json(fields[b"sample"])
        assert fields[b"id"].decode() == sample.id
        samples.append(sample)
    return samples


def test_samples_reach_the_stream_with_metadata_and_measurements(sim: str, tmp_path: Path) -> None:
    with redis_server() as redis_url, gateway(_config(tmp_path / "c.yaml", sim, redis_url)) as gw:
        client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="echo",
            messages=[{"role": "user", "content": "the capital of France is Paris"}],
            temperature=0,
            extra_body={"metadata": {"reference": "Paris is the capital.", "contexts": ["Paris is in France."]}},
        )
        unary_id = raw.headers["x-request-id"]
        stream = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "stream me back"}], stream=True, logprobs=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "stream me back"
        client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "judge call"}], extra_headers={"x-llmops-judge": "1"}
        )
        samples = {s.request["messages"][0]["content"]: s for s in _samples(redis_url, 2)}
        time.sleep(0.2)
        assert len(_samples(redis_url, 2)) == 2, "judge traffic must not be sampled"
        unary = samples["the capital of France is Paris"]
        assert unary.id == unary_id
        assert unary.model == "echo" and unary.deployment == "sim" and unary.endpoint == "chat"
        assert unary.request["model"] == "echo" and unary.request["temperature"] == 0
        assert "metadata" not in unary.request
        assert unary.reference == "Paris is the capital." and unary.contexts == ["Paris is in France."]
        assert unary.answer == "the capital of France is Paris" and unary.finish_reason == "stop"
        assert unary.usage == {"input": 6, "output": 6, "cached": 0}
        assert unary.cost_usd == pytest.approx((6 * 1 + 6 * 2) / 1e6)
        assert unary.status == 200 and unary.latency["total"] > 0 and unary.latency["ttft"] is None
        streamed = samples["stream me back"]
        assert streamed.answer == "stream me back" and streamed.finish_reason == "stop"
        assert streamed.usage["output"] == 3 and streamed.latency["ttft"] is not None
        assert streamed.response["logprobs"] and len(streamed.response["logprobs"]) == 3
        after = scrape(gw)
        assert metric(after, "llm_gateway_samples_total", model="echo", outcome="queued") == 2
        assert metric(after, "llm_gateway_samples_total", model="echo", outcome="skipped") == 1


def test_traffic_kinds_are_counted_apart_and_only_user_traffic_is_sampled(sim: str, tmp_path: Path) -> None:
    with redis_server() as redis_url, gateway(_config(tmp_path / "c.yaml", sim, redis_url)) as gw:
        client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)
        kinds = {"eval": "평가 eval", "shadow": "shadow call", "judge": "judge call", "nonsense": "an unknown kind"}
        for kind, text in kinds.items():
            client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": text}], extra_headers={"x-llmops-traffic": kind}
            )
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a user"}])
        samples = _samples(redis_url, 2)
        time.sleep(0.2)
        sampled = sorted(s.question for s in _samples(redis_url, 3))
        assert sampled == ["a user", "an unknown kind"]  # an unknown kind is user traffic: labels stay bounded
        assert len(samples) == 2
        after = scrape(gw)
        for kind, count in {"eval": 1, "shadow": 1, "judge": 1, "user": 2}.items():
            assert metric(after, "llm_gateway_traffic_requests_total", model="echo", kind=kind) == count
            assert metric(after, "llm_gateway_traffic_cost_usd_total", model="echo", kind=kind) > 0
        assert metric(after, "llm_gateway_traffic_requests_total", model="echo", kind="nonsense") == 0


def test_redis_outage_never_fails_a_request_and_drops_are_counted(sim: str, tmp_path: Path) -> None:
    with redis_server() as redis_url:
        config = _config(tmp_path / "c.yaml", sim, redis_url)
        with gateway(config) as gw:
            with httpx.Client(timeout=10) as http:
                body = {"model": "echo", "messages": [{"role": "user", "content": "before the outage"}]}
                assert http.post(f"{gw}/v1/chat/completions", json=body).status_code == 200
                assert len(_samples(redis_url, 1)) == 1
                # Redis goes away (the context manager kills it when we leave it) ...
                redis.Redis.from_url(redis_url).shutdown(nosave=True)
                started = time.monotonic()
                statuses = [
                    http.post(f"{gw}/v1/chat/completions", json={**body, "stream": i % 2 == 0}).status_code
                    for i in range(40)
                ]
                elapsed = time.monotonic() - started
            assert statuses == [200] * 40
            assert elapsed < 10, "requests must not wait for Redis"
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                dropped = metric(scrape(gw), "llm_gateway_samples_total", model="echo", outcome="dropped")
                if dropped == 40:
                    break
                time.sleep(0.1)
            assert dropped == 40


def test_gateway_starts_and_serves_when_redis_is_down_from_the_start(sim: str, tmp_path: Path) -> None:
    from tests.support import free_port

    config = _config(tmp_path / "c.yaml", sim, f"redis://127.0.0.1:{free_port()}/0")
    with gateway(config) as gw:
        response = httpx.post(
            f"{gw}/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert response.status_code == 200
        deadline = time.monotonic() + 5
        while metric(scrape(gw), "llm_gateway_samples_total", outcome="dropped") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(scrape(gw), "llm_gateway_samples_total", outcome="dropped") == 1


def test_samples_stream_is_capped(sim: str, tmp_path: Path) -> None:
    with redis_server() as redis_url:
        config = gateway_config(
            tmp_path / "c.yaml",
            [
                {
                    "name": "echo",
                    "deployments": [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}],
                    "sampling": {"rate": 1.0},
                }
            ],
            redis={"url": redis_url, "stream_maxlen": 100},
        )
        with gateway(config) as gw, httpx.Client() as http:
            for _ in range(600):
                http.post(
                    f"{gw}/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "x"}]}
                )
            time.sleep(0.3)
            length = redis.Redis.from_url(redis_url).xlen(STREAM)
            assert 100 <= length < 600  # MAXLEN ~ trims in whole macro-nodes, so a little over the cap is expected
            assert orjson.loads(redis.Redis.from_url(redis_url).xrevrange(STREAM, count=1)[0][1][b"sample"])["id"]


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_deeply_nested_json_is_a_400_or_a_dropped_sample_and_counted_once(sim: str, tmp_path: Path) -> None:
    """orjson reads 1024 levels of nesting but writes only 254. A body too deep to forward is the client's 400; a
    sampled request whose extras (``llmops``) are too deep to store is answered and costed once, its sample dropped."""
    with redis_server() as redis_url, gateway(_config(tmp_path / "c.yaml", sim, redis_url)) as gw:
        message = [{"role": "user", "content": "deep"}]
        with httpx.Client(timeout=10) as http:
            deep_field = http.post(
                f"{gw}/v1/chat/completions", json={"model": "echo", "messages": message, "x": _nested(300)}
            )
            deep_metadata = http.post(
                f"{gw}/v1/chat/completions", json={"model": "echo", "messages": message, "metadata": _nested(300)}
            )
            deep_metadata_object = http.post(  # the gateway's own extras, kept for the sample only
                f"{gw}/v1/chat/completions",
                json={"model": "echo", "messages": message, "llmops": {"tags": _nested(300)}},
            )
        assert deep_field.status_code == 400
        assert deep_field.json()["error"]["type"] == "invalid_request_error"
        assert "Nest arrays and objects less deeply" in deep_field.json()["error"]["message"]
        assert deep_metadata.status_code == 400  # metadata must be an object
        assert deep_metadata_object.status_code == 200
        assert deep_metadata_object.json()["choices"][0]["message"]["content"] == "deep"
        samples = scrape(gw)
        assert metric(samples, "llm_gateway_requests_total", model="echo", status="200") == 1
        assert metric(samples, "llm_gateway_requests_total", model="echo", status="500") == 0
        assert metric(samples, "llm_gateway_tokens_total", model="echo", type="output") == 1  # once, not twice
        # Dropped: the deep-metadata answer's sample (the 400 never reached a deployment: it has none).
        assert metric(samples, "llm_gateway_samples_total", model="echo", outcome="dropped") == 1
        # The gateway goes on serving and sampling.
        ok = httpx.post(f"{gw}/v1/chat/completions", json={"model": "echo", "messages": message}, timeout=10)
        assert ok.status_code == 200
        assert len(_samples(redis_url, 1)) == 1


def test_sample_queue_is_bounded_in_bytes() -> None:
    """The in-memory queue drops by size as well as by count, so big prompts cannot fill memory while Redis is away."""
    import asyncio

    from gateway.sampling import SampleWriter

    dropped: list[str] = []
    writer = SampleWriter(
        "redis://127.0.0.1:1/0",
        queue_size=1_000,
        stream_maxlen=1_000,
        queue_max_bytes=10_000,
        on_dropped=lambda model, count: dropped.extend([model] * count),
    )

    async def offer_all() -> list[bool]:
        return [writer.offer("m", f"r{i}", {"prompt": "x" * 3_000}) for i in range(5)]

    assert asyncio.run(offer_all()) == [True, True, True, False, False]  # 3 × ~3 kB fit in 10 kB, the 4th does not
    assert dropped == ["m", "m"]
    assert 9_000 <= writer.queued_bytes <= 10_000
