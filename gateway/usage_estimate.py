"""Token usage estimated for a stream that ended without the upstream's usage chunk.

A client that goes away mid-stream, a stream cut by a timeout or a dropped connection, or an OpenAI-compatible host
that ignores ``stream_options.include_usage``: the prompt was processed and tokens were generated, so the request
is not free. Counting it as zero would bill aborted streams at 0 (and let a client dodge its budget by hanging up
before the last chunk). The estimate: about four characters per prompt token of the request's text, plus a few
tokens of framing per message; one output token per content chunk relayed (vLLM and OpenAI send about one token per
chunk). Estimated usage is counted in ``llm_gateway_usage_estimated_total`` and marked in the sample.

The character rule is biased, and not the same way everywhere: it overshoots short prompts (the framing tokens are
a guess; a host that counts fewer, as the simulator does, is overcharged: "one two three" is 3 tokens there, 8 by
the rule) and undershoots text that takes more tokens per character (Korean, Chinese, code). So the prompt estimate
is calibrated per deployment (:class:`PromptCalibration`): every stream that ends with the upstream's usage tells
how many prompt tokens the rule's estimate really was, and cut streams get the rule's estimate times the running
ratio (clamped to 0.25-4). Until a deployment has ended 10 streams with its usage, the rule alone applies.
"""

from __future__ import annotations

from typing import Any

from gateway.pricing import Usage

_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4  # role and separators, as chat templates add them


def _text_chars(value: Any) -> int:
    """Characters of text in a message ``content`` (a string, or a list of parts with ``text``)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(part.get("text")) if isinstance(part, dict) else _text_chars(part) for part in value)
    return 0


def estimate_prompt_tokens(payload: dict[str, Any] | None) -> int:
    """Prompt tokens of a chat (``messages``) or completions (``prompt``) request, estimated from its text."""
    if not payload:
        return 0
    messages = payload.get("messages")
    if isinstance(messages, list):
        chars = sum(_text_chars(m.get("content")) for m in messages if isinstance(m, dict))
        return -(-chars // _CHARS_PER_TOKEN) + _TOKENS_PER_MESSAGE * len(messages)
    return -(-_text_chars(payload.get("prompt")) // _CHARS_PER_TOKEN)


class PromptCalibration:
    """Per deployment, the running ratio of real prompt tokens to the character rule's estimate."""

    ALPHA = 0.1  # weight of each new complete stream
    BOUNDS = (0.25, 4.0)
    MIN_STREAMS = 10  # complete streams seen before the ratio is trusted

    def __init__(self) -> None:
        self._ratio: dict[str, float] = {}
        self._seen: dict[str, int] = {}

    def observe(self, deployment: str, payload: dict[str, Any] | None, prompt_tokens: int) -> None:
        """A stream of ``deployment`` ended with the upstream's usage: ``prompt_tokens`` for ``payload``."""
        estimate = estimate_prompt_tokens(payload)
        if estimate <= 0 or prompt_tokens <= 0:
            return
        low, high = self.BOUNDS
        ratio = min(max(prompt_tokens / estimate, low), high)
        known = self._ratio.get(deployment)
        self._ratio[deployment] = ratio if known is None else known + self.ALPHA * (ratio - known)
        self._seen[deployment] = self._seen.get(deployment, 0) + 1

    def factor(self, deployment: str) -> float:
        """What to multiply the rule's prompt estimate by for ``deployment`` (1 until it is known well enough)."""
        if self._seen.get(deployment, 0) < self.MIN_STREAMS:
            return 1.0
        return self._ratio[deployment]


def estimate_stream_usage(
    known: Usage | None,
    payload: dict[str, Any] | None,
    output_events: int,
    *,
    final: bool,
    client_left: bool,
    prompt_factor: float = 1.0,
) -> Usage | None:
    """The usage to charge for a stream, or ``None`` to keep ``known``.

    ``known`` stands when it is ``final`` (OpenAI's usage chunk, Anthropic's ``message_delta`` arrived). Otherwise:
    the input tokens known so far (Anthropic's ``message_start``) or estimated from the request, and the larger of the
    output tokens known so far and the chunks relayed. A stream that failed on the upstream's side before any output
    (an error event first, a timeout) gave the client nothing and is not charged; one the client left is, since the
    prompt was processed."""
    if final:
        return None
    if output_events == 0 and not client_left:
        return None
    if known is not None and known.input:
        prompt = known.input
    else:
        prompt = round(estimate_prompt_tokens(payload) * prompt_factor)
    cached = known.cached_input if known is not None else 0
    output = max(known.output if known is not None else 0, output_events)
    if prompt == 0 and output == 0:
        return None
    return Usage(input=prompt, output=output, cached_input=cached)
