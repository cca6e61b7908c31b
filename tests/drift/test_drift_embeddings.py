"""Optional text-embedding drift (the ``drift-embeddings`` extra): a stable topic mix raises no embedding drift, a
topic shift (cooking -> taxes) is detected and named ``prompt_embedding``, and enabling it without the extra is a
clear configuration error. Without the extra these tests skip, except under CI (``CI`` set), where they fail."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from llmops.config import ConfigError, DriftConfig, DriftEmbeddingsConfig, parse_config
from llmops.testing.drift_traffic import Traffic, feed, generate
from monitors.checks import check_config, check_drift
from monitors.drift import embeddings
from monitors.drift.monitor import DriftMonitor

pytestmark = pytest.mark.filterwarnings(
    "ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning", "ignore::DeprecationWarning"
)

MISSING = embeddings.missing_extra()


@pytest.fixture
def extra() -> None:
    if MISSING is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI installs the drift-embeddings extra, but: {MISSING}")
    pytest.skip(f"the drift-embeddings extra is not installed ({embeddings.INSTALL})")


COOKING_Q = [
    "How long should I boil {x} so it stays tender?",
    "What is the best way to season {x} for dinner?",
    "Can I cook {x} in the oven instead of a pan?",
    "Which spices go well with {x}?",
    "How do I keep {x} from sticking to the pot?",
    "Is it fine to freeze leftover {x}?",
]
COOKING_A = [
    "Simmer the {x} gently and taste it often; salt the water well.",
    "Roast the {x} at a medium heat with olive oil, garlic and a pinch of pepper.",
    "Use a heavy pan, a little butter, and stir the {x} now and then.",
]
COOKING_X = ["rice", "pasta", "potatoes", "salmon", "chicken", "lentils"]
TAX_Q = [
    "How do I file my {x} before the deadline?",
    "Can I deduct {x} from my income tax?",
    "What penalty applies if my {x} is late?",
    "Which form do I need to report {x}?",
    "Do I owe tax on {x} received from abroad?",
    "How is {x} assessed for self-employed people?",
]
TAX_A = [
    "Report the {x} on your annual return and keep the receipts for five years.",
    "The {x} is deductible only when it relates to your business income.",
    "File the {x} online; late filing adds interest on the unpaid amount.",
]
TAX_X = ["VAT return", "capital gains", "pension contributions", "rental income", "dividends", "property tax"]

SETTINGS = DriftConfig(
    window=100,
    every=100,
    every_seconds=None,
    min_samples=100,
    embeddings={"enabled": MISSING is None, "max_samples": 100},
)


def topic(samples: list, questions: list[str], answers: list[str], fillers: list[str], seed: int) -> list:
    """``samples`` with their prompt and answer replaced by texts drawn (seeded) from a small fixed set."""
    rng = np.random.default_rng(seed)
    out = []
    for sample, scores in samples:
        x = str(rng.choice(fillers))
        prompt, answer = str(rng.choice(questions)).format(x=x), str(rng.choice(answers)).format(x=x)
        request = {**sample.request, "messages": [{"role": "user", "content": prompt}]}
        response = {**sample.response, "text": answer}
        out.append((dataclasses.replace(sample, request=request, response=response), scores))
    return out


async def test_stable_topics_no_drift_then_topic_shift_detected(extra, redis, tmp_path) -> None:
    m = DriftMonitor(redis, SETTINGS, CollectorRegistry(), tmp_path, auto_reports=False)
    await m.warm_up()
    base = generate(Traffic(korean=0.0), 400, seed=5)
    stable = topic(base[:300], COOKING_Q, COOKING_A, COOKING_X, seed=1)
    results = await feed(m, stable)
    assert len(results) == 3  # the first compares the reference with itself
    for result in results[1:]:
        for name in ("prompt_embedding", "response_embedding"):
            feature = result.feature(name)
            assert feature is not None and feature.skipped is None, feature
            assert feature.stattest == "mmd" and feature.group in ("input", "output")
            assert not feature.drifted, (name, feature.score, feature.threshold)

    shifted = topic(base[300:], TAX_Q, TAX_A, TAX_X, seed=2)
    [result] = await feed(m, shifted)
    prompt = result.feature("prompt_embedding")
    assert prompt is not None and prompt.drifted, prompt
    assert prompt.score is not None and prompt.threshold is not None and prompt.score > prompt.threshold
    assert "prompt_embedding" in result.drifted_features and result.drift and result.groups["input"]
    feature = result.feature("response_embedding")
    assert feature is not None and feature.drifted
    exported = {(f.feature, f.stattest) for f in result.tested}
    assert ("prompt_embedding", "mmd") in exported
    assert m.metrics.score.labels("m", "prompt_embedding", "mmd")._value.get() == pytest.approx(prompt.score)
    assert m.embedder.embedded < 400  # cached per text: each distinct text embedded once


def test_enabled_without_the_extra_is_a_clear_error(monkeypatch, redis) -> None:
    monkeypatch.setattr(embeddings, "REQUIRES", ("llmops_no_such_module",))
    with pytest.raises(ValidationError, match=r"pip install 'llmops-stack\[drift-embeddings\]'"):
        check_drift(DriftConfig(embeddings={"enabled": True}))
    unchecked = DriftConfig().model_copy(update={"embeddings": DriftEmbeddingsConfig.model_construct(enabled=True)})
    with pytest.raises(ConfigError, match="drift-embeddings extra is not installed"):
        DriftMonitor(redis, unchecked, CollectorRegistry())


def test_disabled_by_default() -> None:
    assert DriftConfig().embeddings.enabled is False
    assert DriftMonitor.__init__.__module__ == "monitors.drift.monitor"


def test_model_path_must_be_a_local_model_directory(extra, tmp_path) -> None:
    with pytest.raises(ValidationError, match="not a local sentence-transformers model directory"):
        check_drift(DriftConfig(embeddings={"enabled": True, "model_path": str(tmp_path)}))


def test_the_gateway_loads_a_config_with_embeddings_on_a_host_without_the_extra(monkeypatch, tmp_path) -> None:
    """The schema is shared: a gateway host without torch loads a config that enables embedding drift (only the
    monitors need the extra), while the monitors' start refuses it with the message naming what to install."""
    monkeypatch.setattr(embeddings, "REQUIRES", ("llmops_no_such_module",))
    data = {
        "models": [{"name": "m", "deployments": [{"name": "d", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]}],
        "monitors": {"drift": {"embeddings": {"enabled": True}}},
    }
    config = parse_config(data, "shared.yaml")
    assert config.monitors.drift.embeddings.enabled

    from gateway.app import Gateway

    Gateway(config)  # builds without looking at the monitors' extras
    with pytest.raises(ConfigError) as refused:
        check_config(config, "shared.yaml")
    message = str(refused.value)
    assert message.startswith("invalid configuration in shared.yaml:\n  - monitors.drift.embeddings: drift.embeddings")
    assert "pip install 'llmops-stack[drift-embeddings]'" in message
