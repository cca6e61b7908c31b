"""The review and shadow sections of the config: what is refused at start, with a message that says what to fix."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from llmops.config import ConfigError, parse_config
from tests.monitors.review_support import reviewers

PRICED = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


def load(monitors: dict[str, Any], big_pricing: dict[str, Any] | None = PRICED) -> Any:
    models: list[dict[str, Any]] = [
        {"name": "app", "deployments": [{"name": "d", "base_url": "http://h/v1", "model": "m"}]},
        {"name": "big", "deployments": [{"name": "d", "base_url": "http://h/v1", "model": "m"}]},
    ]
    if big_pricing:
        models[1]["pricing"] = big_pricing
    return parse_config({"models": models, "monitors": monitors})


def test_a_valid_review_and_shadow_config() -> None:
    config = load(
        {
            "review": {
                "enabled": True,
                "reviewers": reviewers(),
                "queues": [{"name": "ab", "mode": "pair", "models": ["app"]}, {"name": "low", "mode": "single"}],
            },
            "shadow": [{"model": "app", "target": "big", "budget_usd_per_day": 2}],
        }
    )
    assert config.monitors.review.queues[1].when == "random" and config.monitors.shadow[0].max_per_minute == 10


@pytest.mark.parametrize(
    ("monitors", "message"),
    [
        ({"review": {"enabled": True}}, "no reviewers are configured"),
        ({"review": {"reviewers": reviewers() + reviewers()[:1]}}, "reviewer names must be unique"),
        ({"review": {"queues": [{"name": "q", "mode": "pair", "when": "low_score"}]}}, "a pair queue takes"),
        ({"review": {"queues": [{"name": "q", "mode": "single", "models": ["nope"]}]}}, "unknown models: nope"),
        ({"review": {"queues": [{"name": "a/b", "mode": "single"}]}}, "review.queues.0.name"),
        ({"shadow": [{"model": "app", "target": "app", "max_tokens_per_day": 10}]}, "must be another model, or one"),
        ({"shadow": [{"model": "app", "target": "big"}]}, "give budget_usd_per_day or max_tokens_per_day"),
        ({"shadow": [{"model": "app", "target": "gone", "max_tokens_per_day": 10}]}, "'gone' is not a configured"),
    ],
)
def test_refused(monitors: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(monitors)


def test_a_usd_budget_needs_the_targets_per_token_pricing() -> None:
    spec = {"shadow": [{"model": "app", "target": "big", "budget_usd_per_day": 1}]}
    with pytest.raises(ConfigError, match="needs its per-token pricing"):
        load(spec, big_pricing={"gpu_hour_usd": 2.0})
    tokens = {"shadow": [{"model": "app", "target": "big", "max_tokens_per_day": 100_000}]}
    assert load(tokens, big_pricing=None).monitors.shadow[0].budget_usd_per_day is None


def with_variants(shadow: list[dict[str, Any]], keys: list[dict[str, Any]] | None = None, api_key: str = "") -> Any:
    """Model ``chat`` with variants ``a`` and ``b`` on its own deployments and ``c`` served by ``big`` (priced)."""
    deployments = [{"name": n, "base_url": "http://h/v1", "model": "m"} for n in ("vllm-a", "vllm-b")]
    models: list[dict[str, Any]] = [
        {
            "name": "chat",
            "deployments": deployments,
            "variants": [
                {"name": "a", "deployments": ["vllm-a"]},
                {"name": "b", "deployments": ["vllm-b"]},
                {"name": "c", "model": "big"},
            ],
        },
        {"name": "big", "deployments": deployments[:1], "pricing": PRICED},
    ]
    monitors = {"shadow": shadow, "judge_api_key": api_key or None}
    return parse_config({"models": models, "monitors": monitors, "keys": keys or []})


def test_a_shadow_may_target_a_variant_of_the_same_model() -> None:
    spec = with_variants([{"model": "chat", "target": "chat", "variant": "b", "max_tokens_per_day": 10}])
    shadow = spec.monitors.shadow[0]
    assert (shadow.label, shadow.contestant) == ("chat@b", "b")
    other = with_variants([{"model": "big", "target": "chat", "variant": "a", "max_tokens_per_day": 10}])
    assert other.monitors.shadow[0].contestant == "chat@a"  # another model's variant: named by its label


@pytest.mark.parametrize(
    ("shadow", "message"),
    [
        (
            {"model": "chat", "target": "chat", "variant": "z"},
            "monitors.shadow of 'chat': model 'chat' has no variant 'z' \\(its variants: a, b, c\\)",
        ),
        ({"model": "chat", "target": "big", "variant": "a"}, "model 'big' has no variant 'a' \\(it has no variants\\)"),
        ({"model": "chat", "target": "chat"}, "the target must be another model, or one of this model's variants"),
        ({"model": "chat", "target": "chat", "variant": "a b"}, "monitors.shadow.0.variant"),
    ],
)
def test_a_shadow_variant_that_does_not_exist_is_refused(shadow: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        with_variants([{**shadow, "max_tokens_per_day": 10}])


def test_each_shadow_variant_once_and_priced_by_the_model_serving_it() -> None:
    twice = {"model": "chat", "target": "chat", "variant": "b", "max_tokens_per_day": 10}
    with pytest.raises(ConfigError, match="each shadow \\(model, target, variant\\) may be configured once"):
        with_variants([twice, twice])
    assert len(with_variants([twice, {**twice, "variant": "a"}]).monitors.shadow) == 2
    with pytest.raises(ConfigError, match="'chat@b' needs its per-token pricing"):
        with_variants([{"model": "chat", "target": "chat", "variant": "b", "budget_usd_per_day": 1}])
    served = with_variants([{"model": "chat", "target": "chat", "variant": "c", "budget_usd_per_day": 1}])
    assert served.monitors.shadow[0].budget_usd_per_day == 1  # variant c is served (and priced) by big


def test_a_pinned_shadow_needs_a_monitors_key_that_may_pin() -> None:
    spec = [{"model": "chat", "target": "chat", "variant": "b", "max_tokens_per_day": 10}]
    key = {"name": "monitors", "sha256": hashlib.sha256(b"sk-monitors").hexdigest()}
    with pytest.raises(
        ConfigError, match="the monitors' key 'monitors' \\(judge_api_key\\) may not: give it variant_pin"
    ):
        with_variants(spec, [key], "sk-monitors")
    assert with_variants(spec, [{**key, "variant_pin": True}], "sk-monitors").keys[0].variant_pin
