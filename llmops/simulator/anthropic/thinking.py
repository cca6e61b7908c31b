"""Extended thinking on the Anthropic simulator: ``thinking: {"type": "enabled", "budget_tokens": N}``.

Checked as Anthropic checks it (400 ``invalid_request_error``): ``budget_tokens`` at least 1024 and below
``max_tokens``; no ``temperature`` other than 1, no ``top_k``, and no ``tool_choice`` that forces a tool while thinking.
``{"type": "disabled"}`` (and ``adaptive``, which the simulator treats as enabled with the largest budget that fits)
are accepted. The answer then starts with a ``thinking`` block: ``min(budget_tokens, 24)`` lorem-ipsum words seeded by
the conversation, and a ``signature`` derived from them; streamed as ``content_block_start`` (``thinking`` with empty
``thinking`` and ``signature``), ``thinking_delta`` per word, one ``signature_delta``, ``content_block_stop``. Its
words count as output tokens and within ``max_tokens``, as thinking does.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from llmops.simulator.anthropic.errors import invalid
from llmops.simulator.text import generate_tokens

MIN_BUDGET = 1024
THINKING_WORDS = 24
_DOCS = "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


def parse_thinking(body: dict[str, Any], max_tokens: int, tool_choice: dict[str, Any] | None) -> int | None:
    """The thinking budget of a request (None: no thinking); raises :class:`AnthropicError` as Anthropic would."""
    thinking = body.get("thinking")
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "disabled", "adaptive"):
        raise invalid(
            "thinking: Input tag found using 'type' does not match any of the expected tags: 'adaptive', 'disabled', "
            "'enabled'"
        )
    if kind == "disabled":
        return None
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise invalid("thinking.enabled.budget_tokens: Field required")
        if budget < MIN_BUDGET:
            raise invalid(f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_BUDGET}")
        if max_tokens and budget >= max_tokens:
            raise invalid(f"`max_tokens` must be greater than `thinking.budget_tokens`. {_DOCS}")
    else:
        budget = max(max_tokens - 1, 1)
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        raise invalid(f"`temperature` may only be set to 1 when thinking is enabled. {_DOCS}")
    if body.get("top_k") is not None:
        raise invalid(f"`top_k` may not be set when thinking is enabled. {_DOCS}")
    if tool_choice is not None and tool_choice.get("type") in ("any", "tool"):
        raise invalid("Thinking may not be enabled when tool_choice forces tool use.")
    return budget


def thinking_words(seed: int, budget: int) -> list[str]:
    """The thinking block's words."""
    return generate_tokens(seed, min(budget, THINKING_WORDS))


def signature(text: str) -> str:
    """A stable signature of a thinking block's text (what Anthropic sends to verify it when it comes back)."""
    return base64.b64encode(hashlib.blake2b(text.encode("utf-8"), digest_size=64).digest()).decode("ascii")
