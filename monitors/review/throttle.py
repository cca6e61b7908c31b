"""Sign-in attempts rate limited in Redis, so that every monitors worker counts the same failures.

Two limits, checked before the key is (a refused attempt's key is never looked at, so a correct key from a limited
address is refused too: were it accepted, the limit would not slow down guessing at all):

- **per client address**: ``login_failures_per_address`` failed sign-ins, counted for
  ``login_failure_window_seconds`` from the address's first failure (``llmops:review:login_failures:<address>``);
- **overall**: ``login_failures_per_minute`` failed sign-ins from all addresses together in one clock minute
  (``llmops:review:login_failures_all:<minute>``), against guessing spread over many addresses.

An attempt is counted as a failure *before* its key is checked and given back when the key was right, in one Redis
script each, so that parallel attempts cannot slip past the limit between the check and the count. Every counter gets
its expiry in the script that creates it (and one found without expiry gets it again): nothing outlives its window.

The client address is the TCP peer's, unless the peer is one of ``trusted_proxies``: then it is the right-most
address of ``X-Forwarded-For`` that is not a trusted proxy (what the closest trusted proxy saw). IPv6 addresses count
per /64 network (one host usually holds a whole /64).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import web

from llmops.config_review import ReviewConfig

ADDRESS = "llmops:review:login_failures:"
OVERALL = "llmops:review:login_failures_all:"

# KEYS: the address's counter, this minute's counter. ARGV: per-address limit, window (ms), per-minute limit, the
# minute counter's expiry (ms). Returns {verdict, the address's failures, the minute's failures, wait (ms)}: verdict 0
# (counted: go on), 1 (refused: the address is over its limit), 2 (refused: over the overall limit).
_RESERVE = """
local mine = tonumber(redis.call('GET', KEYS[1]) or '0')
if mine >= tonumber(ARGV[1]) then
  local wait = redis.call('PTTL', KEYS[1])
  if wait < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    wait = tonumber(ARGV[2])
  end
  return {1, mine, 0, wait}
end
local all = tonumber(redis.call('GET', KEYS[2]) or '0')
if all >= tonumber(ARGV[3]) then return {2, mine, all, 0} end
mine = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
all = redis.call('INCR', KEYS[2])
if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return {0, mine, all, 0}
"""

# KEYS: the counters an attempt was counted in: given back (the key was right). A counter that expired meanwhile is
# not created again.
_REFUND = """
for i = 1, #KEYS do
  local n = tonumber(redis.call('GET', KEYS[i]) or '0')
  if n > 0 then redis.call('DECR', KEYS[i]) end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Attempt:
    """A sign-in attempt counted as a failure until :meth:`SignInLimits.succeeded` gives it back."""

    keys: tuple[str, str]
    failures: int  # the address's failures in its window, this attempt included
    overall: int  # failures from all addresses this minute, this attempt included


@dataclass(frozen=True, slots=True)
class Refusal:
    """A sign-in attempt refused before its key was checked."""

    scope: str  # "address" or "overall"
    retry_after: int  # seconds until an attempt may be made again


class SignInLimits:
    """The sign-in limits of ``monitors.review`` over the worker's Redis client."""

    def __init__(self, redis: aioredis.Redis, config: ReviewConfig) -> None:
        self.per_address = config.login_failures_per_address
        self.window_ms = max(1, int(config.login_failure_window_seconds * 1000))
        self.per_minute = config.login_failures_per_minute
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies]
        self._reserve = redis.register_script(_RESERVE)
        self._refund = redis.register_script(_REFUND)

    def client_address(self, request: web.BaseRequest) -> str:
        """Whose attempt this is: the peer, or behind a trusted proxy the address it forwarded (see above)."""
        peer = _ip(request.remote)
        if peer is not None and self._trusted(peer):
            forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
            for hop in reversed(forwarded.split(",") if forwarded else []):
                ip = _ip(hop)
                if ip is None:  # not an address: written by the client, left of what the proxies appended
                    break
                peer = ip
                if not self._trusted(ip):
                    break
        return "unknown" if peer is None else _bucket(peer)

    def _trusted(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip.version == net.version and ip in net for net in self.trusted)

    async def attempt(self, address: str, now: float | None = None) -> Attempt | Refusal:
        """Count an attempt from ``address`` as a failure, or refuse it (Redis errors propagate)."""
        now = time.time() if now is None else now
        keys = (ADDRESS + address, f"{OVERALL}{int(now // 60)}")
        args = [self.per_address, self.window_ms, self.per_minute, 120_000]
        verdict, failures, overall, wait_ms = (int(v) for v in await self._reserve(keys=list(keys), args=args))
        if verdict == 1:
            return Refusal("address", max(1, -(-wait_ms // 1000)))
        if verdict == 2:
            return Refusal("overall", max(1, 60 - int(now % 60)))
        return Attempt(keys, failures, overall)

    async def succeeded(self, attempt: Attempt) -> None:
        """The attempt's key was right: it is not a failure."""
        await self._refund(keys=list(attempt.keys), args=[])


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _bucket(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """What an address counts as: itself (IPv4), its /64 network (IPv6)."""
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
