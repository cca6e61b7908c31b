"""The Anthropic simulator's HTTP server (aiohttp): its handlers, application, in-process runner and command."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import orjson
from aiohttp import web

from llmops.simulator.anthropic.answers import message_body, new_id, plan_answer
from llmops.simulator.anthropic.errors import AnthropicError, error_object, invalid
from llmops.simulator.anthropic.events import stream_answer
from llmops.simulator.anthropic.faults import apply_simulate
from llmops.simulator.anthropic.request import MessagesRequest, parse_messages_request
from llmops.simulator.background import BackgroundApp
from llmops.simulator.errors import SimulatorSettingsError
from llmops.simulator.settings import AnthropicSimulatorSettings, build
from llmops.simulator.text import text_digest

logger = logging.getLogger("llmops.simulator.anthropic")

MAX_BODY_BYTES = 32 * 1024 * 1024
_SEEN_SYSTEMS = 4096


class AnthropicSimulator:
    """The state and handlers of one Anthropic simulator app."""

    def __init__(self, settings: AnthropicSimulatorSettings) -> None:
        self.settings = settings
        self._seen_systems: OrderedDict[bytes, None] = OrderedDict()

    # -- helpers -----------------------------------------------------------------------------------------------

    def _error(self, error: AnthropicError, request_id: str) -> web.Response:
        headers = {"request-id": request_id}
        if error.status == 429:
            headers["retry-after"] = "1"
        return web.Response(
            body=orjson.dumps(error_object(error.type, error.message, request_id)),
            status=error.status,
            headers=headers,
            content_type="application/json",
        )

    def _check_headers(self, request: web.Request) -> None:
        key = self.settings.api_key
        headers = request.headers
        # newer SDKs send the key as a bearer token
        if key is not None and headers.get("x-api-key") != key and headers.get("Authorization") != f"Bearer {key}":
            raise AnthropicError(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            raise invalid("anthropic-version: header is required")

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as error:
            raise invalid(f"There was an error parsing the body: {error}") from None
        if not isinstance(body, dict):
            raise invalid("Input should be a valid dictionary")
        return body

    def _cache(self, req: MessagesRequest) -> tuple[int, int]:
        """(cache read, cache creation) tokens: those up to the last ``cache_control`` breakpoint when there is one,
        else those of a system prompt seen before; remembers the prefix."""
        if req.cache_prefix is not None:
            tokens, key = req.cache_prefix
            return (tokens, 0) if self._seen(key) else (0, tokens)
        if not req.system_tokens:
            return 0, 0
        if self._seen(text_digest("system", req.system_text)):
            return req.system_tokens, 0
        return 0, 0

    def _seen(self, key: bytes) -> bool:
        """Whether ``key`` was seen before; remembers it (the least recently seen are forgotten)."""
        seen = self._seen_systems
        if key in seen:
            seen.move_to_end(key)
            return True
        seen[key] = None
        if len(seen) > _SEEN_SYSTEMS:
            seen.popitem(last=False)
        return False

    def _check_model(self, model: str) -> None:
        if self.settings.models and model not in self.settings.models:
            raise AnthropicError(404, f"model: {model}")

    # -- endpoints ---------------------------------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/messages``."""
        request_id = new_id("req_")
        try:
            self._check_headers(request)
            req = parse_messages_request(await self._body(request))
            self._check_model(req.model)
            fault = await apply_simulate(req.simulate)
            answer = plan_answer(req, self.settings)
            cache_read, cache_creation = self._cache(req)
            usage = {
                "input_tokens": req.input_tokens - cache_read - cache_creation,
                "cache_creation_input_tokens": cache_creation,
                "cache_read_input_tokens": cache_read,
                "output_tokens": answer.output_tokens,
                "service_tier": "standard",
            }
            if req.stream:
                return await stream_answer(request, request_id, req, answer, usage, fault, self.settings)
            if fault is not None:  # a mid-stream fault of a unary request: the error as its status
                raise fault.error
            await self._pace(len(answer.tokens) or 1)
            return web.json_response(message_body(req, answer, usage), headers={"request-id": request_id}, dumps=_dumps)
        except AnthropicError as error:
            return self._error(error, request_id)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/messages/count_tokens``."""
        request_id = new_id("req_")
        try:
            self._check_headers(request)
            req = parse_messages_request(await self._body(request), need_max_tokens=False)
            self._check_model(req.model)
        except AnthropicError as error:
            return self._error(error, request_id)
        return web.json_response({"input_tokens": req.input_tokens}, headers={"request-id": request_id})

    async def models(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/models``, Anthropic's list shape."""
        names = self.settings.models or ("claude-sim",)
        data = [
            {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"} for name in names
        ]
        return web.json_response({"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]})

    async def health(self, request: web.Request) -> web.StreamResponse:
        """``GET /health``: 200, empty body."""
        return web.Response(status=200)

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        """Anything else: Anthropic's 404 body."""
        return self._error(AnthropicError(404, "Not Found"), new_id("req_"))

    async def _pace(self, tokens: int) -> None:
        settings = self.settings
        delay = settings.ttft_ms / 1000.0
        if settings.tokens_per_second > 0:
            delay += max(tokens - 1, 0) / settings.tokens_per_second
        if delay > 0:
            await asyncio.sleep(delay)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


ANTHROPIC_SIMULATOR_KEY = web.AppKey("anthropic_simulator", AnthropicSimulator)


def with_options(settings: AnthropicSimulatorSettings, options: dict[str, Any]) -> AnthropicSimulatorSettings:
    """``settings`` with some fields replaced, validated; raises :class:`SimulatorSettingsError` naming the flag."""
    if not options:
        return settings
    return build(AnthropicSimulatorSettings, **{**settings.model_dump(), **options})


def create_anthropic_app(settings: AnthropicSimulatorSettings | None = None, **options: Any) -> web.Application:
    """The simulator's aiohttp application; ``options`` override fields of ``settings`` (e.g. ``echo=True``)."""
    settings = with_options(settings or AnthropicSimulatorSettings(), options)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    sim = AnthropicSimulator(settings)
    app[ANTHROPIC_SIMULATOR_KEY] = sim
    app.router.add_post("/v1/messages", sim.messages)
    app.router.add_post("/v1/messages/count_tokens", sim.count_tokens)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_get("/health", sim.health)
    app.router.add_route("*", "/{tail:.*}", sim.not_found)
    return app


#: The in-process simulator's defaults, for speed: a free port, no pacing.
BACKGROUND_DEFAULTS = AnthropicSimulatorSettings(port=0, ttft_ms=0, tokens_per_second=0)


class BackgroundAnthropicSimulator(BackgroundApp):
    """The simulator served from a daemon thread (tests, demos). Without ``settings`` it starts from
    :data:`BACKGROUND_DEFAULTS` (a free port, no pacing); ``options`` override fields.

    with BackgroundAnthropicSimulator(echo=True) as sim:
        client = anthropic.Anthropic(base_url=sim.url, api_key="unused")
    """

    thread_name = "anthropic-simulator"

    def __init__(self, settings: AnthropicSimulatorSettings | None = None, **options: Any) -> None:
        self.settings = with_options(settings or BACKGROUND_DEFAULTS, options)
        super().__init__(create_anthropic_app(self.settings), self.settings.host, self.settings.port)


def serve_anthropic(settings: AnthropicSimulatorSettings) -> None:
    """Serve until interrupted (``llmops simulate --api anthropic``); raises :class:`SimulatorSettingsError` when
    the port cannot be bound."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def announce(*_: object, **__: object) -> None:
        logger.info(
            "llmops simulate --api anthropic: serving %s on http://%s:%s/v1/messages%s",
            ", ".join(settings.models) or "any model",
            settings.host,
            settings.port,
            " (echo)" if settings.echo else "",
        )

    try:
        web.run_app(
            create_anthropic_app(settings),
            host=settings.host,
            port=settings.port,
            handler_cancellation=True,
            access_log=None,
            print=announce,
            shutdown_timeout=2.0,
        )
    except OSError as error:
        raise SimulatorSettingsError(
            f"--host/--port: cannot listen on {settings.host}:{settings.port}: {error}"
        ) from None
