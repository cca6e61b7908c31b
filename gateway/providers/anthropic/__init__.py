"""OpenAI chat completions ⇄ Anthropic Messages API (``POST {base_url}/messages``, ``anthropic-version: 2023-06-01``).

Clients keep speaking OpenAI's chat format; for ``provider: anthropic`` deployments the gateway sends
:func:`to_anthropic_request`'s body with :func:`request_headers`, and turns the answer back into OpenAI's shapes with
:func:`from_anthropic_response` (unary), :class:`AnthropicStreamTranslator` (SSE) and :func:`anthropic_error`
(HTTP errors). Everything here is pure and works on plain dicts (one ``orjson`` call per streamed chunk).

Request (OpenAI → Anthropic)
  - ``system`` / ``developer`` messages (strings or text parts, anywhere in the list) → top-level ``system``, joined
    with a blank line; a list of text blocks when a part carries ``cache_control`` (kept, for prompt caching).
  - ``user`` / ``assistant`` messages → ``messages``; consecutive messages of one role are merged (Anthropic wants
    alternation); text, ``image_url`` (base64 data URL or http(s) URL) and ``file`` (base64 ``file_data``) parts →
    content blocks; assistant ``tool_calls`` → ``tool_use`` blocks (``arguments`` parsed into ``input``);
    ``tool`` messages → ``tool_result`` blocks of a user message (placed before any text of that message). Empty text
    is left out (Anthropic refuses empty text blocks) and the trailing whitespace of a final assistant message (a
    prefill) is stripped (Anthropic refuses it). Message ``name`` fields are dropped.
  - ``max_completion_tokens``, else ``max_tokens``, else :data:`DEFAULT_MAX_TOKENS` (Anthropic requires one) →
    ``max_tokens``. ``temperature`` (0..1 on Anthropic: above 1 is a 400), ``top_p``, ``top_k``, ``stop`` (string or
    list) → ``stop_sequences``, ``stream``, ``tools`` (function tools), ``tool_choice`` (``auto`` → ``auto``,
    ``required`` → ``any``, ``none`` → ``none``, a named function → ``tool``), ``parallel_tool_calls: false`` →
    ``tool_choice.disable_parallel_tool_use``, ``user`` → ``metadata.user_id``.
  - Rejected with a 400 naming the field (no Anthropic equivalent changes the answer's shape): ``n`` > 1,
    ``logprobs: true``, ``top_logprobs``, a non-empty ``logit_bias``, ``audio`` / audio ``modalities``,
    ``response_format`` other than ``text``, the legacy ``functions`` / ``function_call``, ``web_search_options``,
    ``input_audio`` and ``file_id`` content parts, ``function`` messages, non-function tools.
  - Dropped (no equivalent, answer unchanged in shape): :data:`DROPPED_FIELDS` (``frequency_penalty``,
    ``presence_penalty``, ``seed``, ``metadata``, ``store``, ``service_tier``, ``stream_options``, ``prediction``,
    ``reasoning_effort``, ``verbosity``, ...) and every other field this module does not know. ``simulate`` (the
    simulators' fault-injection hook) is passed through; a real Anthropic API would refuse it.

Response (Anthropic → OpenAI): ``finish_reason`` from ``stop_reason``:

==================================  ==================
``end_turn``, ``stop_sequence``     ``stop``
``pause_turn``                      ``stop``
``max_tokens``                      ``length``
``model_context_window_exceeded``   ``length``
``tool_use``                        ``tool_calls``
``refusal``                         ``content_filter``
anything else                       ``stop``
==================================  ==================

Usage: ``prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``,
``completion_tokens = output_tokens``, ``prompt_tokens_details.cached_tokens = cache_read_input_tokens``. For cost,
cache writes count as ordinary input (Anthropic bills them at 1.25x: the cost is a slight underestimate).

Errors (:func:`anthropic_error`; Anthropic's body is ``{"type": "error", "error": {"type", "message"}}``):

=======================  ==========================  ============  =========================  ==========================
Anthropic status         Anthropic ``error.type``    client gets   OpenAI ``type``            ``code``
=======================  ==========================  ============  =========================  ==========================
400                      invalid_request_error       400           invalid_request_error      null
401, 403                 authentication_error,       502           upstream_error             upstream_auth_error
                         permission_error
404                      not_found_error             404           invalid_request_error      not_found
413                      request_too_large           413           invalid_request_error      request_too_large
429                      rate_limit_error            429           requests                   rate_limit_exceeded
other 4xx                (any)                       same          invalid_request_error      Anthropic's type
529                      overloaded_error            502           upstream_error             upstream_overloaded
500 and other 5xx        api_error                   502           upstream_error             upstream_http_error
=======================  ==========================  ============  =========================  ==========================

4xx messages reach the client unchanged; 5xx and auth messages say the upstream failed. An ``error`` event inside a
stream is mapped the same way from its ``error.type`` (``overloaded_error`` → 529 → 502, ...).
"""

from __future__ import annotations

from gateway.providers.anthropic.errors import ERROR_STATUS, anthropic_error, map_error
from gateway.providers.anthropic.provider import AnthropicEvents, AnthropicProvider
from gateway.providers.anthropic.request import (
    ANTHROPIC_PATH,
    ANTHROPIC_VERSION,
    DEFAULT_MAX_TOKENS,
    DROPPED_FIELDS,
    request_headers,
    to_anthropic_request,
)
from gateway.providers.anthropic.response import (
    FINISH_REASONS,
    finish_reason,
    from_anthropic_response,
    openai_usage,
    usage_from_anthropic,
)
from gateway.providers.anthropic.stream import AnthropicStreamTranslator, parse_sse_event

__all__ = [
    "ANTHROPIC_PATH",
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "DROPPED_FIELDS",
    "ERROR_STATUS",
    "FINISH_REASONS",
    "AnthropicEvents",
    "AnthropicProvider",
    "AnthropicStreamTranslator",
    "anthropic_error",
    "finish_reason",
    "from_anthropic_response",
    "map_error",
    "openai_usage",
    "parse_sse_event",
    "request_headers",
    "to_anthropic_request",
    "usage_from_anthropic",
]
