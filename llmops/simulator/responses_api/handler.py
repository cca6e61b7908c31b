"""The Responses API endpoints: ``POST /v1/responses`` (non-streamed and streamed) and ``GET /v1/responses/{id}``."""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

from aiohttp import web

from llmops.simulator.answers import plan_choices
from llmops.simulator.engine import Engine
from llmops.simulator.faults import Faults
from llmops.simulator.generation import apply_early_faults, generate, json_response
from llmops.simulator.protocol import RequestError, loads
from llmops.simulator.responses_api.output import ResponsesFormat
from llmops.simulator.responses_api.request import ResponsesRequest, parse_responses
from llmops.simulator.responses_api.store import ResponseStore
from llmops.simulator.responses_api.stream import stream_response
from llmops.simulator.settings import SimulatorSettings

_NO_BACKGROUND = (
    "This vLLM engine does not support `store=True` and therefore does not support the background mode. To enable "
    "these features, set the environment variable `VLLM_ENABLE_RESPONSES_API_STORE=1` when launching the vLLM server."
)


class ResponsesApi:
    """The handlers of the Responses API; ``check_model`` resolves the request's model (404 when not served)."""

    def __init__(
        self,
        settings: SimulatorSettings,
        engine: Engine,
        faults: Faults,
        check_model: Callable[[str | None], str],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.faults = faults
        self.check_model = check_model
        self.store = ResponseStore(settings.enable_responses_store)

    def _parse(self, body: dict) -> ResponsesRequest:
        previous = body.get("previous_response_id")
        if previous is not None and not isinstance(previous, str):
            raise RequestError("previous_response_id: Input should be a valid string", param="previous_response_id")
        if body.get("background"):
            if not (self.store.enabled and body.get("store", True)):
                raise RequestError(_NO_BACKGROUND, param="background", err_type="invalid_request_error")
            raise RequestError("background mode is not simulated", param="background", err_type="invalid_request_error")
        history = self.store.history(previous) if previous else []
        return parse_responses(body, history)

    def _fit_context(self, req: ResponsesRequest) -> None:
        """400 when the prompt fills the context, as vLLM says it; ``max_output_tokens`` shrinks to what is left."""
        gen, limit = req.gen, self.settings.max_model_len
        tokens = gen.prompts[0].tokens
        if tokens >= limit:
            raise RequestError(
                f"The engine prompt length {tokens} exceeds the max_model_len {limit}. Please reduce prompt.",
                param="input",
                err_type="invalid_request_error",
            )
        if gen.max_tokens is not None:
            gen.max_tokens = min(gen.max_tokens, limit - tokens)

    async def create(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/responses``."""
        arrival = monotonic()
        req = self._parse(loads(await request.read()))
        gen = req.gen
        model = self.check_model(gen.model)
        self._fit_context(req)
        plan = self.faults.plan(gen.simulate, gen.stream)
        choices = plan_choices(self.settings, gen, plan.response, plan.finish_reason, plan.tool_calls)
        fmt = ResponsesFormat(model, req, self.store)
        early = await apply_early_faults(self.engine, request, plan)
        if early is not None:
            return early
        if plan.delay_s:
            arrival = monotonic()
        if not gen.stream:
            return await generate(self.engine, request, gen, plan, fmt, choices, arrival, True)
        run = self.engine.run(gen.prompts, arrival, plan.ttft_s, plan.itl_s)
        try:
            return await stream_response(self.engine, request, plan, fmt, choices[0], run)
        finally:
            run.close("abort")

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/responses/{response_id}``: a stored response (404 unless stored)."""
        return json_response(self.store.get(request.match_info["response_id"]))
