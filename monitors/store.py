"""Redis side of the monitors: the consumer group on the samples stream, claiming, atomic commit of results, and
the per-request results kept for people (``llmops monitors show``).

At-least-once with idempotent effects: an entry is acknowledged only in the same atomic step (a Lua script) that
marks the stream entry processed and stores its results; a second delivery of an already processed entry finds the
mark, is acknowledged, and exports nothing. The mark is keyed on the entry id, not the request id (which the client
may reuse, e.g. a retry with the same ``x-request-id``): two entries are two samples, both judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT, StreamIdT

from llmops.contract import SAMPLE_FIELD, SAMPLE_ID_FIELD, SAMPLES_STREAM

PROCESSED = "llmops:processed:"
RESULTS = "llmops:results:"
ATTEMPTS = "llmops:attempts"
JUDGED = "llmops:judged:"  # per entry: the judges' final outcomes kept by an attempt that left the entry pending
DEAD_LETTERS = SAMPLES_STREAM + ":dead"
_ID_KEY, _SAMPLE_KEY = SAMPLE_ID_FIELD.encode(), SAMPLE_FIELD.encode()  # stream entry fields, as Redis returns them

# KEYS: processed mark, results hash, stream, attempts hash, judged-before hash. ARGV: group, entry id, worker, ttl,
# then field/value pairs.
_COMMIT = """
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('DEL', KEYS[5])
if redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', ARGV[4]) then
  if #ARGV > 4 then
    redis.call('HSET', KEYS[2], unpack(ARGV, 5))
    redis.call('EXPIRE', KEYS[2], ARGV[4])
  end
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry: its stream id and raw fields."""

    entry_id: str
    request_id: str
    raw: bytes | None


#: How long a worker waits for any Redis reply (its longest blocking read is 0.5 s): a Redis that hangs without
#: refusing (stopped, swapping, a network that drops packets) fails commands after this, as an unreachable one does,
#: instead of holding the worker's loop and its review pages for ever.
REPLY_TIMEOUT_SECONDS = 5.0


def redis_client(
    url: str, reply_timeout: float = REPLY_TIMEOUT_SECONDS, connect_timeout: float = 2.0
) -> aioredis.Redis:
    """A Redis client of the monitors (the worker's, its commands'): connecting gives up after ``connect_timeout``,
    a reply after ``reply_timeout``."""
    return aioredis.from_url(url, socket_connect_timeout=connect_timeout, socket_timeout=reply_timeout)


class SampleStore:
    """The worker's view of Redis."""

    def __init__(
        self, redis: aioredis.Redis, group: str, consumer: str, stream: str = SAMPLES_STREAM, address: str = "redis"
    ) -> None:
        self.redis = redis
        self.address = address  # host:port/db, for messages
        self.group = group
        self.consumer = consumer
        self.stream = stream
        self._commit = redis.register_script(_COMMIT)

    @classmethod
    def connect(cls, url: str, group: str, consumer: str, stream: str = SAMPLES_STREAM) -> SampleStore:
        return cls(redis_client(url), group, consumer, stream, redis_address(url))

    async def close(self) -> None:
        await self.redis.aclose()

    async def load_scripts(self) -> None:
        """Load the Lua scripts up front, so that the first EVALSHA never meets NOSCRIPT (a Redis restart still
        does: redis-py then loads the script again)."""
        await self.redis.script_load(self._commit.script)

    def processed_key(self, entry_id: str) -> str:
        """The processed mark of one stream entry."""
        return f"{PROCESSED}{self.stream}:{entry_id}"

    async def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start, so samples written before any worker are judged)."""
        await self.load_scripts()
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    @staticmethod
    def _entries(raw: list[Any]) -> list[Entry]:
        entries = []
        for entry_id, fields in raw:
            if fields is None:  # deleted from the stream (trimmed) while pending
                entries.append(Entry(_text(entry_id), "", None))
                continue
            entries.append(Entry(_text(entry_id), _text(fields.get(_ID_KEY, b"")), fields.get(_SAMPLE_KEY)))
        return entries

    async def read(self, count: int, block_ms: int) -> list[Entry]:
        """New entries for this consumer (waits up to ``block_ms``)."""
        reply = await self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms)
        # redis-py types every protocol's reply; this client speaks RESP2: [[stream, [(id, fields), ...]]]
        streams = cast("list[list[Any]]", reply)
        return self._entries(streams[0][1]) if streams else []

    async def claim(self, min_idle_ms: int, count: int, start_id: str = "0-0") -> tuple[list[Entry], str]:
        """Entries left pending longer than ``min_idle_ms`` by any consumer (a dead worker, or deferred judging), now
        ours, scanning the pending list from ``start_id``; and where the next scan goes on (``"0-0"``: the whole list
        has been scanned).

        Pending entries trimmed from the stream come back without fields (``raw`` None), to be dead-lettered: Redis
        6.2 returns them with nil fields, Redis 7+ lists their ids in a third element of the reply (and has already
        removed them from the pending list)."""
        cursor, claimed, *rest = await self.redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_time=min_idle_ms, start_id=start_id, count=count
        )
        deleted = rest[0] if rest else []
        entries = self._entries(claimed) + [Entry(_text(entry_id), "", None) for entry_id in deleted or []]
        return entries, _text(cursor)

    async def keep(self, entry_ids: list[str]) -> None:
        """Reset the idle time of entries still being processed here (XCLAIM ... JUSTID: no delivery is counted), so
        that other workers do not claim and judge them again while a slow judge call runs."""
        if entry_ids:
            # redis-py asks for a list[StreamIdT] (invariant), where a list of str ids is just as good
            await self.redis.xclaim(
                self.stream, self.group, self.consumer, 0, cast("list[StreamIdT]", entry_ids), justid=True
            )

    async def attempt(self, entry_id: str) -> int:
        """Count one more processing attempt of ``entry_id``; returns how many there were."""
        return int(await self.redis.hincrby(ATTEMPTS, entry_id, 1))

    async def commit(self, entry: Entry, results: dict[str, Any], ttl_seconds: int) -> bool:
        """Atomically: mark the entry processed, store its results (kept per request id), acknowledge the entry.
        False when another delivery of the same entry had already processed it (then only the acknowledgement
        happens)."""
        args: list[Any] = [self.group, entry.entry_id, self.consumer, ttl_seconds]
        for field, value in results.items():
            args += [field, orjson.dumps(value)]
        keys = [
            self.processed_key(entry.entry_id),
            RESULTS + entry.request_id,
            self.stream,
            ATTEMPTS,
            self.judged_key(entry.entry_id),
        ]
        return bool(await self._commit(keys=keys, args=args))

    def judged_key(self, entry_id: str) -> str:
        """Where an attempt that left ``entry_id`` pending keeps the judges' final outcomes."""
        return f"{JUDGED}{self.stream}:{entry_id}"

    async def keep_judged(self, entry_id: str, outcomes: dict[str, bytes], ttl_seconds: int) -> None:
        """Keep the final outcomes of the judges that ran (judge name → serialised outcome) for the next attempt on
        ``entry_id``, so that only the judges still missing run again."""
        if not outcomes:
            return
        key = self.judged_key(entry_id)  # a stale worker may write it after the commit: the TTL bounds it
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping=cast("dict[FieldT, EncodableT]", outcomes))  # Mapping's key type is invariant
        pipe.expire(key, ttl_seconds)
        await pipe.execute()

    async def judged_before(self, entry_id: str) -> dict[str, bytes | str]:
        """What :meth:`keep_judged` kept for ``entry_id`` (empty when nothing was)."""
        raw = await self.redis.hgetall(self.judged_key(entry_id))
        return {_text(name): value for name, value in raw.items()}

    async def dead_letter(self, entry: Entry, reason: str) -> None:
        """Give up on an entry: keep it in the dead-letter stream and acknowledge it."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(
            DEAD_LETTERS,
            {"entry": entry.entry_id, "id": entry.request_id, "reason": reason, "sample": entry.raw or b""},
            maxlen=10_000,
            approximate=True,
        )
        pipe.xack(self.stream, self.group, entry.entry_id)
        pipe.hdel(ATTEMPTS, entry.entry_id)
        pipe.delete(self.judged_key(entry.entry_id))
        await pipe.execute()

    async def backlog(self) -> int:
        """Entries not yet delivered to the group plus entries delivered but not acknowledged. Without the group
        (lost with the stream, or never created) every entry of the stream counts; without the stream, 0."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xinfo_groups(self.stream)
        pipe.xinfo_stream(self.stream)
        try:
            groups, stream = await pipe.execute()
        except ResponseError as error:
            if "no such key" in str(error).lower():
                return 0
            raise
        length = int(stream.get("length") or 0)
        for group in groups:
            if _text(group.get("name", b"")) == self.group:
                return _lag(group, stream, length) + int(group.get("pending") or 0)
        return length

    # ---- pairing answers of variants to the same prompt (pairwise judge) ----------------------------------------
    async def pair_candidates(self, model: str, prompt_hash: str, variant: str, sample: bytes) -> dict[str, bytes]:
        """Remember this variant's latest answer to the prompt; return the other variants' latest answers."""
        key = f"llmops:pairs:{model}:{prompt_hash}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(key)
        pipe.hset(key, variant, sample)
        pipe.expire(key, 3600)
        others, *_ = await pipe.execute()
        return {_text(k): v for k, v in others.items() if _text(k) != variant}


async def fetch_results(redis: aioredis.Redis, request_id: str) -> dict[str, Any] | None:
    """Every result kept for one request id, or None."""
    raw = await redis.hgetall(RESULTS + request_id)
    if not raw:
        return None
    return {_text(k): orjson.loads(v) for k, v in raw.items()}


def redis_address(url: str) -> str:
    """``host:port/db`` of a Redis URL, without its password (for messages)."""
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}{parts.path or '/0'}"


def is_missing_group(error: BaseException) -> bool:
    """Whether a Redis error says the stream or its consumer group does not exist (deleted, Redis restarted empty)."""
    return isinstance(error, ResponseError) and str(error).startswith("NOGROUP")


def _lag(group: dict[Any, Any], stream: dict[Any, Any], length: int) -> int:
    """Entries after the group's last delivered one, at most the stream's length. Redis < 8 keeps counting entries
    trimmed before they were read (redis/redis#13957), and Redis < 7 or a stream with deletions gives no lag."""
    if _text(group.get("last-delivered-id", b"")) == _text(stream.get("last-generated-id", b"")):
        return 0  # everything written so far has been delivered
    lag = group.get("lag")
    if lag is None:
        return 0
    return min(int(lag), length)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
