"""User feedback on answers: ``POST /v1/feedback {request_id, rating: positive|negative, comment?}``.

Who may rate what (``feedback`` in the config): by default only the key that made the request (another key gets the
same 404 as an unknown request, so ids of other keys' requests tell nothing), or any key. One rating counts per
request and key: a later one replaces it. Each key may send ``feedback.rpm`` feedback requests a minute (in Redis
when configured, shared by the gateway processes; per process otherwise or while Redis is away).

A rating is counted in ``llm_gateway_feedback_total{model, variant, rating}`` when it is new or changed, kept in the
per-model tally the monitors read for their variant ratings (a changed rating moves its count), and its first
rating goes to the Redis stream ``llmops:feedback`` that drift detection reads. The request itself is found through
:class:`~gateway.request_index.RequestIndex`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import orjson

from gateway.errors import GatewayError, bad_request
from gateway.request_index import RequestIndex
from llmops.config_server import FeedbackConfig
from llmops.contract import FEEDBACK_RATINGS, FEEDBACK_STREAM, FEEDBACK_TALLY_PREFIX, feedback_tally_field

log = logging.getLogger("llmops.gateway.feedback")

GIVEN_PREFIX = "llmops:feedback_given:"  # per request: key -> the rating it gave
_MEMORY_ENTRIES = 20_000

# KEYS: given hash, tally hash, stream. ARGV: key, rating, ttl, new tally field, the variant's tally field prefix,
# then the stream entry's field/value pairs. Returns {verdict, previous rating or ""}.
_GIVE = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[2] then return {'unchanged', old} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
if old then
  redis.call('HINCRBY', KEYS[2], ARGV[5] .. old, -1)
  return {'replaced', old}
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 100000, '*', unpack(ARGV, 6))
return {'recorded', ''}
"""


def _not_found(request_id: str, ttl_seconds: int) -> GatewayError:
    return GatewayError(
        404,
        f"No request {request_id!r} of this key is known to this gateway (feedback is accepted for "
        f"{ttl_seconds // 3600 or 1} h after the answer).",
        param="request_id",
        code="request_not_found",
    )


def _rate_limited(key: str, rpm: int, retry_after: int) -> GatewayError:
    return GatewayError(
        429,
        f"Rate limit reached for feedback of key '{key}': {rpm} per minute. Try again in {retry_after} s.",
        type="requests",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(retry_after)},
    )


def parse_feedback(body: bytes) -> tuple[str, str, str | None]:
    """``(request_id, rating, comment)`` from a feedback body, or a 400 that says what is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request("The feedback body must be JSON: {request_id, rating, comment?}.") from None
    if not isinstance(data, dict):
        raise bad_request("The feedback body must be a JSON object.")
    request_id = data.get("request_id")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= 128:
        raise bad_request("'request_id' is required: the x-request-id header of the answer.", param="request_id")
    rating = data.get("rating")
    if rating not in FEEDBACK_RATINGS:
        raise bad_request("'rating' must be 'positive' or 'negative'.", param="rating")
    comment = data.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise bad_request("'comment' must be a string.", param="comment")
    return request_id, rating, comment[:2000] if comment else None


class FeedbackDesk:
    """Takes feedback for one gateway process: who may rate, how often, one rating per request and key."""

    def __init__(self, index: RequestIndex, metrics: Any, config: FeedbackConfig | None = None) -> None:
        self.index = index
        self.metrics = metrics
        self.config = config or FeedbackConfig()
        self._given: OrderedDict[tuple[str, str], str] = OrderedDict()  # (request id, key) -> rating, without Redis
        self._sent: dict[str, tuple[int, int]] = {}  # key -> (minute, feedback requests in it), without Redis
        self._script: Any = None

    async def record(self, request_id: str, rating: str, comment: str | None, key: str) -> dict[str, Any]:
        """Count and store one rating; 429 past the key's rate, 404 when the request is unknown to this key."""
        await self._admit(key)
        found = await self.index.lookup(request_id)
        if found is None or (self.config.policy == "same_key" and found.key != key):
            raise _not_found(request_id, self.index.ttl_seconds)
        verdict, previous, stored = await self._give(request_id, found.model, found.variant, rating, comment, key)
        if verdict != "unchanged":
            self.metrics.feedback.labels(found.model, found.variant, rating).inc()
        return {
            "status": verdict,
            "request_id": request_id,
            "model": found.model,
            "variant": found.variant or None,
            "replaced": previous or None,
            "stored": stored,
        }

    async def _admit(self, key: str) -> None:
        """Count one feedback request of ``key``; 429 past ``feedback.rpm`` (in Redis, else in this process)."""
        now = time.time()
        minute = int(now // 60)
        count = None
        if self.index.redis is not None:
            counter = f"llmops:rl:{key}:feedback:{minute}"
            try:
                pipe = self.index.redis.pipeline(transaction=False)
                pipe.incr(counter)
                pipe.pexpire(counter, 61_000)
                count = int((await pipe.execute())[0])
            except Exception:
                count = None  # Redis away: this process counts alone
        if count is None:
            seen, sent = self._sent.get(key, (minute, 0))
            count = sent + 1 if seen == minute else 1
            self._sent[key] = (minute, count)
        if count > self.config.rpm:
            raise _rate_limited(key, self.config.rpm, 60 - int(now % 60))

    async def _give(
        self, request_id: str, model: str, variant: str, rating: str, comment: str | None, key: str
    ) -> tuple[str, str, bool]:
        """Keep ``key``'s rating of the request: ``(recorded | replaced | unchanged, previous rating, in Redis)``."""
        redis = self.index.redis
        if redis is not None:
            if self._script is None:
                self._script = redis.register_script(_GIVE)
            entry = {"request_id": request_id, "model": model, "variant": variant, "rating": rating, "key": key}
            entry["ts"] = f"{time.time():.3f}"
            if comment:
                entry["comment"] = comment
            keys = [GIVEN_PREFIX + request_id, FEEDBACK_TALLY_PREFIX + model, FEEDBACK_STREAM]
            args: list[Any] = [key, rating, self.index.ttl_seconds, feedback_tally_field(variant, rating)]
            args += [feedback_tally_field(variant, ""), *(item for pair in entry.items() for item in pair)]
            try:
                verdict, previous = await self._script(keys=keys, args=args)
            except Exception as error:
                log.warning("feedback for %s counted here but not stored: Redis unavailable (%s)", request_id, error)
            else:
                return verdict.decode(), previous.decode(), True
        previous_here = self._given.get((request_id, key))
        if previous_here == rating:
            return "unchanged", rating, False
        self._given[(request_id, key)] = rating
        if len(self._given) > _MEMORY_ENTRIES:
            self._given.popitem(last=False)
        return ("replaced" if previous_here else "recorded"), previous_here or "", False
