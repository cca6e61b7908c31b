"""Reviewers' sign-in, sessions and protection against cross-site requests.

Reviewer keys are configured as API keys are (``monitors.review.reviewers``: a name and the key's SHA-256; the key
itself is never stored): the key's hash is compared with every configured hash in constant time. This is the
monitors' own code (the monitors never import the gateway's ``access.py``).

A signed-in reviewer holds a session cookie (``llmops_review``: 32 random bytes, ``HttpOnly``, ``SameSite=Strict``,
``Path=/review``, ``Secure`` with ``secure_cookies``); Redis keeps only its SHA-256, with the reviewer's name and the
session's CSRF token, for ``session_hours``. Every form carries that token and every POST is refused (403) unless it
matches and, when the browser sends an ``Origin``, the origin is this page's. The sign-in form, before any session,
is protected the same way by a short-lived token in a cookie of its own (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from aiohttp import web

from llmops.config_review import ReviewerKey

SESSION_COOKIE = "llmops_review"
LOGIN_COOKIE = "llmops_review_login"
SESSIONS = "llmops:review:session:"
COOKIE_PATH = "/review"


@dataclass(frozen=True, slots=True)
class Session:
    reviewer: str
    csrf: str


class Reviewers:
    """The configured reviewer keys."""

    def __init__(self, reviewers: list[ReviewerKey]) -> None:
        self._keys = [(r.name, bytes.fromhex(r.sha256)) for r in reviewers]
        self.names = frozenset(name for name, _ in self._keys)

    def authenticate(self, key: str) -> str | None:
        """The name of the reviewer whose key this is, else None (every hash compared: no early exit)."""
        digest = hashlib.sha256(key.strip().encode()).digest()
        found = None
        for name, expected in self._keys:
            if hmac.compare_digest(digest, expected):
                found = name
        return found


class Sessions:
    """Reviewer sessions in Redis, keyed by the SHA-256 of the cookie's value."""

    def __init__(self, redis: aioredis.Redis, reviewers: Reviewers, hours: float, secure: bool) -> None:
        self.redis = redis
        self.reviewers = reviewers
        self.ttl = int(hours * 3600)
        self.secure = secure

    @staticmethod
    def _key(token: str) -> str:
        return SESSIONS + hashlib.sha256(token.encode()).hexdigest()

    async def start(self, reviewer: str, response: web.StreamResponse) -> None:
        token = secrets.token_urlsafe(32)
        session = {"reviewer": reviewer, "csrf": secrets.token_urlsafe(32)}
        await self.redis.set(self._key(token), orjson.dumps(session), ex=self.ttl)
        self.set_cookie(response, SESSION_COOKIE, token, self.ttl)
        response.del_cookie(LOGIN_COOKIE, path=COOKIE_PATH)

    async def current(self, request: web.Request) -> Session | None:
        """The request's session, if its cookie names a live one of a reviewer still configured."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token or len(token) > 128:
            return None
        raw = await self.redis.get(self._key(token))
        if not raw:
            return None
        data = orjson.loads(raw)
        if data.get("reviewer") not in self.reviewers.names:  # the reviewer's key was removed from the config
            return None
        return Session(data["reviewer"], data["csrf"])

    async def end(self, request: web.Request, response: web.StreamResponse) -> None:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await self.redis.delete(self._key(token))
        response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)

    def set_cookie(self, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=self.secure
        )

    def login_token(self, request: web.Request, response: web.StreamResponse) -> str:
        """The sign-in form's CSRF token: the one in the request's sign-in cookie, else a new one set on it."""
        token = request.cookies.get(LOGIN_COOKIE)
        if not token or len(token) > 128:
            token = secrets.token_urlsafe(32)
            self.set_cookie(response, LOGIN_COOKIE, token, 1800)
        return token


def same_origin(request: web.Request) -> bool:
    """False when the browser says the request comes from another origin (``Origin``, else ``Sec-Fetch-Site``)."""
    origin = request.headers.get("Origin")
    if origin is not None:  # the host only: behind a TLS proxy this side sees http where the browser sees https
        return urlsplit(origin).netloc == request.host
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


def check_token(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected).encode(), str(given).encode())
