"""OpenAI's Responses API on the vLLM-like simulator: ``POST /v1/responses`` and ``GET /v1/responses/{id}``, as vLLM
serves them.

- :mod:`~llmops.simulator.responses_api.request`: the body (``input`` items, ``instructions``, ``tools``,
  ``tool_choice``, ``text.format``, ``max_output_tokens``, ...) as a generation request;
- :mod:`~llmops.simulator.responses_api.output`: the ``response`` object, its output items and usage;
- :mod:`~llmops.simulator.responses_api.stream`: the typed SSE events of ``stream: true``;
- :mod:`~llmops.simulator.responses_api.store`: ``store`` and ``previous_response_id`` (``--enable-responses-store``);
- :mod:`~llmops.simulator.responses_api.handler`: the endpoints.

Answers, tool calls and structured output follow the chat rules (:mod:`llmops.simulator.answers`,
:mod:`llmops.simulator.tools`); faults, pacing, the engine and its ``vllm:*`` metrics are the chat ones.
"""

from llmops.simulator.responses_api.handler import ResponsesApi

__all__ = ["ResponsesApi"]
