"""Usage estimated for streams that end without the upstream's usage chunk (hand-computed)."""

from __future__ import annotations

from gateway.pricing import Usage
from gateway.usage_estimate import estimate_prompt_tokens, estimate_stream_usage


def test_prompt_estimate_hand_computed() -> None:
    chat = {
        "messages": [
            {"role": "system", "content": "be brief"},  # 8 characters
            {"role": "user", "content": [{"type": "text", "text": "hello there!"}, {"type": "image_url"}]},  # 12
        ]
    }
    assert estimate_prompt_tokens(chat) == 5 + 2 * 4  # ceil(20 / 4) + 4 per message
    assert estimate_prompt_tokens({"prompt": "abcdefghi"}) == 3  # completions: ceil(9 / 4)
    assert estimate_prompt_tokens({"prompt": ["abcd", "efgh"]}) == 2
    assert estimate_prompt_tokens(None) == 0


def test_known_usage_stands_and_missing_usage_is_estimated() -> None:
    payload = {"messages": [{"role": "user", "content": "12345678"}]}  # 2 + 4 tokens
    assert estimate_stream_usage(Usage(input=9, output=3), payload, output_events=5) is None
    assert estimate_stream_usage(None, payload, output_events=5) == Usage(input=6, output=5)
    # Anthropic's message_start told the input (and cached) tokens; the output count never came.
    assert estimate_stream_usage(Usage(input=30, output=0, cached_input=10), payload, 7) == Usage(30, 7, 10)
    assert estimate_stream_usage(Usage(input=30, output=0), payload, output_events=0) is None
    assert estimate_stream_usage(None, {}, output_events=0) is None
