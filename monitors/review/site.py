"""The review page on the worker's HTTP port: ``/review`` (server-rendered, no front-end build).

| route | what |
|---|---|
| ``GET /review`` | the queues (signed in), else the sign-in page |
| ``GET|POST /review/login``, ``POST /review/logout`` | sign in with a reviewer key; sign out |
| ``GET /review/q/<queue>`` | the reviewer's next item of the queue (side by side, or one answer to grade) |
| ``POST /review/q/<queue>/<item>/vote`` | the vote; then ``GET .../reveal`` shows who wrote what |
| ``POST /review/q/<queue>/<item>/skip`` | pass (the item is not shown to this reviewer again) |
| ``GET /review/leaderboard`` | ratings with intervals per source, and judge-human agreement |
| ``GET /review/static/<file>`` | the page's script (keyboard shortcuts) and style sheet |

Every response under ``/review`` carries a strict Content-Security-Policy (scripts and styles from this origin only,
no inline script, no plugin, no framing, forms posting only here) and ``no-store``; model text is escaped
(:mod:`monitors.review.pages`). Every POST needs the session's CSRF token (:mod:`monitors.review.auth`). Failed
sign-ins are limited per client address and overall (:mod:`monitors.review.throttle`: 429 with ``Retry-After``).
While Redis cannot be reached, every page answers 503 with ``Retry-After`` (sessions, items and limits all live
there), and works again as soon as it answers.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from llmops.config_review import ReviewConfig
from monitors.metrics import MonitorMetrics
from monitors.review import pages
from monitors.review.auth import Reviewers, Session, Sessions, check_token, same_origin
from monitors.review.store import ReviewStore
from monitors.review.throttle import Attempt, Refusal, SignInLimits

log = logging.getLogger("llmops.monitors.review")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes browsers send "Origin: null" on our own forms
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}
MAX_COMMENT = 2000
#: What a Redis call raises when Redis cannot be reached or answer (redis-py wraps socket errors; OSError for safety).
REDIS_ERRORS = (RedisError, OSError)
UNAVAILABLE_RETRY_SECONDS = 5
SIGN_IN_OUTCOMES = ("ok", "unknown_key", "limited_address", "limited_overall", "unavailable")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ReviewSite:
    """The handlers of ``/review``; ``ratings`` and ``scoreboard`` (the worker's) are refreshed after each vote."""

    def __init__(
        self,
        config: ReviewConfig,
        store: ReviewStore,
        metrics: MonitorMetrics,
        *,
        ratings: Any = None,
        scoreboard: Any = None,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.ratings = ratings
        self.scoreboard = scoreboard
        self.sessions = Sessions(store.redis, Reviewers(config.reviewers), config.session_hours, config.secure_cookies)
        self.queues = {q.name: q for q in config.queues}
        self.limits = SignInLimits(store.redis, config)
        for outcome in SIGN_IN_OUTCOMES:  # at 0 from the start, so that increase() sees the first one
            metrics.sign_ins.labels(outcome)

    def add_routes(self, app: web.Application) -> None:
        app.on_response_prepare.append(_secure)
        r = app.router
        r.add_get("/review", _guarded(self.home))
        r.add_get("/review/", _guarded(self.home))
        r.add_get("/review/login", _guarded(self.login_form))
        r.add_post("/review/login", _guarded(self.login))
        r.add_post("/review/logout", _guarded(self.logout))
        r.add_get("/review/leaderboard", _guarded(self.leaderboard))
        r.add_get("/review/static/{name}", self.static)
        r.add_get("/review/q/{queue}", _guarded(self.next_item))
        r.add_post("/review/q/{queue}/{item}/vote", _guarded(self.vote))
        r.add_get("/review/q/{queue}/{item}/reveal", _guarded(self.reveal))
        r.add_post("/review/q/{queue}/{item}/skip", _guarded(self.skip))

    # ---- sign-in ----------------------------------------------------------------------------------------------
    async def _session(self, request: web.Request) -> Session:
        session = await self.sessions.current(request)
        if session is None:
            raise web.HTTPSeeOther("/review/login")
        return session

    async def _form(self, request: web.Request, session: Session) -> Any:
        form = await request.post()
        if not same_origin(request) or not check_token(session.csrf, _text(form.get("csrf"))):
            raise web.HTTPForbidden(text="cross-site request refused: reload the page and try again")
        return form

    @staticmethod
    def _html(body: str, status: int = 200) -> web.Response:
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    async def login_form(self, request: web.Request, error: str = "", status: int = 200) -> web.Response:
        response = self._html("", status)
        token = self.sessions.login_token(request, response)
        response.text = pages.page("login.html", csrf=token, error=error, reviewer=None)
        return response

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not same_origin(request) or not check_token(
            request.cookies.get("llmops_review_login"), _text(form.get("csrf"))
        ):
            raise web.HTTPForbidden(text="cross-site request refused: reload the sign-in page and try again")
        address = self.limits.client_address(request)
        try:
            attempt = await self.limits.attempt(address)
            if isinstance(attempt, Refusal):
                return await self._refused(request, address, attempt)
            reviewer = self.sessions.reviewers.authenticate(_text(form.get("key")) or "")
            if reviewer is None:
                return await self._failed(request, address, attempt)
            await self.limits.succeeded(attempt)
            response = _redirect("/review")
            await self.sessions.start(reviewer, response)
        except REDIS_ERRORS as error:
            self.metrics.sign_ins.labels("unavailable").inc()
            log.warning("review sign-in from %s not checked: Redis unreachable (%s)", address, type(error).__name__)
            message = (
                "The review store cannot be reached: try again in a moment · "
                "저장소에 연결할 수 없습니다. 잠시 후 다시 시도하세요"
            )
            refused = await self.login_form(request, message, 503)
            refused.headers["Retry-After"] = str(UNAVAILABLE_RETRY_SECONDS)
            return refused
        self.metrics.sign_ins.labels("ok").inc()
        log.info("reviewer %s signed in from %s", reviewer, address)
        return response

    async def _failed(self, request: web.Request, address: str, attempt: Attempt) -> web.Response:
        """An unknown key (never logged): 401, and a line saying how many failures the address has left."""
        self.metrics.sign_ins.labels("unknown_key").inc()
        limit, window = self.config.login_failures_per_address, self.config.login_failure_window_seconds
        log.warning(
            "review sign-in with an unknown key from %s (failure %d of %d allowed in %g s)",
            address,
            attempt.failures,
            limit,
            window,
        )
        if attempt.failures == limit:
            log.warning("review sign-ins from %s refused for up to %g s: too many failures", address, window)
        if attempt.overall == self.config.login_failures_per_minute:
            log.warning("review sign-ins from every address refused until the minute ends: too many failures")
        return await self.login_form(request, "Unknown reviewer key · 알 수 없는 키입니다", 401)

    async def _refused(self, request: web.Request, address: str, refusal: Refusal) -> web.Response:
        """Over a limit: 429 with ``Retry-After``; the key was not checked."""
        self.metrics.sign_ins.labels(f"limited_{refusal.scope}").inc()
        log.debug("review sign-in from %s refused (%s limit) for %d s", address, refusal.scope, refusal.retry_after)
        wait = refusal.retry_after
        en, ko = (f"{-(-wait // 60)} min", f"{-(-wait // 60)}분") if wait >= 60 else (f"{wait} s", f"{wait}초")
        if refusal.scope == "address":
            message = (
                f"Too many failed sign-ins from your address: try again in {en} · "
                f"로그인 실패가 너무 많습니다. {ko} 후에 다시 시도하세요"
            )
        else:
            message = (
                f"Too many failed sign-ins on this page right now: try again in {en} · "
                f"지금은 로그인 실패가 너무 많습니다. {ko} 후에 다시 시도하세요"
            )
        response = await self.login_form(request, message, 429)
        response.headers["Retry-After"] = str(wait)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        await self._form(request, session)
        response = _redirect("/review/login")
        await self.sessions.end(request, response)
        return response

    # ---- pages ------------------------------------------------------------------------------------------------
    async def home(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        waiting = await self.store.waiting(list(self.queues))
        body = pages.page(
            "home.html", reviewer=session.reviewer, csrf=session.csrf, queues=self.config.queues, waiting=waiting
        )
        return self._html(body)

    def _queue(self, request: web.Request) -> str:
        queue = request.match_info["queue"]
        if queue not in self.queues:
            raise web.HTTPNotFound(text="no such review queue")
        return queue

    async def next_item(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        queue = self._queue(request)
        found = await self.store.next_item(
            queue,
            session.reviewer,
            max_reviewers=self.config.max_reviewers_per_item,
            lease_seconds=self.config.lease_seconds,
            swap=secrets.randbelow(2) == 1,  # left/right at random, per reviewer and item
        )
        common = {"reviewer": session.reviewer, "csrf": session.csrf}
        if found is None:
            return self._html(pages.page("empty.html", queue=queue, **common))
        item, swapped = found
        return self._html(pages.item_page(item, swapped, **common))

    async def _item(self, request: web.Request, reviewer: str) -> tuple[Any, bool]:
        queue = self._queue(request)
        item = await self.store.item(request.match_info["item"])
        if item is None or item.queue != queue:
            raise web.HTTPNotFound(text="no such item (it may have been dropped from its queue)")
        swapped = await self.store.shown(reviewer, item.id)
        if swapped is None:
            raise web.HTTPForbidden(text="this item was not shown to you")
        return item, swapped

    async def vote(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        form = await self._form(request, session)
        item, swapped = await self._item(request, session.reviewer)
        vote: dict[str, Any] = {
            "reviewer": session.reviewer,
            "kind": item.kind,
            "item": item.id,
            "queue": item.queue,
            "model": item.model,
            "ts": time.time(),
        }
        if item.kind == "pair":
            choice = _text(form.get("choice")) or ""
            outcome = pages.outcome_of(choice, swapped)
            if outcome is None:
                raise web.HTTPBadRequest(text="choose left, right, tie or bothbad")
            a, b = item.answers
            vote |= {"choice": choice, "outcome": outcome, "swapped": swapped, "a": a.contestant, "b": b.contestant}
            vote["winner"] = {"a": a.contestant, "b": b.contestant}.get(outcome, outcome)
        else:
            grade = _text(form.get("grade")) or ""
            if not grade.isdigit() or not 1 <= int(grade) <= 10:
                raise web.HTTPBadRequest(text="give a grade from 1 to 10")
            outcome = str(int(grade))
            vote |= {"grade": int(grade), "comment": (_text(form.get("comment")) or "")[:MAX_COMMENT]}
            vote["contestant"] = item.answers[0].contestant
        recorded = await self.store.vote(item, session.reviewer, outcome, vote, self.config.max_reviewers_per_item)
        if recorded == 1:
            self.metrics.votes.labels(item.model, item.kind).inc()
            await self._refresh(item.model)
        raise web.HTTPSeeOther(f"/review/q/{item.queue}/{item.id}/reveal")

    async def _refresh(self, model: str) -> None:
        """Export the new vote's effect at once (the worker also refreshes every 10 s)."""
        try:
            if self.ratings is not None:
                await self.ratings.refresh(model)
            if self.scoreboard is not None:
                await self.scoreboard.refresh_all()
        except Exception as error:
            log.warning("ratings not refreshed after a vote: %s", error)

    async def reveal(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        item, swapped = await self._item(request, session.reviewer)
        vote = await self.store.vote_of(item.id, session.reviewer)
        if vote is None:
            raise web.HTTPSeeOther(f"/review/q/{item.queue}")  # identities only after the vote
        return self._html(pages.reveal_page(item, swapped, vote, reviewer=session.reviewer, csrf=session.csrf))

    async def skip(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        await self._form(request, session)
        item, _ = await self._item(request, session.reviewer)
        await self.store.skip(item, session.reviewer)
        raise web.HTTPSeeOther(f"/review/q/{item.queue}")

    async def leaderboard(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        standings = self.ratings.latest if self.ratings is not None else {}
        checks = self.scoreboard.latest if self.scoreboard is not None else {}
        boards = pages.leaderboard(standings, checks)
        window = self.config.agreement_window_items
        body = pages.page(
            "leaderboard.html", models=boards, window=window, reviewer=session.reviewer, csrf=session.csrf
        )
        return self._html(body)

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in pages.STATIC:
            raise web.HTTPNotFound()
        body = (pages.HERE / "static" / name).read_bytes()
        return web.Response(body=body, content_type=pages.STATIC[name], charset="utf-8")


def _guarded(handler: Handler) -> Handler:
    """``handler``, answering 503 with ``Retry-After`` (not a stack trace) while Redis cannot be reached."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except REDIS_ERRORS as error:
            log.warning("review page %s: Redis unreachable (%s: %s)", request.path, type(error).__name__, error)
            return web.Response(
                status=503,
                text="The review store (Redis) cannot be reached right now: try again in a moment.",
                headers={"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)},
            )

    return guarded


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    """The security headers of every ``/review`` response (error pages and redirects included)."""
    if request.path == "/review" or request.path.startswith("/review/"):
        response.headers.update(SECURITY_HEADERS)


def _redirect(location: str) -> web.Response:
    """A 303 (after a POST: the browser GETs ``location``) that can carry cookies."""
    return web.Response(status=303, headers={"Location": location})


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
