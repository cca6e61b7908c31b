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


def test_final_usage_stands_and_missing_usage_is_estimated() -> None:
    payload = {"messages": [{"role": "user", "content": "12345678"}]}  # 2 + 4 tokens

    def estimate(known: Usage | None, events: int, final: bool = False, left: bool = False) -> Usage | None:
        return estimate_stream_usage(known, payload, events, final=final, client_left=left)

    assert estimate(Usage(input=9, output=3), 5, final=True) is None  # the upstream's final usage stands
    assert estimate(None, 5) == Usage(input=6, output=5)  # cut, or a host ignoring include_usage
    # Anthropic: message_start told the input (and cached) tokens and an output of 1; message_delta never came.
    assert estimate(Usage(input=30, output=1, cached_input=10), 7) == Usage(30, 7, 10)
    assert estimate(Usage(input=30, output=9), 7) == Usage(30, 9)  # never less than the upstream said so far
    # Failed upstream-side before any output: the client got nothing, nothing is added.
    assert estimate(None, 0) is None
    assert estimate(Usage(input=30, output=1), 0) is None
    # The client left before any output: the prompt was processed.
    assert estimate(None, 0, left=True) == Usage(input=6, output=0)
    assert estimate_stream_usage(None, {}, 0, final=False, client_left=True) is None


def test_the_prompt_estimate_is_calibrated_per_deployment() -> None:
    """The character rule overshoots a host that counts fewer tokens (8 for 3 real ones here); the streams that end
    with the host's usage calibrate it, so a cut stream is charged about what the host would have said."""
    from gateway.usage_estimate import PromptCalibration

    payload = {"messages": [{"role": "user", "content": "one two three"}]}  # the rule: ceil(13 / 4) + 4 = 8
    calibration = PromptCalibration()
    assert calibration.factor("m|d") == 1.0
    assert estimate_stream_usage(None, payload, 2, final=False, client_left=True) == Usage(input=8, output=2)
    for _ in range(9):
        calibration.observe("m|d", payload, 3)  # the host said 3
    assert calibration.factor("m|d") == 1.0  # not trusted before 10 complete streams
    calibration.observe("m|d", payload, 3)
    assert calibration.factor("m|d") == 3 / 8 and calibration.factor("other|d") == 1.0
    cut = estimate_stream_usage(
        None, payload, 2, final=False, client_left=True, prompt_factor=calibration.factor("m|d")
    )
    assert cut == Usage(input=3, output=2)
    calibration.observe("m|d", payload, 10_000)  # an outlier moves it a tenth of the way, within the bounds
    assert calibration.factor("m|d") == 3 / 8 + 0.1 * (4.0 - 3 / 8)
