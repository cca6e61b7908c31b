"""vLLM's tokenizer endpoints through the gateway, for evaluation harnesses: ``GET /tokenizer_info``,
``POST /tokenize`` and ``POST /detokenize`` relayed to a deployment of the model that serves them (vLLM serves them at
its server root, beside ``/v1``).

lm-evaluation-harness asks them at the root of its ``base_url`` without naming a model, so the gateway also serves
every route under a model's own prefix: with ``base_url=http://gateway:8080/m/MODEL/v1/completions`` the harness finds
``/m/MODEL/tokenizer_info`` and ``/m/MODEL/tokenize``, and its completions reach ``/m/MODEL/v1/completions``, the same
as ``/v1/completions``. At the plain root, the request's ``model`` field names the model (or the only model there
is). Anthropic's ``POST /v1/messages/count_tokens`` is answered here too: relayed to an ``anthropic`` deployment, or
counted by a vLLM-like deployment's ``/tokenize``. Tokenizing generates nothing: it is neither metered nor costed.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError, UpstreamFailure, bad_request, error_response, model_not_found
from gateway.inbound import messages
from gateway.request_fields import credentials, read_body
from gateway.request_id import request_id_of
from gateway.routing import DeploymentRoute, ModelRoute
from gateway.upstream import UpstreamClient

PATHS = ("/tokenizer_info", "/tokenize", "/detokenize")
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
MODEL_PREFIX = "/m/"


def split_model_path(path: str, suffixes: tuple[str, ...]) -> tuple[str, str] | None:
    """``/m/MODEL/SUFFIX`` → ``(MODEL, SUFFIX)`` for one of ``suffixes`` (a model name may contain ``/``)."""
    if not path.startswith(MODEL_PREFIX):
        return None
    rest = path[len(MODEL_PREFIX) :]
    for suffix in suffixes:
        if rest.endswith(suffix) and len(rest) > len(suffix):
            return rest[: -len(suffix)], suffix
    return None


def _server_root(route: DeploymentRoute) -> str:
    base = route.config.base_url
    return base[: -len("/v1")] if base.endswith("/v1") else base


class TokenizerRelay:
    """Answers the tokenizer endpoints from a deployment of the named model."""

    def __init__(self, routes: dict[str, ModelRoute], client: UpstreamClient, access: Any, max_body_bytes: int) -> None:
        self.routes = routes
        self.client = client
        self.access = access
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request, path: str, model_name: str | None) -> Response:
        """Relay one tokenizer request (``path``: one of :data:`PATHS`); errors in OpenAI's shape."""
        try:
            if self.access is not None:
                self.access.authenticate(credentials(request))
            payload: dict[str, Any] | None = None
            if request.method == "POST":
                raw = await read_body(request, self.max_body_bytes)
                parsed = orjson.loads(raw) if raw else {}
                if not isinstance(parsed, dict):
                    raise bad_request("The request body must be a JSON object.")
                payload = parsed
            model = self._model(model_name or (payload or {}).get("model"))
            route = next((d for d in model.deployments if d.provider == "openai_compatible"), None)
            if route is None:
                raise bad_request(
                    f"Model '{model.name}' has no deployment that can tokenize (Anthropic serves no tokenizer).",
                    param="model",
                )
            body = None
            if payload is not None:
                payload["model"] = route.config.model
                body = orjson.dumps(payload)
            status, answer = await self.client.fetch(
                route, request.method, _server_root(route) + path, body, request_id_of(request.scope)
            )
            if status == 404:
                raise GatewayError(
                    404,
                    f"Deployment '{route.name}' of model '{model.name}' serves no {path} (vLLM does).",
                    code="not_found",
                )
            return Response(answer, status_code=status, media_type="application/json")
        except orjson.JSONDecodeError:
            return error_response(bad_request("We could not parse the JSON body of your request."))
        except GatewayError as error:
            return error_response(error)
        except UpstreamFailure as failure:
            return error_response(failure.error)

    async def count_tokens(self, request: Request) -> Response:
        """``POST /v1/messages/count_tokens`` (Anthropic's API, errors in its shape): relayed to an ``anthropic``
        deployment, else counted by a vLLM-like deployment's ``/tokenize`` over the request as chat messages."""
        try:
            if self.access is not None:
                self.access.authenticate(credentials(request))
            raw = await read_body(request, self.max_body_bytes)
            payload = orjson.loads(raw) if raw else None
            if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
                raise bad_request("messages: Field required (a list of messages).", param="messages")
            model = self._model(payload.get("model"))
            request_id = request_id_of(request.scope)
            route = model.deployments[0] if model.deployments else None
            if route is not None and route.provider == "anthropic":
                payload["model"] = route.config.model
                status, answer = await self.client.fetch(
                    route, "POST", route.url("/messages/count_tokens"), orjson.dumps(payload), request_id
                )
                return Response(answer, status_code=status, media_type="application/json")
            route = next((d for d in model.deployments if d.provider == "openai_compatible"), None)
            if route is None:
                raise bad_request(f"Model '{model.name}' has no deployment that can count tokens.", param="model")
            chat = messages.to_chat_request({**payload, "max_tokens": 1})
            body = orjson.dumps({"model": route.config.model, "messages": chat["messages"]})
            status, answer = await self.client.fetch(route, "POST", _server_root(route) + "/tokenize", body, request_id)
            counted = orjson.loads(answer) if status == 200 else None
            if not isinstance(counted, dict) or not isinstance(counted.get("count"), int):
                raise GatewayError(
                    400 if status < 500 else 502,
                    f"Deployment '{route.name}' of model '{model.name}' cannot count tokens (its /tokenize answered "
                    f"HTTP {status}; vLLM serves it).",
                    type="invalid_request_error" if status < 500 else "upstream_error",
                )
            return Response(orjson.dumps({"input_tokens": counted["count"]}), media_type="application/json")
        except orjson.JSONDecodeError:
            return _anthropic_error(bad_request("We could not parse the JSON body of your request."))
        except GatewayError as error:
            return _anthropic_error(error)
        except UpstreamFailure as failure:
            return _anthropic_error(failure.error)

    def _model(self, name: Any) -> ModelRoute:
        if name is None and len(self.routes) == 1:
            return next(iter(self.routes.values()))
        if not isinstance(name, str) or not name:
            raise bad_request(
                "Name the model: send 'model' in the body, or use /m/MODEL/tokenize (and /m/MODEL/v1/... as the "
                "evaluation harness's base_url).",
                param="model",
            )
        model = self.routes.get(name)
        if model is None:
            raise model_not_found(name)
        return model


def _anthropic_error(error: GatewayError) -> Response:
    return error_response(error, body=messages.error_payload(error))
