"""vLLM's tokenizer endpoints at the server root, over the toy tokenizer of :mod:`llmops.simulator.tokenizer`.

- ``POST /tokenize``: ``{"model"?, "prompt": TEXT}`` or ``{"model"?, "messages": [...]}`` (plus ``add_special_tokens``,
  ``return_token_strs``, ...) → ``{"count", "max_model_len", "tokens", "token_strs"}`` (``token_strs`` null unless
  asked for). A conversation's tokens are its messages' tokens in order: the same count as a chat request's
  ``prompt_tokens``.
- ``POST /detokenize``: ``{"model"?, "tokens": [ids]}`` → ``{"prompt": TEXT}``.
- ``GET /tokenizer_info``: the tokenizer's configuration (``tokenizer_class``, ``eos_token``, ``chat_template``, ...);
  only with ``--enable-tokenizer-info-endpoint``, as vLLM (404 otherwise).

As in vLLM these are not behind ``--api-key`` (it guards ``/v1/*``), and a ``model`` that is not served is a 404.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from llmops.simulator.generation import json_response
from llmops.simulator.protocol import RequestError, loads, message_text
from llmops.simulator.settings import SimulatorSettings
from llmops.simulator.tokenizer import decode, encode, out_of_vocabulary, tokenizer_info


class Tokenization:
    """The handlers of the tokenizer endpoints; ``check_model`` raises :class:`RequestError` for a model not served."""

    def __init__(self, settings: SimulatorSettings, check_model: Callable[[str | None], str]) -> None:
        self.settings = settings
        self.check_model = check_model

    def _model(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise RequestError("model: Input should be a valid string", param="model")
        self.check_model(model)

    async def tokenize(self, request: web.Request) -> web.StreamResponse:
        """``POST /tokenize``."""
        body = loads(await request.read())
        self._model(body)
        if "messages" in body:
            messages = body["messages"]
            if not isinstance(messages, list) or not all(isinstance(message, dict) for message in messages):
                raise RequestError("messages: Input should be a valid list of messages", param="messages")
            texts = [message_text(message, f"messages.{i}")[0] for i, message in enumerate(messages)]
        elif isinstance(body.get("prompt"), str):
            texts = [body["prompt"]]
        else:
            raise RequestError("prompt: Field required (a string), or give `messages`", param="prompt")
        tokens: list[int] = []
        pieces: list[str] = []
        for text in texts:
            ids, strs = encode(text)
            tokens.extend(ids)
            pieces.extend(strs)
        return json_response(
            {
                "count": len(tokens),
                "max_model_len": self.settings.max_model_len,
                "tokens": tokens,
                "token_strs": pieces if body.get("return_token_strs") else None,
            }
        )

    async def detokenize(self, request: web.Request) -> web.StreamResponse:
        """``POST /detokenize``."""
        body = loads(await request.read())
        self._model(body)
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise RequestError("tokens: Input should be a valid list of integers", param="tokens")
        bad = out_of_vocabulary(tokens)
        if bad is not None:
            raise RequestError(f"Token id {bad} is out of vocabulary", param="tokens")
        return json_response({"prompt": decode(tokens)})

    async def tokenizer_info(self, request: web.Request) -> web.StreamResponse:
        """``GET /tokenizer_info``."""
        return json_response(tokenizer_info(self.settings.max_model_len))
