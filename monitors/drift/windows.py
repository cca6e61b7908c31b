"""Drift windows in Redis, per model, shared by every worker and kept across restarts.

Keys (``llmops:drift:<model>:...``):

- ``window``: a list of feature rows (JSON), the current window: the last ``window`` samples (``LTRIM``), of which
  those older than ``window_minutes`` are left out when read (when that is set).
- ``scores:<feature>``: per judge score (``monitors.drift.JUDGE_FEATURES``), a list of its last ``window`` values
  (``[ts, value]``): a judge that scores a share r of the samples has its own window of ``window`` scores, spanning
  about ``window / r`` samples, so that quality features are tested when judges run on a sample of the traffic.
- ``reference``: a hash, ``meta`` (JSON: content hash, created_at, source, rows) and ``rows`` (a JSON array). The
  content hash is the SHA-256 of the rows as canonical JSON, so a report can say which reference it used. An
  ``auto-first-window`` reference also has, per judge score, ``scores:<feature>`` (a JSON array of
  ``[ts, value]``): the score's first full window of ``window`` values, taken when its list first fills; until then
  the score's reference values are those of the reference's rows.
- ``count`` (samples seen), ``timer`` (expires ``every_seconds`` after the last run), ``last`` and ``version`` (the
  latest run's result and a counter, so every worker exports the latest result whichever worker ran it).

Appending a row and deciding whether a run is due is one Lua script: atomic, so among several workers exactly one
sees each ``every``-th sample and runs.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from llmops.config import DriftConfig
from llmops.contract import FEEDBACK_STREAM  # written by the gateway: request_id, model, rating, ts
from monitors.drift import JUDGE_FEATURES, PREFIX

AUTO_SOURCE = "auto-first-window"
SCORES = "scores:"  # key name (and reference hash field) prefix of a judge score's window
_SCORE_NAMES = tuple(f.name for f in JUDGE_FEATURES)

# KEYS: window, count, timer, reference, version, then one ``scores:<feature>`` list per judge score of the row.
# ARGV: row, max rows, every, every_ms, min rows for a timed run, then per judge score its feature name and its entry,
# then (with judge scores) what an auto reference's meta holds (its source as compact JSON).
# Returns {samples seen, window length, due (0 no, 1 by count, 2 by time), has reference (0/1), result version}.
# A judge score's list keeps its last ``max rows`` entries; under an auto reference, the first time it is full it is
# copied into the reference (``scores:<feature>``), once.
_APPEND = """
local max_rows = tonumber(ARGV[2])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -max_rows, -1)
local auto = false
if #KEYS > 5 then
  local meta = redis.call('HGET', KEYS[4], 'meta')
  auto = meta and string.find(meta, ARGV[2 * #KEYS - 4], 1, true) ~= nil
end
for i = 6, #KEYS do
  local field = 'scores:' .. ARGV[2 * i - 6]
  redis.call('RPUSH', KEYS[i], ARGV[2 * i - 5])
  redis.call('LTRIM', KEYS[i], -max_rows, -1)
  if auto and redis.call('LLEN', KEYS[i]) >= max_rows and redis.call('HEXISTS', KEYS[4], field) == 0 then
    redis.call('HSET', KEYS[4], field, '[' .. table.concat(redis.call('LRANGE', KEYS[i], 0, -1), ',') .. ']')
  end
end
local seen = redis.call('INCR', KEYS[2])
local length = redis.call('LLEN', KEYS[1])
local every = tonumber(ARGV[3])
local every_ms = tonumber(ARGV[4])
local due = 0
if every > 0 and seen % every == 0 then
  due = 1
  if every_ms > 0 then redis.call('SET', KEYS[3], '1', 'PX', every_ms) end
elseif every_ms > 0 and length >= tonumber(ARGV[5]) then
  if redis.call('SET', KEYS[3], '1', 'NX', 'PX', every_ms) then due = 2 end
end
local version = redis.call('GET', KEYS[5])
if not version then version = '0' end
return {seen, length, due, redis.call('HEXISTS', KEYS[4], 'meta'), version}
"""

# KEYS: reference. ARGV: meta, rows, only if absent (0/1). Returns 1 when stored. A new reference replaces the whole
# hash: the judge scores' windows of the one it replaces go with it.
_SET_REFERENCE = """
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[1], 'meta') == 1 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'meta', ARGV[1], 'rows', ARGV[2])
return 1
"""
_AUTO_MARK = f'"source":"{AUTO_SOURCE}"'.encode()  # in an auto reference's meta (orjson writes compact JSON)


@dataclass(frozen=True, slots=True)
class ReferenceInfo:
    """Which reference a run used: content hash, when it was stored, where it came from, how many rows, and the time
    span of its samples (None when its rows carry no ``ts``)."""

    hash: str
    created_at: float
    source: str  # auto-first-window | pinned:<from>..<to> | file:<path>
    rows: int
    start: float | None = None
    end: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceInfo:
        start, end = data.get("start"), data.get("end")
        return cls(
            str(data["hash"]),
            float(data["created_at"]),
            str(data["source"]),
            int(data["rows"]),
            None if start is None else float(start),
            None if end is None else float(end),
        )


@dataclass(frozen=True, slots=True)
class Appended:
    """What appending one row found."""

    seen: int  # samples of this model seen so far
    length: int  # rows in the window list
    due: int  # 0: no run due; 1: due by count (``every``); 2: due by time (``every_seconds``)
    has_reference: bool
    version: int  # version of the latest stored run result


def content_hash(rows_json: bytes) -> str:
    return hashlib.sha256(rows_json).hexdigest()


def encode_rows(rows: list[dict[str, Any]]) -> bytes:
    """Rows as canonical JSON (sorted keys): what the content hash is taken over."""
    return orjson.dumps(rows, option=orjson.OPT_SORT_KEYS)


class DriftWindows:
    """Current and reference windows per model, in Redis."""

    def __init__(self, redis: aioredis.Redis, settings: DriftConfig, prefix: str = PREFIX) -> None:
        self.redis = redis
        self.settings = settings
        self.prefix = prefix
        self._append = redis.register_script(_APPEND)
        self._set_reference = redis.register_script(_SET_REFERENCE)

    async def load_scripts(self) -> None:
        """Load the Lua scripts up front (see SampleStore.load_scripts)."""
        for script in (self._append, self._set_reference):
            await self.redis.script_load(script.script)

    def key(self, model: str, name: str) -> str:
        return f"{self.prefix}{model}:{name}"

    # ---- current window -----------------------------------------------------------------------------------------
    async def append(self, model: str, row: dict[str, Any]) -> Appended:
        """Add one feature row to the model's current window, and its judge scores to their windows; say whether a
        run is due."""
        s = self.settings
        keys = [self.key(model, n) for n in ("window", "count", "timer", "reference", "version")]
        every_ms = int(s.every_seconds * 1000) if s.every_seconds else 0
        args: list[Any] = [orjson.dumps(row), s.window, s.every, every_ms, s.min_samples]
        ts = row.get("ts")
        for name in _SCORE_NAMES:
            if name in row:
                keys.append(self.key(model, SCORES + name))
                args += [name, orjson.dumps([ts, row[name]])]
        if len(keys) > 5:
            args.append(_AUTO_MARK)
        seen, length, due, has_reference, version = await self._append(keys=keys, args=args)
        return Appended(int(seen), int(length), int(due), bool(has_reference), int(version))

    async def current(self, model: str, now: float | None = None) -> list[dict[str, Any]]:
        """The current window's rows, oldest first (those older than ``window_minutes`` left out)."""
        raw = await self.redis.lrange(self.key(model, "window"), 0, -1)
        return self.recent([orjson.loads(r) for r in raw], now)

    def recent(self, rows: list[dict[str, Any]], now: float | None = None) -> list[dict[str, Any]]:
        if not self.settings.window_minutes:
            return rows
        oldest = (time.time() if now is None else now) - self.settings.window_minutes * 60
        return [r for r in rows if r.get("ts", oldest) >= oldest]

    async def scores_raw(self, model: str) -> dict[str, list[bytes]]:
        """The judge scores' windows as stored (``[ts, value]`` entries, oldest first), of the scores that have one."""
        pipe = self.redis.pipeline(transaction=False)
        for name in _SCORE_NAMES:
            pipe.lrange(self.key(model, SCORES + name), 0, -1)
        return {name: raw for name, raw in zip(_SCORE_NAMES, await pipe.execute(), strict=True) if raw}

    def score_values(self, entries: list[bytes] | list[list[Any]], *, recent: bool = True) -> list[float]:
        """The values of a judge score's window (``[ts, value]`` entries, raw or parsed); with ``recent``, those
        older than ``window_minutes`` are left out (when that is set)."""
        pairs = [orjson.loads(e) if isinstance(e, bytes | str) else e for e in entries]
        if recent and self.settings.window_minutes:
            oldest = time.time() - self.settings.window_minutes * 60
            pairs = [p for p in pairs if p[0] is None or p[0] >= oldest]
        return [float(p[1]) for p in pairs]

    async def is_full(self, model: str, length: int, now: float | None = None) -> bool:
        """Whether the current window is full: ``window`` rows, or (``window_minutes`` set) a span of that many
        minutes with at least ``min_samples`` rows."""
        s = self.settings
        if length >= s.window:
            return True
        if not s.window_minutes or length < s.min_samples:
            return False
        first = await self.redis.lindex(self.key(model, "window"), 0)
        oldest = orjson.loads(first).get("ts") if first else None
        return oldest is not None and oldest <= (time.time() if now is None else now) - s.window_minutes * 60

    # ---- reference ----------------------------------------------------------------------------------------------
    async def reference_info(self, model: str) -> ReferenceInfo | None:
        raw = await self.redis.hget(self.key(model, "reference"), "meta")
        return ReferenceInfo.from_dict(orjson.loads(raw)) if raw else None

    async def reference(self, model: str) -> tuple[ReferenceInfo, list[dict[str, Any]]] | None:
        meta, rows = await self.redis.hmget(self.key(model, "reference"), ["meta", "rows"])
        if not meta or rows is None:
            return None
        return ReferenceInfo.from_dict(orjson.loads(meta)), orjson.loads(rows)

    async def reference_state(self, model: str) -> tuple[ReferenceInfo | None, int]:
        """The reference's metadata and its hash's number of fields: a judge score's window added to an auto reference
        adds a field, so ``(hash, fields)`` says whether a cached reference is still the stored one."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.key(model, "reference"), "meta")
        pipe.hlen(self.key(model, "reference"))
        meta, fields = await pipe.execute()
        return (ReferenceInfo.from_dict(orjson.loads(meta)) if meta else None), int(fields)

    async def reference_rows_raw(self, model: str) -> bytes | str | None:
        """The reference's rows as stored (a JSON array), for parsing off the event loop."""
        return await self.redis.hget(self.key(model, "reference"), "rows")

    async def reference_scores_raw(self, model: str) -> dict[str, bytes]:
        """The judge scores' reference windows of an auto reference, as stored (JSON arrays of ``[ts, value]``)."""
        fields: dict[bytes, bytes] = await self.redis.hgetall(self.key(model, "reference"))  # type: ignore[assignment]
        prefix = SCORES.encode()
        return {k[len(prefix) :].decode(): v for k, v in fields.items() if k.startswith(prefix)}

    async def set_reference(
        self, model: str, rows: list[dict[str, Any]], source: str, *, only_if_absent: bool = False
    ) -> ReferenceInfo | None:
        """Store ``rows`` as the model's reference (None when ``only_if_absent`` and one exists already)."""
        if not rows:
            raise ValueError("a reference needs at least one row")
        blob = encode_rows(rows)
        times = [r["ts"] for r in rows if isinstance(r.get("ts"), int | float)]
        span = (min(times), max(times)) if times else (None, None)
        info = ReferenceInfo(content_hash(blob), time.time(), source, len(rows), *span)
        stored = await self._set_reference(
            keys=[self.key(model, "reference")],
            args=[orjson.dumps(info.to_dict()), blob, "1" if only_if_absent else "0"],
        )
        return info if stored else None

    async def auto_reference(self, model: str) -> ReferenceInfo | None:
        """Take the current window as the reference if the model has none yet (``auto-first-window``)."""
        rows = await self.current(model)
        if not rows:
            return None
        return await self.set_reference(model, rows, AUTO_SOURCE, only_if_absent=True)

    async def clear(self, model: str) -> None:
        """Forget everything kept for ``model`` (windows, reference, counters, results)."""
        names = ("window", "count", "timer", "reference", "last", "version", *(SCORES + n for n in _SCORE_NAMES))
        await self.redis.delete(*(self.key(model, n) for n in names))

    # ---- the latest result, shared by the workers ------------------------------------------------------------------
    async def store_result(self, model: str, result: dict[str, Any]) -> int:
        """Keep the latest run's result; returns its version."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.key(model, "last"), orjson.dumps(result))
        pipe.incr(self.key(model, "version"))
        _, version = await pipe.execute()
        return int(version)

    async def feedback(self, model: str, start: float, end: float, limit: int = 50_000) -> list[float]:
        """The model's user feedback given between ``start`` and ``end`` (1 = positive, 0 = negative), from the
        gateway's ``llmops:feedback`` stream (ids are millisecond timestamps; at most ``limit`` entries read)."""
        entries = await self.redis.xrange(
            FEEDBACK_STREAM, min=str(int(start * 1000)), max=str(int(end * 1000)), count=limit
        )
        assert entries is not None  # XRANGE replies with a list, empty when nothing matches
        wanted = model.encode()
        # an XRANGE entry always has its fields (None only for a deleted entry still pending, from XREADGROUP)
        return [
            1.0 if f.get(b"rating") == b"positive" else 0.0
            for _, f in entries
            if f is not None and f.get(b"model") == wanted
        ]

    async def last_result(self, model: str) -> tuple[int, dict[str, Any] | None]:
        version, raw = await self.redis.mget([self.key(model, "version"), self.key(model, "last")])
        return int(version or 0), (orjson.loads(raw) if raw else None)
