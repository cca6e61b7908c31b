"""Every Redis call of the review: queues of items, who was shown what, votes, and the tallies votes feed.

Keys (all durable unless said otherwise):

- ``llmops:review:item:<id>``: the item (``doc``: :class:`ReviewItem` JSON; ``votes``; the judge's verdict and the
  contestants as plain fields, for the vote script). Dropped unreviewed when its queue overflows.
- ``llmops:review:queue:<queue>``: sorted set of the items still taking votes (oldest first).
- ``llmops:review:seen:<reviewer>``: item id -> ``1`` if the answers were shown swapped (left = b), else ``0``: an
  item is shown to a reviewer once (a reload shows it again until voted or skipped, never after).
- ``llmops:review:lease:<id>``: reviewers shown the item and not done yet (score: when that hold ends); votes plus
  live holds never exceed ``max_reviewers_per_item``.
- ``llmops:review:votes:<id>``: reviewer -> outcome (one vote per reviewer per item: ``HSETNX``).
- ``llmops:votes:<request id>``: ``<item>|<reviewer>`` -> the vote (JSON), beside the judge results
  (``llmops:results:<request id>``) for ``llmops monitors show``; ``llmops:review:log``: every vote, a stream.
- ``llmops:human:<model>``: the human tally, fields ``a|b|outcome`` (outcome ``a``, ``b``, ``tie``, ``bothbad``), the
  format of the pairwise judge's tally (:mod:`monitors.ratings`).
- ``llmops:agreement:<model>``: judge-human contingency counts ``pair|<judge>|<judge outcome>|<human outcome>``, items
  ``pair_items|<judge>`` and ``single_items|<judge>``, position bias ``bias|<judge>|consistent|inconsistent``, and
  reviewer-reviewer counts ``humans|<outcome>|<outcome>``; ``llmops:agreement_single:<model>``: the last 10,000
  ``<judge>|<judge rating>|<grade>`` of graded items. These all-time tallies are shown on the review page.
- ``llmops:agreement_recent:<judge>:<model>``: the window the exported agreement is computed over (sorted set, the
  item's creation time as score: the latest items the judge judged and a reviewer scored; members
  ``<item>|<kind>|<judge outcome>|<1 if the judge's orders agreed>``), added at an item's first vote;
  ``llmops:agreement_recent:humans:<model>``: pair items at their second vote (reviewer vs reviewer). Each keeps
  the latest 10,000; :mod:`monitors.review.scoreboard` reads the latest ``agreement_window_items`` and the items'
  votes (``llmops:review:votes:<id>``).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from monitors.ratings import HUMAN_MODELS, HUMAN_TALLY
from monitors.review.items import ReviewItem

PREFIX = "llmops:review:"
ITEM, QUEUE, SEEN, LEASE, ITEM_VOTES = (PREFIX + k for k in ("item:", "queue:", "seen:", "lease:", "votes:"))
CURRENT = PREFIX + "current:"  # <reviewer>:<queue> -> the item in hand
VOTES_LOG = PREFIX + "log"
HELD = PREFIX + "held:"  # request id -> a sample waiting for negative feedback (expires)
FEEDBACK_CURSOR = PREFIX + "feedback_cursor"
REQUEST_VOTES = "llmops:votes:"
AGREEMENT = "llmops:agreement:"
AGREEMENT_SINGLE = "llmops:agreement_single:"
AGREEMENT_MODELS = "llmops:agreement_models"
RECENT = "llmops:agreement_recent:"
RECENT_HUMANS = RECENT + "humans:"
SINGLE_KEPT = 10_000
RECENT_KEPT = 10_000

# KEYS: item, queue. ARGV: item id, created, json, kind, model, a, b, judge, judge outcome, consistent, max items.
# An item queued again (the same answers seen by another sample's processing) only gains the judge's verdict it lacked.
_ENQUEUE = """
if redis.call('HSETNX', KEYS[1], 'doc', ARGV[3]) == 0 then
  local known = redis.call('HMGET', KEYS[1], 'judge', 'votes')
  if ARGV[8] ~= '' and (known[1] or '') == '' and known[2] == '0' then
    redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'judge', ARGV[8], 'judge_outcome', ARGV[9])
    redis.call('HSET', KEYS[1], 'judge_consistent', ARGV[10])
  end
  return 0
end
redis.call('HSET', KEYS[1], 'kind', ARGV[4], 'model', ARGV[5], 'a', ARGV[6], 'b', ARGV[7], 'judge', ARGV[8],
  'judge_outcome', ARGV[9], 'judge_consistent', ARGV[10], 'votes', 0)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[11])
if extra > 0 then
  local dropped = redis.call('ZPOPMIN', KEYS[2], extra)
  for i = 1, #dropped, 2 do
    local key = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1]) .. dropped[i]
    if tonumber(redis.call('HGET', key, 'votes') or '0') == 0 then redis.call('DEL', key) end
  end
end
return 1
"""

# KEYS: item, lease, seen, current. ARGV: reviewer, now, hold until, max reviewers, swapped, item id, lease key ttl (s),
# hold (ms): the item stays in the reviewer's hand exactly as long as it counts against the item's reviewers.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[3], ARGV[6]) == 1 then return -2 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
local votes = tonumber(redis.call('HGET', KEYS[1], 'votes') or '0')
if votes + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('HSET', KEYS[3], ARGV[6], ARGV[5])
redis.call('SET', KEYS[4], ARGV[6], 'PX', ARGV[8])
return 1
"""

# KEYS: item, item votes, lease, queue, human tally, agreement, single pairs, log, votes of request 1, of request 2,
# current, the judge's recent items, the model's recent items two reviewers voted on. ARGV: item id, reviewer,
# outcome, vote json, max reviewers, the judge the keys were named for, the item's creation time.
_VOTE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('DEL', KEYS[11])
local votes = redis.call('HINCRBY', KEYS[1], 'votes', 1)
if votes >= tonumber(ARGV[5]) then redis.call('ZREM', KEYS[4], ARGV[1]) end
local field = ARGV[1] .. '|' .. ARGV[2]
redis.call('HSET', KEYS[9], field, ARGV[4])
if KEYS[10] ~= KEYS[9] then redis.call('HSET', KEYS[10], field, ARGV[4]) end
redis.call('XADD', KEYS[8], 'MAXLEN', '~', 1000000, '*', 'item', ARGV[1], 'reviewer', ARGV[2], 'vote', ARGV[4])
local f = redis.call('HMGET', KEYS[1], 'kind', 'a', 'b', 'judge', 'judge_outcome', 'judge_consistent')
local judge = f[4] or ''
if votes == 1 and judge ~= '' and judge == ARGV[6] then
  local member = ARGV[1] .. '|' .. f[1] .. '|' .. (f[5] or '') .. '|' .. (f[6] or '')
  redis.call('ZADD', KEYS[12], ARGV[7], member)
  redis.call('ZREMRANGEBYRANK', KEYS[12], 0, -RECENT_KEPT - 1)
end
if votes == 2 and f[1] == 'pair' then
  redis.call('ZADD', KEYS[13], ARGV[7], ARGV[1])
  redis.call('ZREMRANGEBYRANK', KEYS[13], 0, -RECENT_KEPT - 1)
end
if f[1] == 'pair' then
  redis.call('HINCRBY', KEYS[5], f[2] .. '|' .. f[3] .. '|' .. ARGV[3], 1)
  local mine = ARGV[3]
  if mine == 'bothbad' then mine = 'tie' end
  if judge ~= '' then
    redis.call('HINCRBY', KEYS[6], 'pair|' .. judge .. '|' .. f[5] .. '|' .. mine, 1)
    if votes == 1 then
      redis.call('HINCRBY', KEYS[6], 'pair_items|' .. judge, 1)
      local how = 'inconsistent'
      if f[6] == '1' then how = 'consistent' end
      redis.call('HINCRBY', KEYS[6], 'bias|' .. judge .. '|' .. how, 1)
    end
  end
  local others = redis.call('HGETALL', KEYS[2])
  for i = 1, #others, 2 do
    if others[i] ~= ARGV[2] then
      local x, y = others[i + 1], mine
      if x == 'bothbad' then x = 'tie' end
      if x > y then x, y = y, x end
      redis.call('HINCRBY', KEYS[6], 'humans|' .. x .. '|' .. y, 1)
    end
  end
elseif judge ~= '' then
  redis.call('LPUSH', KEYS[7], judge .. '|' .. f[5] .. '|' .. ARGV[3])
  redis.call('LTRIM', KEYS[7], 0, SINGLE_LAST)
  if votes == 1 then redis.call('HINCRBY', KEYS[6], 'single_items|' .. judge, 1) end
end
return 1
""".replace("SINGLE_LAST", str(SINGLE_KEPT - 1)).replace("RECENT_KEPT", str(RECENT_KEPT))


class ReviewStore:
    """The review's view of Redis (it shares the worker's client)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._enqueue = redis.register_script(_ENQUEUE)
        self._claim = redis.register_script(_CLAIM)
        self._vote = redis.register_script(_VOTE)

    # ---- items in, items out ----------------------------------------------------------------------------------
    async def enqueue(self, item: ReviewItem, max_items: int) -> bool:
        """Queue ``item`` (False when an item with its id was queued before); the oldest unreviewed items of an
        overflowing queue are dropped."""
        a, b = (item.answers + item.answers)[:2]
        consistent = "" if item.judge_consistent is None else str(int(item.judge_consistent))
        args: list[Any] = [item.id, item.created, item.to_json(), item.kind, item.model, a.contestant, b.contestant]
        args += [item.judge or "", item.judge_outcome or "", consistent, max_items]
        created = bool(await self._enqueue(keys=[ITEM + item.id, QUEUE + item.queue], args=args))
        if created and item.kind == "pair":
            await self.redis.sadd(HUMAN_MODELS, item.model)
        if created and item.judge:
            await self.redis.sadd(AGREEMENT_MODELS, item.model)
        return created

    async def item(self, item_id: str) -> ReviewItem | None:
        raw = await self.redis.hget(ITEM + item_id, "doc")
        return ReviewItem.from_json(raw) if raw else None

    async def next_item(
        self, queue: str, reviewer: str, *, max_reviewers: int, lease_seconds: float, swap: bool, scan: int = 500
    ) -> tuple[ReviewItem, bool] | None:
        """The item in hand for ``reviewer`` in ``queue`` (shown before, not voted on or skipped yet), else the
        oldest item they were never shown that takes another reviewer (held for them ``lease_seconds``), with whether
        its answers show swapped (``swap`` decides for a new item); None when there is none."""
        current = await self.redis.get(f"{CURRENT}{reviewer}:{queue}")
        if current:
            item_id = _text(current)
            shown = await self.redis.hget(SEEN + reviewer, item_id)
            voted = await self.redis.hexists(ITEM_VOTES + item_id, reviewer)
            item = await self.item(item_id)
            if item is not None and shown is not None and not voted:
                return item, shown == b"1"
        now = time.time()
        ids = [_text(i) for i in await self.redis.zrange(QUEUE + queue, 0, scan - 1)]
        seen = await self.redis.hmget(SEEN + reviewer, ids) if ids else []
        for item_id, shown in zip(ids, seen, strict=True):
            if shown is not None:
                continue
            keys = [ITEM + item_id, LEASE + item_id, SEEN + reviewer, f"{CURRENT}{reviewer}:{queue}"]
            args: list[Any] = [
                reviewer,
                now,
                now + lease_seconds,
                max_reviewers,
                int(swap),
                item_id,
                int(lease_seconds) + 60,
                max(1, int(lease_seconds * 1000)),
            ]
            if await self._claim(keys=keys, args=args) == 1:
                item = await self.item(item_id)
                if item is not None:
                    return item, swap
        return None

    async def shown(self, reviewer: str, item_id: str) -> bool | None:
        """Whether ``item_id`` was shown to ``reviewer`` swapped (None: never shown to them)."""
        raw = await self.redis.hget(SEEN + reviewer, item_id)
        return None if raw is None else raw == b"1"

    async def skip(self, item: ReviewItem, reviewer: str) -> None:
        """The reviewer passes on the item: its hold is released, and it is not shown to them again."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(LEASE + item.id, reviewer)
        pipe.delete(f"{CURRENT}{reviewer}:{item.queue}")
        await pipe.execute()

    # ---- votes ------------------------------------------------------------------------------------------------
    async def vote(
        self, item: ReviewItem, reviewer: str, outcome: str, vote: dict[str, Any], max_reviewers: int
    ) -> int:
        """Record one vote (1), or refuse a second one by the same reviewer (0) or one on a dropped item (-1).
        ``outcome``: a pair's ``a``, ``b``, ``tie`` or ``bothbad``; a single answer's grade 1-10."""
        ids = item.request_ids
        keys = [
            ITEM + item.id,
            ITEM_VOTES + item.id,
            LEASE + item.id,
            QUEUE + item.queue,
            HUMAN_TALLY + item.model,
            AGREEMENT + item.model,
            AGREEMENT_SINGLE + item.model,
            VOTES_LOG,
            REQUEST_VOTES + ids[0],
            REQUEST_VOTES + ids[-1],
            f"{CURRENT}{reviewer}:{item.queue}",
            f"{RECENT}{item.judge or ''}:{item.model}",
            RECENT_HUMANS + item.model,
        ]
        args: list[Any] = [
            item.id,
            reviewer,
            outcome,
            orjson.dumps(vote),
            max_reviewers,
            item.judge or "",
            item.created,
        ]
        return int(await self._vote(keys=keys, args=args))

    async def vote_of(self, item_id: str, reviewer: str) -> str | None:
        raw = await self.redis.hget(ITEM_VOTES + item_id, reviewer)
        return _text(raw) if raw is not None else None

    async def votes_of_request(self, request_id: str) -> dict[str, Any]:
        """Every vote on answers of one request: ``<item>|<reviewer>`` -> the vote."""
        raw = await self.redis.hgetall(REQUEST_VOTES + request_id)
        return {_text(k): orjson.loads(v) for k, v in raw.items()}

    async def waiting(self, queues: list[str]) -> dict[str, int]:
        """Items still taking votes, per queue."""
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.zcard(QUEUE + queue)
        return dict(zip(queues, [int(n) for n in await pipe.execute()], strict=True))

    # ---- samples waiting for negative feedback ----------------------------------------------------------------
    async def hold(self, request_id: str, entry: dict[str, Any], ttl_seconds: int) -> None:
        await self.redis.set(HELD + request_id, orjson.dumps(entry), ex=ttl_seconds)

    async def held(self, request_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(HELD + request_id)
        return orjson.loads(raw) if raw else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
