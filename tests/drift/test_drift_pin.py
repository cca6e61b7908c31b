"""``llmops drift pin``: a reference from a time range of the samples stream, or from a file of feature rows."""

from __future__ import annotations

import argparse
import csv
import json

import orjson
import pytest
from prometheus_client import CollectorRegistry

from llmops.config import DriftConfig
from llmops.contract import SAMPLES_STREAM as STREAM
from llmops.testing.drift_traffic import Traffic, feed, generate
from monitors.drift import pin
from monitors.drift.features import extract
from monitors.drift.monitor import DriftMonitor
from monitors.drift.windows import content_hash, encode_rows
from monitors.store import RESULTS

pytestmark = pytest.mark.filterwarnings(
    "ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning", "ignore::DeprecationWarning"
)
START = 1_750_000_000.0  # 2025-06-15T15:06:40Z


async def write_stream(client, n: int = 300) -> None:
    """``n`` samples of model m one second apart from START (ids = their ms timestamps), plus noise around them."""
    samples = generate(Traffic(), n, seed=11, start_ts=START)
    other = generate(Traffic(model="other"), 5, seed=12, start_ts=START)
    entries = []
    for i, (sample, scores) in enumerate(samples):
        sample.ts = START + i
        if i == 7:
            sample.status = 502  # failed requests are not part of a reference
        entries.append((sample, scores if i < 50 else None))  # judge results still kept for some of them
    for j, (sample, _) in enumerate(other):
        sample.ts = START + j + 0.5
        entries.append((sample, None))
    pipe = client.pipeline(transaction=False)
    for sample, scores in sorted(entries, key=lambda e: e[0].ts):
        pipe.xadd(STREAM, {"id": sample.id, "sample": sample.to_json()}, id=f"{int(sample.ts * 1000)}-0")
        if scores:
            fields = {k: orjson.dumps({"score": v, "explanation": ""}) for k, v in scores.items()}
            pipe.hset(RESULTS + sample.id, mapping=fields)
    await pipe.execute()


async def test_pin_a_time_range_of_the_stream(redis) -> None:
    await write_stream(redis)
    pinned = await pin.pin_reference_async(redis, "m", "2025-06-15T15:06:40Z", START + 199)
    assert pinned["rows"] == 199  # 200 seconds of samples, less the failed one
    assert pinned["source"] == "pinned:2025-06-15T15:06:40Z..2025-06-15T15:09:59Z"
    meta, rows = await redis.hmget("llmops:drift:m:reference", ["meta", "rows"])
    assert orjson.loads(meta)["hash"] == pinned["hash"] == content_hash(rows)
    stored = orjson.loads(rows)
    assert sum("llm_single:overall" in r for r in stored) == 49  # judge scores of the first 50, less the failed one
    assert all(START <= r["ts"] <= START + 199 for r in stored)


async def test_a_pinned_reference_is_used_by_the_next_run(redis, tmp_path) -> None:
    await write_stream(redis)
    pinned = await pin.pin_reference_async(redis, "m", START, START + 299)
    settings = DriftConfig(window=200, every=100, every_seconds=None, min_samples=100)
    monitor = DriftMonitor(redis, settings, CollectorRegistry(), tmp_path, auto_reports=False)
    results = await feed(monitor, generate(Traffic(), 200, seed=13))
    assert len(results) == 2 and all(r.reference and r.reference.hash == pinned["hash"] for r in results)
    assert results[-1].reference.source.startswith("pinned:")


async def test_empty_range_pins_nothing(redis) -> None:
    await write_stream(redis)
    with pytest.raises(ValueError, match="0 samples of model 'm' between"):
        await pin.pin_reference_async(redis, "m", START - 100, START - 50)
    with pytest.raises(ValueError, match="must be after"):
        await pin.pin_reference_async(redis, "m", START, START - 50)
    assert await redis.exists("llmops:drift:m:reference") == 0


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
async def test_pin_a_file_of_feature_rows(redis, tmp_path, suffix: str) -> None:
    rows = [extract(s, x) for s, x in generate(Traffic(), 120, seed=14)]
    path = tmp_path / f"reference.{suffix}"
    if suffix == "csv":
        names = sorted({k for r in rows for k in r})
        with path.open("w", newline="") as out:
            writer = csv.DictWriter(out, names)
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pinned = await pin.pin_reference_async(redis, "m", file=path)
    assert pinned["rows"] == 120 and pinned["source"] == f"file:{path}"
    stored = orjson.loads(await redis.hget("llmops:drift:m:reference", "rows"))
    assert stored == [dict(sorted(r.items())) for r in rows] if suffix == "jsonl" else len(stored) == 120
    assert pinned["hash"] == content_hash(encode_rows(stored))


async def test_a_bad_file_names_the_line(redis, tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt_chars": 3}\n{"prompt_length": 4}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: unknown feature column 'prompt_length'"):
        await pin.pin_reference_async(redis, "m", file=path)


async def test_a_reference_smaller_than_min_samples_is_refused(redis, tmp_path) -> None:
    """Fewer rows than the workers' min_samples would make every later run a skip: refused, naming both numbers."""
    await write_stream(redis)
    with pytest.raises(
        ValueError,
        match=r"^80 samples of model 'm' between .*: fewer than monitors\.drift\.min_samples \(100\), so every drift "
        r"run would be skipped; pin a longer time range \(or --file\), or lower min_samples",
    ):
        await pin.pin_reference_async(redis, "m", START, START + 80)  # the default configuration's min_samples
    small = DriftConfig(min_samples=90)
    with pytest.raises(ValueError, match=r"^80 samples .*min_samples \(90\)"):
        await pin.pin_reference_async(redis, "m", START, START + 80, settings=small)
    path = tmp_path / "reference.jsonl"
    path.write_text("".join(json.dumps(extract(s, x)) + "\n" for s, x in generate(Traffic(), 89, seed=15)))
    with pytest.raises(ValueError, match=r"^89 samples of model 'm' in .*reference\.jsonl: .*\(90\).*add rows to the"):
        await pin.pin_reference_async(redis, "m", file=path, settings=small)
    assert await redis.exists("llmops:drift:m:reference") == 0
    assert (await pin.pin_reference_async(redis, "m", START, START + 90, settings=small))["rows"] == 90


def test_command_line(redis_url, capsys, tmp_path) -> None:
    import asyncio

    import redis.asyncio as aioredis

    async def setup() -> None:
        client = aioredis.from_url(redis_url)
        await client.flushdb()
        await write_stream(client)
        await client.aclose()

    asyncio.run(setup())
    parser = argparse.ArgumentParser(prog="llmops drift pin")
    pin.add_arguments(parser)
    args = parser.parse_args(
        ["--model", "m", "--from", "2025-06-15T15:06:40Z", "--to", "2025-06-15T15:08:00Z", "--redis-url", redis_url]
    )
    assert pin.run(args) == 1  # 80 samples: under the default min_samples (100), every run would be skipped
    out = " ".join(capsys.readouterr().out.split())
    assert "nothing pinned: 80 samples of model 'm'" in out and "min_samples (100)" in out
    config = tmp_path / "llmops.yaml"
    config.write_text(
        "models: [{name: m, deployments: [{name: d, base_url: 'http://127.0.0.1:1/v1', model: m}]}]\n"
        f"redis: {{url: '{redis_url}'}}\n"
        "monitors: {drift: {min_samples: 50}}\n"
    )
    args = parser.parse_args(
        ["--model", "m", "--from", "2025-06-15T15:06:40Z", "--to", "2025-06-15T15:08:00Z", "--config", str(config)]
    )
    assert pin.run(args) == 0  # the configuration's min_samples (50) and redis.url
    out = capsys.readouterr().out
    assert "drift reference pinned for m" in out and "pinned:2025-06-15T15:06:40Z..2025-06-15T15:08:00Z" in out
    assert pin.run(parser.parse_args(["--model", "nobody", "--from", "0", "--to", "1", "--redis-url", redis_url])) == 1
    assert "nothing pinned" in capsys.readouterr().out
    assert pin.run(parser.parse_args(["--model", "m", "--redis-url", redis_url])) == 2
    small = DriftConfig(min_samples=10)
    assert pin.pin_reference(redis_url, "m", START, START + 10, settings=small)["rows"] == 10  # 11 s, one failed


def test_times() -> None:
    assert pin.parse_time("2025-06-15T15:06:40Z") == START
    assert pin.parse_time("2025-06-15T15:06:40") == START  # no zone: UTC
    assert pin.parse_time("2025-06-16T00:06:40+09:00") == START
    assert pin.parse_time(str(START)) == START
    with pytest.raises(ValueError, match="neither an ISO 8601 time"):
        pin.parse_time("yesterday")
