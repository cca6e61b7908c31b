"""The simulator's HTTP server (aiohttp): vLLM's OpenAI endpoints, ``/metrics``, ``/health`` and fault control.

Endpoints:
  - ``POST /v1/chat/completions``, ``POST /v1/completions``: vLLM's bodies and SSE streams (see
    :mod:`llmops.simulator.generation` for timing, :mod:`llmops.simulator.answers` for what is answered,
    :mod:`llmops.simulator.tools` for tool calls and structured output, :mod:`llmops.simulator.scoring` for the
    prompt logprobs of ``echo``)
  - ``POST /v1/responses``, ``GET /v1/responses/{id}``: OpenAI's Responses API as vLLM serves it
    (:mod:`llmops.simulator.responses_api`)
  - ``POST /tokenize``, ``POST /detokenize``, ``GET /tokenizer_info`` (with ``--enable-tokenizer-info-endpoint``):
    vLLM's tokenizer endpoints over a toy tokenizer (:mod:`llmops.simulator.tokenization`)
  - ``POST /v1/embeddings``: deterministic unit vectors (``encoding_format`` ``float`` or ``base64``)
  - ``GET /v1/models``, ``GET /health`` (200, empty body), ``GET /version``, ``GET /metrics``
  - ``GET /admin/faults`` (the current fault settings), ``POST /admin/faults`` (change any of ``error_rate``,
    ``slow_rate``, ``slow_ms``, ``midstream_error_rate``, ``ttft_ms``, ``tokens_per_second``),
    ``DELETE /admin/faults`` (back to the settings of the start)

With ``--api-key`` the ``/v1/*`` endpoints want ``Authorization: Bearer KEY`` (401 ``{"error": "Unauthorized"}``
otherwise, as vLLM); the others stay open. A request body may carry a ``simulate`` object that decides its fate
(see :mod:`llmops.simulator.faults`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from time import monotonic

from aiohttp import web

from llmops.simulator.answers import check_context, plan_choices
from llmops.simulator.engine import Engine
from llmops.simulator.errors import SimulatorSettingsError
from llmops.simulator.faults import Faults
from llmops.simulator.generation import apply_early_faults, error_response, generate, json_response
from llmops.simulator.protocol import (
    GenerationRequest,
    Prompt,
    RequestError,
    loads,
    parse_chat,
    parse_completion,
    parse_embedding,
)
from llmops.simulator.responses import ChatFormat, CompletionFormat
from llmops.simulator.responses_api import ResponsesApi
from llmops.simulator.settings import SimulatorSettings
from llmops.simulator.text import embed, text_digest
from llmops.simulator.tokenization import Tokenization
from llmops.simulator.tools import chat_tooling

logger = logging.getLogger("llmops.simulator")

MAX_BODY_BYTES = 64 * 1024 * 1024
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the classic text format every Prometheus reads
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Simulator:
    """The state and handlers of one simulator app."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.engine = Engine(settings)
        self.faults = Faults(settings.fault_config(), seed=settings.seed)
        self.created = int(time.time())
        self._auth = f"Bearer {settings.api_key}" if settings.api_key else None
        self.responses = ResponsesApi(settings, self.engine, self.faults, self._model)
        self.tokenization = Tokenization(settings, self._model)

    # -- helpers -----------------------------------------------------------------------------------------------

    def _model(self, requested: str | None) -> str:
        if requested is None:
            return self.settings.models[0]
        if requested in self.settings.models:
            return requested
        raise RequestError(f"The model `{requested}` does not exist.", param="model", status=404)

    @staticmethod
    def _request_id(request: web.Request) -> str:
        return request.headers.get("X-Request-Id") or uuid.uuid4().hex

    def guard(self, handler: Handler, check_key: bool = True) -> Handler:
        """``handler`` with :class:`RequestError` turned into an error response (and the API key checked)."""
        auth = self._auth if check_key else None

        async def guarded(request: web.Request) -> web.StreamResponse:
            if auth is not None and request.headers.get("Authorization") != auth:
                return json_response({"error": "Unauthorized"}, status=401)
            try:
                return await handler(request)
            except RequestError as error:
                return error_response(error.message, error.status, error.param, error.err_type)

        return guarded

    # -- generation --------------------------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``."""
        arrival = monotonic()
        body = loads(await request.read())
        gen = parse_chat(body)
        gen.tooling = chat_tooling(body)
        model = self._model(gen.model)
        fmt = ChatFormat(f"chatcmpl-{self._request_id(request)}", int(time.time()), model, gen)
        return await self._generate(request, gen, fmt, arrival, "messages")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/completions``."""
        arrival = monotonic()
        gen = parse_completion(loads(await request.read()))
        model = self._model(gen.model)
        settings = self.settings
        request_id = f"cmpl-{self._request_id(request)}"
        fmt = CompletionFormat(request_id, int(time.time()), model, gen, settings.script, settings.skill_model)
        return await self._generate(request, gen, fmt, arrival, "prompt")

    async def _generate(
        self,
        request: web.Request,
        gen: GenerationRequest,
        fmt: ChatFormat | CompletionFormat,
        arrival: float,
        prompt_param: str,
    ) -> web.StreamResponse:
        check_context(self.settings, gen, prompt_param)
        plan = self.faults.plan(gen.simulate, gen.stream)
        choices = plan_choices(self.settings, gen, plan.response, plan.finish_reason, plan.tool_calls)
        early = await apply_early_faults(self.engine, request, plan)
        if early is not None:
            return early
        if plan.delay_s:
            arrival = monotonic()  # the delay of a slow request happens before the engine sees it
        return await generate(
            self.engine, request, gen, plan, fmt, choices, arrival, self.settings.enable_prompt_tokens_details
        )

    # -- embeddings --------------------------------------------------------------------------------------------

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/embeddings``."""
        arrival = monotonic()
        emb = parse_embedding(loads(await request.read()))
        model = self._model(emb.model)
        settings = self.settings
        dimensions = emb.dimensions or settings.embedding_dim
        if dimensions > settings.embedding_dim:
            raise RequestError(
                f"dimensions must be at most {settings.embedding_dim} for model `{model}`", param="dimensions"
            )
        for _, tokens in emb.inputs:
            if tokens >= settings.max_model_len:
                raise RequestError(
                    f"This model's maximum context length is {settings.max_model_len} tokens. However, you "
                    f"requested {tokens} tokens in the input for embedding generation. Please reduce the length "
                    "of the input.",
                    param="input",
                )
        plan = self.faults.plan(emb.simulate, False)
        early = await apply_early_faults(self.engine, request, plan)
        if early is not None:
            return early
        if plan.delay_s:
            arrival = monotonic()
        prompts = [Prompt(text, tokens, [text_digest("embed", text)], [tokens]) for text, tokens in emb.inputs]
        run = self.engine.run(prompts, arrival, plan.ttft_s, 0.0)
        try:
            await run.admit(prefix_cache=False)
            await run.wait(0)
            for seq in range(len(prompts)):
                run.finish(seq, "stop")
        finally:
            run.close("abort")
        data = []
        for index, (text, _) in enumerate(emb.inputs):
            vector = embed(text, settings.embedding_dim, settings.seed)
            if dimensions < len(vector):
                vector = vector[:dimensions]
                norm = sum(value * value for value in vector) ** 0.5 or 1.0
                vector = [value / norm for value in vector]
            value: list[float] | str = vector
            if emb.encoding_format == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            data.append({"index": index, "object": "embedding", "embedding": value})
        prompt_tokens = sum(tokens for _, tokens in emb.inputs)
        return json_response(
            {
                "id": f"embd-{self._request_id(request)}",
                "object": "list",
                "created": int(time.time()),
                "model": model,
                "data": data,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "total_tokens": prompt_tokens,
                    "completion_tokens": 0,
                    "prompt_tokens_details": None,
                },
            }
        )

    # -- the rest ----------------------------------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/models``, vLLM's list shape."""
        root = self.settings.models[0]
        cards = [
            {
                "id": name,
                "object": "model",
                "created": self.created,
                "owned_by": "vllm",
                "root": root,
                "parent": None,
                "max_model_len": self.settings.max_model_len,
                "permission": [
                    {
                        "id": f"modelperm-{uuid.uuid4().hex}",
                        "object": "model_permission",
                        "created": self.created,
                        "allow_create_engine": False,
                        "allow_sampling": True,
                        "allow_logprobs": True,
                        "allow_search_indices": False,
                        "allow_view": True,
                        "allow_fine_tuning": False,
                        "organization": "*",
                        "group": None,
                        "is_blocking": False,
                    }
                ],
            }
            for name in self.settings.models
        ]
        return json_response({"object": "list", "data": cards})

    async def health(self, request: web.Request) -> web.StreamResponse:
        """``GET /health``: 200 with an empty body."""
        return web.Response(status=200)

    async def version(self, request: web.Request) -> web.StreamResponse:
        """``GET /version``."""
        return json_response({"version": "llmops-simulator"})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        """``GET /metrics``: the ``vllm:*`` series."""
        return web.Response(body=self.engine.metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def get_faults(self, request: web.Request) -> web.StreamResponse:
        """``GET /admin/faults``."""
        return json_response(self.faults.config.model_dump())

    async def post_faults(self, request: web.Request) -> web.StreamResponse:
        """``POST /admin/faults``: change fault injection and pacing at run time."""
        config = self.faults.update(loads(await request.read()))
        logger.info("faults changed: %s", config.model_dump())
        return json_response(config.model_dump())

    async def delete_faults(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /admin/faults``: back to the settings of the start."""
        return json_response(self.faults.reset().model_dump())


SIMULATOR_KEY = web.AppKey("simulator", Simulator)


def create_app(settings: SimulatorSettings) -> web.Application:
    """The simulator's aiohttp application (its state under ``app[SIMULATOR_KEY]``)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    sim = Simulator(settings)
    app[SIMULATOR_KEY] = sim
    guard = sim.guard
    app.router.add_post("/v1/chat/completions", guard(sim.chat))
    app.router.add_post("/v1/completions", guard(sim.completions))
    app.router.add_post("/v1/embeddings", guard(sim.embeddings))
    app.router.add_get("/v1/models", guard(sim.models))
    app.router.add_post("/v1/responses", guard(sim.responses.create))
    app.router.add_get("/v1/responses/{response_id}", guard(sim.responses.retrieve))
    app.router.add_post("/tokenize", guard(sim.tokenization.tokenize, check_key=False))
    app.router.add_post("/detokenize", guard(sim.tokenization.detokenize, check_key=False))
    if settings.enable_tokenizer_info_endpoint:
        app.router.add_get("/tokenizer_info", sim.tokenization.tokenizer_info)
    app.router.add_get("/health", sim.health)
    app.router.add_get("/version", sim.version)
    app.router.add_get("/metrics", sim.metrics)
    app.router.add_get("/admin/faults", sim.get_faults)
    app.router.add_post("/admin/faults", guard(sim.post_faults, check_key=False))
    app.router.add_delete("/admin/faults", sim.delete_faults)
    return app


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop when uvloop is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def configure_logging(level: str) -> None:
    """Log lines to stderr at ``level``."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(settings: SimulatorSettings) -> None:
    """Serve until interrupted (SIGINT or SIGTERM); raises :class:`SimulatorSettingsError` when the port cannot be
    bound."""
    configure_logging(settings.log_level)
    app = create_app(settings)

    def announce(*_: object, **__: object) -> None:  # run_app's "print", called once the port listens
        logger.info(
            "llmops simulate: serving %s on http://%s:%s (ttft %s ms, %s tokens/s, pid %s)",
            ", ".join(settings.models),
            settings.host,
            settings.port,
            settings.ttft_ms,
            settings.tokens_per_second,
            os.getpid(),
        )

    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            loop=new_event_loop(),
            handler_cancellation=True,
            access_log=logging.getLogger("aiohttp.access") if settings.log_level == "debug" else None,
            print=announce,
            shutdown_timeout=2.0,
        )
    except OSError as error:
        raise SimulatorSettingsError(
            f"--host/--port: cannot listen on {settings.host}:{settings.port}: {error}"
        ) from None
