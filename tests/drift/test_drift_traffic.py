"""The synthetic traffic generator itself (``llmops/testing/drift_traffic.py``): reproducible, and each knob shifts
what it names."""

from __future__ import annotations

import numpy as np

from llmops.testing.drift_traffic import Traffic, generate


def test_generate_is_reproducible() -> None:
    a = generate(Traffic(), 50, seed=7, start_ts=0.0)
    b = generate(Traffic(), 50, seed=7, start_ts=0.0)
    assert [s.to_dict() for s, _ in a] == [s.to_dict() for s, _ in b]
    assert [x for _, x in a] == [x for _, x in b]


def test_generate_shifts() -> None:
    korean = generate(Traffic(korean=1.0), 20, seed=1)
    assert all(any("\uac00" <= ch <= "\ud7a3" for ch in s.question) for s, _ in korean)
    long = generate(Traffic(prompt_words=400), 200, seed=1)
    short = generate(Traffic(), 200, seed=1)
    assert np.median([len(s.question) for s, _ in long]) > 5 * np.median([len(s.question) for s, _ in short])
