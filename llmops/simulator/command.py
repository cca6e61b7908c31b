"""``llmops simulate``: the flags (generated from :class:`~llmops.simulator.settings.SimulatorSettings`, plus
``--api``) and the command that serves the chosen API until interrupted."""

from __future__ import annotations

import argparse

from llmops.simulator.flags import add_flags, make_groups
from llmops.simulator.settings import API_SETTINGS, SimulatorSettings, anthropic_settings_from_args, settings_from_args

#: The argument groups of ``llmops simulate --help``, in order (key: title).
GROUPS = {
    "server": "server",
    "generation": "generation",
    "engine": "engine (--api openai only)",
    "faults": "fault injection (--api openai only; also at run time: POST /admin/faults)",
}
#: Help notes of the generation flags that only the OpenAI-compatible simulator has.
NOTES = {"script": " (--api openai only)", "embedding_dim": " (--api openai only)"}

DESCRIPTION = (
    "A vLLM-like OpenAI server at the wire level: chat (tools, structured output), completions (prompt logprobs), "
    "the Responses API, embeddings, /tokenize, SSE streaming, usage, /health and /metrics with vllm:* series, and "
    "fault injection;\nor, with --api anthropic, Anthropic's Messages API (tools, thinking, prompt caching)."
)
EPILOG = """\
--api openai (default): vLLM's OpenAI-compatible server (base_url http://HOST:PORT/v1): /v1/chat/completions,
  /v1/completions, /v1/responses, /v1/embeddings, /v1/models; /tokenize, /detokenize, /tokenizer_info (with
  --enable-tokenizer-info-endpoint) at the root.
--api anthropic: Anthropic's Messages API: POST /v1/messages (SSE events as Anthropic sends them, tool calls on
  "call tool NAME {json}", thinking blocks, cache_control), /v1/messages/count_tokens, /v1/models, /health; per
  request simulate.fault error, midstream_error or slow. Clients: anthropic.Anthropic(base_url="http://HOST:PORT").
tokens: a token is a whitespace-separated word (with the whitespace before it); prompt tokens are the words of all
  message contents. /tokenize gives each word a stable id; prompts may be token ids.
answers: the request's simulate.response, else the first --script match, else the last user message (--echo),
  else lorem ipsum; max_tokens sets the length (finish "length"), otherwise --output-tokens words (finish "stop").
tools: called on simulate.tool_calls, a --script entry's tool_calls, "call tool NAME {json}", or tools the user's
  last message names; always with tool_choice required or a named function, never with none.
  response_format / text.format json_schema answers a valid instance of the schema.
logprobs: /v1/completions with echo and logprobs scores the prompt's tokens; a --script entry's logprob sets
  the logprob of the prompt tokens it matches (make one multiple-choice answer the likely one).
per request: a body field "simulate", e.g. {"fault": "error", "status": 503}, {"fault": "slow", "delay_ms": 500},
  {"fault": "midstream_error", "after_tokens": 3}, {"fault": "disconnect"}, {"fault": "none"},
  {"response": "fixed text"}, {"tool_calls": [{"name": "f", "arguments": {}}]}, {"ttft_ms": 200}.
at run time: GET, POST (JSON with any of error_rate, slow_rate, slow_ms, midstream_error_rate, ttft_ms,
  tokens_per_second) and DELETE (reset) /admin/faults.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``llmops simulate`` to ``parser``: ``--api``, and one per field of
    :class:`SimulatorSettings`, with a help epilog on the APIs, tokens, answers and faults."""
    parser.description = parser.description or DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    groups = make_groups(parser, GROUPS)
    groups["server"].add_argument(
        "--api",
        choices=list(API_SETTINGS),
        default="openai",
        help="the API to simulate: vLLM's OpenAI-compatible one, or Anthropic's Messages API (default %(default)s)",
    )
    add_flags(groups, SimulatorSettings, NOTES)


def run(args: argparse.Namespace) -> int:
    """Validate the flags, then serve the API of ``--api`` until interrupted; raises
    :class:`~llmops.simulator.errors.SimulatorSettingsError` naming the flag to fix."""
    if getattr(args, "api", "openai") == "anthropic":
        from llmops.simulator.anthropic import serve_anthropic

        serve_anthropic(anthropic_settings_from_args(args))
    else:
        from llmops.simulator.server import serve

        serve(settings_from_args(args))
    return 0
