"""``llmops drift pin``: pin a model's drift reference, from sampled traffic in a time range or from a file.

    llmops drift pin --model llama-3-8b --from 2025-06-01T00:00 --to 2025-06-02T00:00
    llmops drift pin --model llama-3-8b --file reference.csv      # or .jsonl: one feature row per line

From the stream: the samples of the model between the two times (stream ids are millisecond timestamps; ``sample.ts``
is checked too), with the judge scores still kept for them (``llmops:results:<id>``), turned into feature rows.
From a file: feature rows (columns named as in ``monitors.drift.FEATURES``, plus an optional ``ts``). The reference is
stored with its content hash, creation time and source (``pinned:<from>..<to>`` or ``file:<path>``); workers pick it
up at their next run. A reference with fewer rows than ``monitors.drift.min_samples`` (of ``--config``, else the
default) is refused: every run would be skipped against it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from llmops.contract import SAMPLE_FIELD, SAMPLES_STREAM
from monitors.drift import PREFIX

if TYPE_CHECKING:  # the command line builds its parsers at start: the rest is imported when a pin runs
    import redis.asyncio as aioredis

    from llmops.config import DriftConfig
    from monitors.drift.features import Row


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_BATCH = 1000


def parse_time(value: str | float | datetime) -> float:
    """Epoch seconds from an ISO 8601 time (UTC when it names no zone), a datetime, or epoch seconds."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        return float(value)
    else:
        try:
            return float(value)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            example = "e.g. 2025-06-01T00:00:00Z"
            raise ValueError(f"{value!r} is neither an ISO 8601 time ({example}) nor epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def rows_from_stream(
    redis: aioredis.Redis, model: str, start: float, end: float, stream: str = SAMPLES_STREAM
) -> list[Row]:
    """Feature rows of ``model``'s successful samples between ``start`` and ``end`` (epoch seconds, inclusive)."""
    from llmops.sample import Sample
    from monitors.drift.features import extract
    from monitors.store import RESULTS

    samples: list[Sample] = []
    cursor = str(int(start * 1000))
    last = str(int(end * 1000))
    while True:
        entries = await redis.xrange(stream, min=cursor, max=last, count=_BATCH)
        assert entries is not None  # XRANGE replies with a list, empty when nothing matches
        for _, fields in entries:
            if fields is None:  # never from XRANGE; skipped like an unreadable sample
                continue
            try:
                sample = Sample.from_json(fields[SAMPLE_FIELD.encode()])
            except (KeyError, ValueError, TypeError):
                continue
            if sample.model == model and sample.status == 200 and start <= sample.ts <= end:
                samples.append(sample)
        if len(entries) < _BATCH:
            break
        cursor = "(" + (entries[-1][0].decode() if isinstance(entries[-1][0], bytes) else str(entries[-1][0]))
    rows = []
    for offset in range(0, len(samples), _BATCH):
        batch = samples[offset : offset + _BATCH]
        pipe = redis.pipeline(transaction=False)
        for sample in batch:
            pipe.hgetall(RESULTS + sample.id)
        for sample, results in zip(batch, await pipe.execute(), strict=True):
            rows.append(extract(sample, _scores(results)))
    return rows


def _scores(results: dict[bytes, bytes]) -> dict[str, float]:
    scores = {}
    for name, raw in results.items():
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict) and isinstance(value.get("score"), int | float):
            scores[name.decode()] = float(value["score"])
    return scores


def load_rows(path: str | Path) -> list[Row]:
    """Feature rows from a ``.csv`` (header = feature names) or ``.jsonl`` / ``.json`` file; ValueError on a bad
    row, naming its line."""
    file = Path(path)
    rows: list[Row] = []
    with file.open(encoding="utf-8", newline="") as handle:
        if file.suffix.lower() == ".csv":
            for line, record in enumerate(csv.DictReader(handle), start=2):
                rows.append(_checked(record, file, line))
        else:
            for line, text in enumerate(handle, start=1):
                if text.strip():
                    try:
                        record = json.loads(text)
                    except ValueError as error:
                        raise ValueError(f"{file}:{line}: not JSON: {error}") from None
                    if not isinstance(record, dict):
                        raise ValueError(f"{file}:{line}: each line must be a JSON object of feature values")
                    rows.append(_checked(record, file, line))
    return rows


def _checked(record: dict[str, Any], file: Path, line: int) -> Row:
    from monitors.drift.features import check_row

    try:
        return check_row(record)
    except ValueError as error:
        raise ValueError(f"{file}:{line}: {error}") from None


async def pin_reference_async(
    redis: aioredis.Redis,
    model: str,
    start: str | float | datetime | None = None,
    end: str | float | datetime | None = None,
    file: str | Path | None = None,
    *,
    settings: DriftConfig | None = None,
    prefix: str = PREFIX,
) -> dict[str, Any]:
    """Select the rows and store them as ``model``'s reference; returns what was pinned. ValueError when there are
    fewer rows than ``settings.min_samples`` (default: ``DriftConfig()``'s), since every run would skip them."""
    from llmops.config import DriftConfig
    from monitors.drift.windows import DriftWindows

    settings = settings if settings is not None else DriftConfig()
    if file is not None:
        rows = load_rows(file)
        source = f"file:{file}"
        where = f"in {file}"
        remedy = "add rows to the file"
    else:
        if start is None or end is None:
            raise ValueError("give --from and --to (a time range of sampled traffic), or --file")
        first, last = parse_time(start), parse_time(end)
        if last <= first:
            raise ValueError(f"--to ({_iso(last)}) must be after --from ({_iso(first)})")
        rows = await rows_from_stream(redis, model, first, last)
        source = f"pinned:{_iso(first)}..{_iso(last)}"
        where = (
            f"between {_iso(first)} and {_iso(last)} in the stream {SAMPLES_STREAM} (it keeps only its latest entries)"
        )
        remedy = "pin a longer time range (or --file)"
    needed = settings.min_samples
    if len(rows) < needed:
        raise ValueError(
            f"{len(rows)} samples of model {model!r} {where}: fewer than monitors.drift.min_samples ({needed}), so "
            f"every drift run would be skipped; {remedy}, or lower min_samples in the workers' configuration and "
            "pass it with --config"
        )
    info = await DriftWindows(redis, settings, prefix).set_reference(model, rows, source)
    assert info is not None
    return {"model": model, **info.to_dict()}


def pin_reference(
    redis_url: str,
    model: str,
    start: str | float | datetime | None = None,
    end: str | float | datetime | None = None,
    file: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Pin ``model``'s reference (see :func:`pin_reference_async`); for synchronous callers."""

    from monitors.store import redis_client

    async def main() -> dict[str, Any]:
        client = redis_client(redis_url, reply_timeout=10.0)
        try:
            return await pin_reference_async(client, model, start, end, file, **options)
        finally:
            await client.aclose()

    return asyncio.run(main())


# ---- command line ----------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``llmops drift pin``."""
    parser.add_argument("--model", required=True, help="public model name")
    parser.add_argument("--from", dest="start", help="start of the time range (ISO 8601, UTC unless a zone is given)")
    parser.add_argument("--to", dest="end", help="end of the time range (ISO 8601)")
    parser.add_argument("--file", help="a .csv or .jsonl file of feature rows instead of a time range")
    parser.add_argument(
        "--config", help="YAML configuration file to take redis.url and monitors.drift.min_samples from"
    )
    parser.add_argument("--redis-url", help=f"Redis URL (default: redis.url from --config, or {DEFAULT_REDIS_URL})")


def run(args: argparse.Namespace) -> int:
    """``llmops drift pin``: 0 when pinned, 1 when nothing could be pinned (the message says why)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    redis_url, settings = args.redis_url, None
    if args.config:
        from monitors.checks import load_monitors_config

        config = load_monitors_config(args.config)
        settings = config.monitors.drift
        if redis_url is None and config.redis:
            redis_url = config.redis.url
    if args.file is None and (args.start is None or args.end is None):
        console.print("[red]give --from and --to (a time range of sampled traffic), or --file[/red]")
        return 2
    try:
        url = redis_url or DEFAULT_REDIS_URL
        pinned = pin_reference(url, args.model, args.start, args.end, args.file, settings=settings)
    except (ValueError, OSError) as error:
        console.print(f"[red]nothing pinned:[/red] {error}")
        return 1
    except Exception as error:  # Redis unreachable, ...
        console.print(f"[red]nothing pinned:[/red] {type(error).__name__}: {error}")
        return 1
    table = Table(title=f"drift reference pinned for {pinned['model']}", show_header=False)
    table.add_row("rows", str(pinned["rows"]))
    table.add_row("source", pinned["source"])
    table.add_row("content hash", pinned["hash"])
    table.add_row("created at", _iso(pinned["created_at"]))
    console.print(table)
    console.print("[dim]workers use it from their next drift run; reports name it by its hash[/dim]")
    return 0
