"""A wire-faithful simulator of Anthropic's Messages API, for the gateway's ``provider: anthropic`` deployments.

``llmops simulate --api anthropic --port 8001 [--echo] [--api-key KEY]``; clients use
``anthropic.Anthropic(base_url="http://127.0.0.1:8001", api_key=KEY)``, the gateway ``base_url:
http://127.0.0.1:8001/v1``.

Endpoints:
  - ``POST /v1/messages``: Anthropic's request validation, response body and SSE stream (``event: NAME`` +
    ``data: JSON`` per event: ``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``
    (``thinking_delta`` / ``signature_delta`` / ``text_delta`` / ``input_json_delta``), ``content_block_stop``,
    ``message_delta``, ``message_stop``; ``error`` for a fault after the 200)
  - ``POST /v1/messages/count_tokens`` (``{"input_tokens": N}``), ``GET /v1/models``, ``GET /health``

Checks, as Anthropic answers them (``{"type": "error", "error": {"type", "message"}, "request_id"}`` plus a
``request-id`` header): ``x-api-key`` (or ``Authorization: Bearer KEY``, as newer SDKs send it; 401
``authentication_error`` when a key is configured and neither matches), the ``anthropic-version`` header (any value;
400 when missing), then 400 ``invalid_request_error`` for a missing ``model`` / ``max_tokens`` / ``messages``,
unknown top-level fields, a first message that is not ``user``, roles that do not alternate, empty text blocks or
contents, trailing whitespace in a final assistant message, ``tool_use`` ids without their ``tool_result`` in the
next message (and the reverse), bad ``tools`` / ``tool_choice``, ``temperature`` or ``top_p`` outside 0..1. With
``--model`` names, another model is a 404 ``not_found_error``.

Answers (tokens are whitespace-separated words, as in :mod:`llmops.simulator.text`):
  - ``simulate.response``, else a scripted tool call, else with ``--echo`` the last user message's text (its tool
    results' text when it has no text), else ``--output-tokens`` lorem-ipsum words seeded by the conversation;
  - tool call: the request has ``tools``, ``tool_choice`` is not ``none``, and the last user text contains
    ``call tool NAME`` (``NAME`` one of the tools), optionally followed by a JSON object: a ``tool_use`` block with
    that input (``{}`` otherwise), ``stop_reason: tool_use``. ``tool_choice`` ``any`` / ``tool`` force a call to
    the first / named tool when no ``call tool`` phrase says otherwise;
  - text is cut at the first of ``stop_sequences`` (``stop_reason: stop_sequence``), then at ``max_tokens`` words
    (``stop_reason: max_tokens``), else ``end_turn``;
  - with ``thinking`` enabled, a ``thinking`` block (lorem-ipsum words and a ``signature``) comes first (see
    :mod:`llmops.simulator.anthropic.thinking` for the checks and the stream).

Usage: ``input_tokens`` are the words of ``system``, text, tool results and tool inputs (earlier turns' thinking is
not counted). Prompt caching: when a ``system`` or message content block carries ``cache_control``, the prompt up to
the last such block is a cached prefix: ``cache_creation_input_tokens`` the first time this process sees it,
``cache_read_input_tokens`` after (both left out of ``input_tokens``; there is no minimum length). Without any
``cache_control``, a ``system`` prompt seen before is reported as read.

Faults, per request, with a body field ``simulate`` (which Anthropic itself would refuse):

=====================================================================  ============================================
``{"fault": "error", "status": 529, "message": "..."}``                that status with its Anthropic error type
                                                                       (529 ``overloaded_error``, 429
                                                                       ``rate_limit_error`` + ``retry-after``, 500
                                                                       ``api_error``, ...; or ``error_type``)
``{"fault": "midstream_error", "after_tokens": 2}``                    a stream sends 2 text deltas, then
                                                                       ``event: error`` (``overloaded_error``
                                                                       unless ``error_type``) and ends; unary:
                                                                       that error as an HTTP status
``{"fault": "slow", "delay_ms": 200}``                                 everything 200 ms later
``{"response": "fixed text"}``                                         this answer text
=====================================================================  ============================================
"""

from llmops.simulator.anthropic.answers import Answer, plan_answer
from llmops.simulator.anthropic.errors import ERROR_STATUS, ERROR_TYPES, AnthropicError, error_object
from llmops.simulator.anthropic.request import MessagesRequest, parse_messages_request
from llmops.simulator.anthropic.server import (
    ANTHROPIC_SIMULATOR_KEY,
    AnthropicSimulator,
    BackgroundAnthropicSimulator,
    create_anthropic_app,
    serve_anthropic,
)
from llmops.simulator.settings import AnthropicSimulatorSettings

__all__ = [
    "ANTHROPIC_SIMULATOR_KEY",
    "ERROR_STATUS",
    "ERROR_TYPES",
    "Answer",
    "AnthropicError",
    "AnthropicSimulator",
    "AnthropicSimulatorSettings",
    "BackgroundAnthropicSimulator",
    "MessagesRequest",
    "create_anthropic_app",
    "error_object",
    "parse_messages_request",
    "plan_answer",
    "serve_anthropic",
]
