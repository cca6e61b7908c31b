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
    ``tool_choice.disable_parallel_tool_use``, ``safety_identifier``, else ``user`` → ``metadata.user_id`` (each is
    the end user's stable id, for abuse detection).
  - ``response_format`` ``json_object`` / ``json_schema`` → a forced *response tool* (below); ``text`` → nothing.
  - ``reasoning_effort`` → ``thinking: {"type": "enabled", "budget_tokens": B}`` (:data:`THINKING_BUDGETS`):

    ==========================  ======================================
    ``reasoning_effort``        ``budget_tokens``
    ==========================  ======================================
    ``none``, ``minimal``       no thinking (Anthropic's default)
    ``low``                     1024 (Anthropic's smallest budget)
    ``medium``                  4096
    ``high``                    16384
    ``xhigh``                   32768
    ==========================  ======================================

    Anthropic's ``max_tokens`` counts the thinking, as OpenAI's ``max_completion_tokens`` counts reasoning tokens: a
    client's limit stays and the budget is cut to fit below it (a limit of 1024 or less is a 400); without one,
    ``max_tokens`` is :data:`DEFAULT_MAX_TOKENS` plus the budget. Thinking comes back as ``reasoning_content``.
    Anthropic refuses with thinking, so the gateway refuses (400 naming the field): ``temperature`` other than 1,
    ``top_p`` below 0.95, ``top_k``, and a forced tool (``tool_choice`` ``required`` or a named function, or a JSON
    ``response_format``). OpenAI's format cannot carry a thinking block's signature back, and Anthropic may refuse a
    tool loop whose last assistant turn lost it (its 400 reaches the client).
  - ``n`` > 1: Anthropic answers one message per request, so the provider says ``one_choice_per_call`` and the
    request path makes ``n`` calls at once and merges them (``gateway/fan_out.py``: choices 0..n-1, usage summed;
    unary only, at most 8; with ``stream`` a 400 naming ``n``).
  - Rejected with a 400 naming the field (no Anthropic equivalent gives the answer the client asked for):
    ``logprobs: true``,
    ``top_logprobs``, a non-empty ``logit_bias``, ``audio`` / audio ``modalities``, ``response_format`` types other
    than ``text``, ``json_object`` and ``json_schema`` and schemas whose root is not an object (a tool's input is
    one), the legacy ``functions`` / ``function_call``, ``web_search_options``, ``input_audio`` and ``file_id``
    content parts, ``function`` messages, non-function tools and ``tool_choice`` values other than the four above
    (``allowed_tools``, custom tools).
  - Dropped (no equivalent, answer unchanged in shape): :data:`DROPPED_FIELDS` (``frequency_penalty``,
    ``presence_penalty``, ``seed``: no such sampling controls; ``metadata``, ``store``: OpenAI's stored completions;
    ``service_tier``: OpenAI's billing classes; ``stream_options``: the gateway's own business; ``prediction``,
    ``prompt_cache_key``, ``prompt_cache_retention``: latency and caching hints (Anthropic caches by
    ``cache_control``); ``verbosity``, ...) and every other field this module does not know. ``simulate`` (the
    simulators' fault-injection hook) is passed through; a real Anthropic API would refuse it.

Structured output (``response_format``), as Anthropic documents it: a tool whose ``input_schema`` is the JSON schema
(``json_object``: ``{"type": "object", "additionalProperties": true}``; a root ``$ref`` into ``$defs``, as Pydantic
writes recursive models, is inlined), named after ``json_schema.name`` (characters outside ``[A-Za-z0-9_-]`` become
``_``, cut at 64: Anthropic's tool name pattern) or ``json_response``, with ``_response`` appended when a client tool
has that name already. ``strict`` is not sent: the schema guides the model but Anthropic does not enforce it here, so
clients validate (the openai SDK's ``parse()`` and LangChain do). Which tools go up, and what wins:

=========================================  ========================  ============================================
client's ``tools`` / ``tool_choice``       Anthropic ``tools``       Anthropic ``tool_choice``
=========================================  ========================  ============================================
no tools (any ``tool_choice``)             the response tool         ``tool`` (the response tool)
tools; ``tool_choice`` absent or ``auto``  client's + response tool  ``any``: a client tool or the answer
tools; ``none``                            client's + response tool  ``tool`` (the response tool): the answer now
tools; ``required``                        client's only             ``any``: the client's forced call wins; the
                                                                     format is for a later turn
tools; a named function                    client's only             ``tool`` (that function): as above
=========================================  ========================  ============================================

The response tool is forced with ``disable_parallel_tool_use``; ``parallel_tool_calls: false`` still applies to
``any``. Back (unary and streamed): the first call of the response tool is the message ``content``, its ``input`` as
JSON text (streamed: its ``input_json_delta`` fragments as ``delta.content``; ``"{}"`` for an empty input), never a
tool call; text blocks are left out (Anthropic writes none before a forced tool; any would break the JSON);
``stop_reason: tool_use`` is ``finish_reason: stop`` unless the model also called the client's tools (then those are
``tool_calls`` and the finish reason ``tool_calls``). ``max_tokens`` cutting the answer is ``length``, as on OpenAI.

Response (Anthropic → OpenAI): ``finish_reason`` from ``stop_reason``:

==================================  ===============================================================
``end_turn``, ``stop_sequence``     ``stop``
``pause_turn``                      ``stop``
``max_tokens``                      ``length``
``model_context_window_exceeded``   ``length``
``tool_use``                        ``tool_calls`` (``stop`` when only the response tool was called)
``refusal``                         ``content_filter``
anything else                       ``stop``
==================================  ===============================================================

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
    MIN_THINKING_BUDGET,
    THINKING_BUDGETS,
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
    "MIN_THINKING_BUDGET",
    "THINKING_BUDGETS",
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
