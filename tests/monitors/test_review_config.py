"""The review and shadow sections of the config: what is refused at start, with a message that says what to fix."""

from __future__ import annotations

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
        ({"shadow": [{"model": "app", "target": "app", "max_tokens_per_day": 10}]}, "must be another model"),
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
