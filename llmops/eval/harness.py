"""lm-evaluation-harness as the engine (the only module of the product that imports ``lm_eval``, the ``eval``
extra): its OpenAI-compatible API models, pointed at the gateway and marked as evaluation traffic, and its task
loader, given the catalogue's configs.

- Log-likelihood tasks (multiple choice) go to ``GATEWAY/m/MODEL/v1/completions`` (``local-completions``: token-id
  prompts with ``echo`` and ``logprobs``; the tokenizer is the model's own, served by the gateway at ``/m/MODEL/``).
- Generative tasks go to ``GATEWAY/v1/chat/completions`` (``local-chat-completions``, the chat template applied).

Every request carries ``x-llmops-traffic: eval`` (metered and costed as its own kind, never sampled for the monitors)
and, with a gateway key, ``Authorization: Bearer KEY``. Requests pass :class:`llmops.eval.guard.RunGuard` first.
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from typing import Any

# Nothing is ever fetched from a hub: tasks read local files, the tokenizer is the gateway's. The harness's and the
# datasets library's progress bars are off (llmops eval shows its own); tqdm reads TQDM_DISABLE when it is imported.
for _name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from lm_eval.models.openai_completions import LocalChatCompletion, LocalCompletionsAPI  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from llmops.contract import TRAFFIC_HEADER  # noqa: E402
from llmops.eval.guard import GuardedSemaphore, RunGuard  # noqa: E402


class _GatewayModel:
    """What both API models add: the headers, the guard, usage and progress."""

    guard: RunGuard
    gateway_model: str
    gateway_key: str | None

    @cached_property
    def header(self) -> dict[str, str]:
        headers = {TRAFFIC_HEADER: "eval"}
        if self.gateway_key:
            headers["Authorization"] = f"Bearer {self.gateway_key}"
        return headers

    def model_call(self, *args: Any, **kwargs: Any) -> Any:  # one request at a time (--max-concurrency 1)
        self.guard.before_request()
        try:
            return super().model_call(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.guard.request_done()

    async def amodel_call(self, session: Any, sem: Any, *args: Any, **kwargs: Any) -> Any:
        return await super().amodel_call(session, GuardedSemaphore(sem, self.guard), *args, **kwargs)  # type: ignore[misc]

    def parse_logprobs(self, outputs: Any, **kwargs: Any) -> Any:
        answers = super().parse_logprobs(outputs=outputs, **kwargs)  # type: ignore[misc]
        self.guard.answered(self.gateway_model, outputs, len(answers))
        return answers

    def parse_generations(self, outputs: Any, **kwargs: Any) -> Any:
        answers = super().parse_generations(outputs=outputs, **kwargs)  # type: ignore[misc]
        self.guard.answered(self.gateway_model, outputs, len(answers))
        return answers

    def _loglikelihood_tokens(self, requests: list, **kwargs: Any) -> Any:
        if self.guard.progress is not None:
            self.guard.progress.phase(f"{self.gateway_model} · log-likelihoods", len(requests))
        return super()._loglikelihood_tokens(requests, **kwargs)  # type: ignore[misc]

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> Any:
        if self.guard.progress is not None:
            self.guard.progress.phase(f"{self.gateway_model} · generations", len(requests))
        return super().generate_until(requests, disable_tqdm=True)  # type: ignore[misc]


class GatewayCompletions(_GatewayModel, LocalCompletionsAPI):
    """``local-completions`` through ``/m/MODEL/v1/completions`` of the gateway."""


class GatewayChat(_GatewayModel, LocalChatCompletion):
    """``local-chat-completions`` through ``/v1/chat/completions`` of the gateway."""


def make_model(
    kind: str, gateway: str, model: str, guard: RunGuard, key: str | None, concurrency: int, timeout: int
) -> Any:
    """The API model of ``kind`` (``completions`` or ``chat``) for ``model`` behind ``gateway``."""
    common = {
        "model": model,
        "num_concurrent": concurrency,
        "max_retries": 3,
        "timeout": timeout,
        "tokenized_requests": kind == "completions",
    }
    cls: Any
    if kind == "completions":
        cls = GatewayCompletions
        url = f"{gateway.rstrip('/')}/m/{model}/v1/completions"
        extra = {"tokenizer_backend": "remote", "auth_token": key}
    else:
        cls = GatewayChat
        url = f"{gateway.rstrip('/')}/v1/chat/completions"
        extra = {}
    instance = cls.__new__(cls)
    instance.guard = guard
    instance.gateway_model = model
    instance.gateway_key = key
    cls.__init__(instance, base_url=url, **common, **extra)
    return instance


def task_manager() -> TaskManager:
    """A task manager that knows only the configs it is given (indexing the harness's own thousands of tasks costs
    seconds and is not needed)."""
    return TaskManager(include_defaults=False)


def quiet() -> None:
    """The harness's INFO logging off (``llmops eval`` shows its own progress)."""
    for name in ("lm_eval", "lm-eval", "lm_eval.models", "lm_eval.evaluator"):
        logging.getLogger(name).setLevel(logging.WARNING)
