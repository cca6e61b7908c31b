"""HTTP to OpenAI-compatible upstreams (vLLM, OpenAI, any compatible host): pooled connections, timeouts, and the
classification of every failure into a client-facing error plus a bounded ``reason`` label."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from gateway.errors import GatewayError, normalise_upstream_error, upstream_error
from gateway.routing import DeploymentRoute

# Bounded read of an upstream error body: enough for any real error message.
_MAX_ERROR_BODY = 64 * 1024
# Shorter than the keep-alive of common upstream servers (uvicorn, vLLM: 5 s), so a pooled connection is never
# reused just as the upstream closes it.
_KEEPALIVE_SECONDS = 4.0


class UpstreamFailure(Exception):
    """The upstream exchange failed: ``error`` is what the client sees, ``reason`` the metric label, ``retryable``
    whether another deployment may be tried (connect errors, timeouts, a dropped connection, 429, 5xx), and
    ``retry_after`` the upstream's ``Retry-After`` in seconds, if it sent one."""

    def __init__(
        self, reason: str, error: GatewayError, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(error.message)
        self.reason = reason
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: rare from model APIs; the default cooldown applies


class UpstreamClient:
    """One pooled aiohttp session for every deployment of the gateway."""

    def __init__(self) -> None:
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
    ) -> aiohttp.ClientResponse:
        """POST ``body`` to the deployment; returns once the response headers arrived (the caller reads the body
        and must release the response). Raises :class:`UpstreamFailure` for timeouts and connection failures."""
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        headers = dict(route.headers)
        headers["X-Request-Id"] = request_id
        if traceparent:
            headers["traceparent"] = traceparent
            if tracestate:
                headers["tracestate"] = tracestate
        try:
            return await self._session.post(route.url(path), data=body, headers=headers, timeout=self._timeout(route))
        except Exception as exc:  # classified below; anything unexpected is an invalid response
            raise classify_exception(route, exc) from exc

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


def classify_http_error(route: DeploymentRoute, status: int, body: bytes, headers: Any) -> UpstreamFailure:
    """An upstream HTTP error status: 4xx reaches the client with its status and message, except 401/403 (the
    gateway's own credentials) and 404 (the deployment's base_url or model is wrong: the gateway already checked the
    public model name), which are the deployment's fault: 502, retried on another deployment and counted against
    its health; 5xx becomes 502 too."""
    if status == 404:  # the deployment's model (or base_url) is wrong, not the client's request: any provider
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
    if route.is_anthropic:
        return _anthropic_http_error(route, status, body, headers)
    try:
        payload = orjson.loads(body[:_MAX_ERROR_BODY])
    except orjson.JSONDecodeError:
        payload = None
    text = body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
    message, err_type, param, code = normalise_upstream_error(payload, text)
    if status in (401, 403):
        return UpstreamFailure(
            "http_4xx",
            upstream_error(
                502,
                f"Upstream deployment '{route.name}' rejected the gateway's credentials (HTTP {status}); "
                "check the deployment's api_key.",
                "upstream_auth_error",
            ),
            retryable=True,
        )
    if 400 <= status < 500:
        extra = {}
        retry_after = headers.get("Retry-After")
        if retry_after:
            extra["Retry-After"] = retry_after
        return UpstreamFailure(
            "http_4xx",
            GatewayError(
                status,
                message,
                type=err_type,
                param=param,
                code=None if code is None else str(code),
                headers=extra,
            ),
            retryable=status == 429,
            retry_after=_retry_after(headers) if status == 429 else None,
        )
    return UpstreamFailure(
        "http_5xx",
        upstream_error(
            502,
            f"Upstream deployment '{route.name}' failed with HTTP {status}: {message}",
            "upstream_http_error",
        ),
        retryable=True,
        retry_after=_retry_after(headers),
    )


def _anthropic_http_error(route: DeploymentRoute, status: int, body: bytes, headers: Any) -> UpstreamFailure:
    from gateway.providers.anthropic import anthropic_error

    client_status, payload = anthropic_error(status, body[:_MAX_ERROR_BODY])
    inner = payload["error"]
    extra = {}
    retry_after = _retry_after(headers)
    if status == 429 and headers is not None and headers.get("Retry-After"):
        extra["Retry-After"] = headers["Retry-After"]
    error = GatewayError(
        client_status, inner["message"], type=inner["type"], param=inner["param"], code=inner["code"], headers=extra
    )
    reason = "http_5xx" if status >= 500 else "http_4xx"
    # As for OpenAI-compatible upstreams: 401/403 are the deployment's credentials, not the request.
    retryable = status in (401, 403, 429) or status >= 500
    return UpstreamFailure(reason, error, retryable=retryable, retry_after=retry_after)
