"""The gateway configurations a run can measure (``--configs``); the private Redis that the production one needs
is ``processes.BenchRedis``.

- ``bare``: one model, per-token pricing, no keys, no Redis, no sampling: the gateway's own request path.
- ``production``: the same, plus what a production deployment runs (as gwbench's ``llmops.sh start prod``): an API key
  with rpm and tpm limits and a monthly budget kept in Redis (limits far above the load, so nothing is refused), 10 %
  of the traffic sampled into the Redis stream, the feedback index in Redis.
"""

from __future__ import annotations

import hashlib

from .load import API_KEY

CONFIGS = ("bare", "production")


def config_yaml(config: str, model: str, upstream_base: str, redis_url: str | None) -> str:
    """The gateway's YAML for ``config`` (``redis_url``: the production Redis, with its db)."""
    text = (
        "models:\n"
        f"  - name: {model}\n"
        "    deployments:\n"
        f"      - {{name: up, base_url: {upstream_base}/v1, model: {model}}}\n"
        "    pricing: {input_per_mtok: 0.15, output_per_mtok: 0.6}\n"
    )
    if config == "bare":
        return text
    assert config == "production" and redis_url is not None
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    return (
        text + "    sampling: {rate: 0.1}\n"
        f"redis: {{url: '{redis_url}'}}\n"
        "keys:\n"
        f"  - {{name: bench, sha256: '{digest}', rpm: 10000000, tpm: 1000000000, budget_usd: 1000000, "
        "budget_period: month}\n"
    )
