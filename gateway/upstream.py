"""HTTP to upstream deployments: pooled connections, timeouts, and the classification of every failure into a
client-facing error plus a bounded ``reason`` label (HTTP error bodies are read by the deployment's provider)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from gateway.errors import GatewayError, UpstreamFailure, upstream_error

if TYPE_CHECKING:
    from gateway.routing import DeploymentRoute

log = logging.getLogger("llmops.gateway.upstream")

# Bounded read of an upstream error body: enough for any real error message.
_MAX_ERROR_BODY = 64 * 1024
# Shorter than the keep-alive of common upstream servers (uvicorn, vLLM: 5 s), so a pooled connection is never
# reused just as the upstream closes it.
_KEEPALIVE_SECONDS = 4.0


class UpstreamClient:
    """One pooled aiohttp session for every deployment of the gateway."""

    def __init__(self, upstream_error_messages: bool = False) -> None:
        self.upstream_error_messages = upstream_error_messages  # server.upstream_error_messages
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[str, aiohttp.ClientTimeout] = {}

    @property
    def started(self) -> bool:
        return self._session is not None and not self._session.closed

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,
            keepalive_timeout=_KEEPALIVE_SECONDS,
            ttl_dns_cache=300,
            enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            skip_auto_headers=("User-Agent",),
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _timeout(self, route: DeploymentRoute) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(route.name + "\0" + route.model)
        if timeout is None:
            t = route.config.timeouts
            timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.first_byte)
            self._timeouts[route.name + "\0" + route.model] = timeout
        return timeout

    async def post(
        self,
        route: DeploymentRoute,
        path: str,
        body: bytes,
        request_id: str,
        traceparent: str | None = None,
        tracestate: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """POST ``body`` to the deployment; returns once the response headers arrived (the caller reads the body
        and must release the response). Raises :class:`UpstreamFailure` for timeouts and connection failures."""
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        headers = dict(route.headers)
        headers["X-Request-Id"] = request_id
        if extra_headers:
            headers.update(extra_headers)
        if traceparent:
            headers["traceparent"] = traceparent
            if tracestate:
                headers["tracestate"] = tracestate
        try:
            return await self._session.post(route.url(path), data=body, headers=headers, timeout=self._timeout(route))
        except Exception as exc:  # classified below; anything unexpected is an invalid response
            raise classify_exception(route, exc) from exc

    async def fetch(
        self, route: DeploymentRoute, method: str, url: str, body: bytes | None, request_id: str
    ) -> tuple[int, bytes]:
        """One whole exchange with ``url`` (a server-root endpoint of the deployment's host): status and body."""
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        headers = {**route.headers, "X-Request-Id": request_id}
        try:
            response = await self._session.request(
                method, url, data=body, headers=headers, timeout=self._timeout(route)
            )
        except Exception as exc:
            raise classify_exception(route, exc) from exc
        return response.status, await self.read(route, response)

    def http_error(
        self,
        route: DeploymentRoute,
        status: int,
        body: bytes,
        headers: Any,
        request_id: str,
        not_found_is_clients: bool = False,
    ) -> UpstreamFailure:
        """:func:`classify_http_error`, with the upstream's own message kept out of a 502 the client gets (it may
        name internal hosts, paths or keys) unless ``server.upstream_error_messages``: the client then reads the
        upstream's status and its request id, the log keeps the upstream's message."""
        failure = classify_http_error(route, status, body, headers, not_found_is_clients)
        error = failure.error
        if self.upstream_error_messages or error.status < 500 or status == 404:  # 404: the message is ours
            return failure
        what = "rejected the gateway's credentials" if status in (401, 403) else "failed"
        failure.detail = error.message
        failure.error = GatewayError(
            error.status,
            f"Upstream deployment '{route.name}' {what} with HTTP {status} (request {request_id}).",
            type=error.type,
            code=error.code,
            headers=error.headers,
        )
        return failure

    async def read(self, route: DeploymentRoute, response: aiohttp.ClientResponse) -> bytes:
        """The whole body of a unary response, failures classified."""
        try:
            return await response.read()
        except Exception as exc:
            raise classify_exception(route, exc) from exc
        finally:
            response.release()


def classify_exception(route: DeploymentRoute, exc: BaseException) -> UpstreamFailure:
    """Map a client-side exception to ``(reason, client error)``."""
    name = route.name
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        t = route.config.timeouts
        return UpstreamFailure(
            "timeout",
            upstream_error(
                504,
                f"Upstream deployment '{name}' timed out (timeouts: connect {t.connect:g} s, first byte "
                f"{t.first_byte:g} s, total {t.total:g} s).",
                "upstream_timeout",
            ),
            retryable=True,
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamFailure(
            "connect",
            upstream_error(502, f"Could not connect to upstream deployment '{name}'.", "upstream_connect_error"),
            retryable=True,
        )
    return UpstreamFailure(
        "invalid_response",
        upstream_error(
            502,
            f"Upstream deployment '{name}' broke off the exchange ({type(exc).__name__}).",
            "upstream_invalid_response",
        ),
        retryable=isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError),
    )


def classify_http_error(
    route: DeploymentRoute, status: int, body: bytes, headers: Any, not_found_is_clients: bool = False
) -> UpstreamFailure:
    """An upstream HTTP error status: 4xx reaches the client with its status and message, except 401/403 (the
    gateway's own credentials) and 404 (the deployment's base_url or model is wrong: the gateway already checked the
    public model name), which are the deployment's fault: 502, retried on another deployment and counted against
    its health; 5xx becomes 502 too. With ``not_found_is_clients`` (the request names upstream state, such as a
    previous response), a 404 is the client's and passes through."""
    if (
        status == 404 and not not_found_is_clients
    ):  # the deployment's model (or base_url) is wrong, not the client's request: any provider
        return UpstreamFailure(
            "http_4xx",
            upstream_error(
                502,
                f"Upstream deployment '{route.name}' answered 404 for model '{route.config.model}'; check the "
                "deployment's base_url and model.",
                "upstream_not_found",
            ),
            retryable=True,
        )
    return route.adapter.classify_error(route, status, body[:_MAX_ERROR_BODY], headers)


class FailureLog:
    """Says in the log when a deployment fails on its side (refused connection, timeout, broken exchange, 5xx): at
    most once per ``every`` seconds per deployment and reason, with how many more failed meanwhile."""

    REASONS = frozenset({"connect", "timeout", "invalid_response", "http_5xx"})

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._said: dict[tuple[str, str], tuple[float, int]] = {}  # (deployment key, reason) -> (when, unsaid since)

    def note(self, route: DeploymentRoute, failure: UpstreamFailure) -> None:
        if failure.reason not in self.REASONS:
            return
        key = (route.key, failure.reason)
        now = time.monotonic()
        said, unsaid = self._said.get(key, (-self.every, 0))
        if now - said < self.every:
            self._said[key] = (said, unsaid + 1)
            return
        self._said[key] = (now, 0)
        cause = failure.__cause__
        log.warning(
            "upstream deployment %s of model %s (%s:%s) failed: %s%s%s",
            route.name,
            route.model,
            route.host,
            route.port,
            failure.detail or failure.error.message,
            f" [{type(cause).__name__}: {cause}]" if cause is not None else "",
            f"; {unsaid} more {failure.reason} failures in the last {now - said:.0f} s" if unsaid else "",
        )
