"""Configuration: env expansion, validation errors that say what to fix, and the CLI stopping on a bad file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmops.config import ConfigError, expand_env, load_config, parse_config

MINIMAL = {
    "models": [
        {
            "name": "llama-3-8b",
            "deployments": [{"name": "vllm-a", "base_url": "http://vllm:8000/v1/", "model": "meta-llama/Llama-3-8B"}],
        }
    ]
}


def test_minimal_config_gets_defaults() -> None:
    config = parse_config(MINIMAL)
    model = config.model("llama-3-8b")
    assert model is not None
    dep = model.deployments[0]
    assert dep.provider == "openai_compatible"
    assert dep.base_url == "http://vllm:8000/v1"  # trailing slash dropped
    assert dep.timeouts.connect == 5.0
    assert config.server.port == 8080
    assert config.redis is None
    assert model.sampling.rate == 0.0


def test_design_example_parses(tmp_path: Path) -> None:
    text = """
server: {host: 0.0.0.0, port: 8080}
redis: {url: redis://127.0.0.1:6379/0}
telemetry: {otlp_endpoint: http://otel:4318, service_name: llm-gateway}
models:
  - name: llama-3-8b
    deployments:
      - name: vllm-a
        provider: openai_compatible
        base_url: http://vllm:8000/v1
        model: meta-llama/Meta-Llama-3-8B-Instruct
        api_key: ${VLLM_API_KEY}
        weight: 1
    pricing: {input_per_mtok: 0.10, output_per_mtok: 0.40, cached_input_per_mtok: 0.05}
    fallbacks: [gpt-4o-mini]
    sampling: {rate: 0.05}
  - name: gpt-4o-mini
    deployments:
      - {name: openai, base_url: https://api.openai.com/v1, model: gpt-4o-mini, api_key: "${OPENAI_API_KEY:-}"}
monitors:
  gateway_url: http://127.0.0.1:8080/v1
  judge_model: gpt-4o-mini
  judges: [rules, reference, llm_single, rag, pairwise]
  drift: {window: 500, every: 100}
keys:
  - {name: team-a, sha256: "%s", rpm: 600, budget_usd: 100}
""" % ("ab" * 32)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    config = load_config(path, environ={"VLLM_API_KEY": "secret-token"})
    assert config.models[0].deployments[0].api_key == "secret-token"
    assert config.models[1].deployments[0].api_key is None  # empty default means no key
    assert config.models[0].pricing is not None and config.models[0].pricing.cached_input_per_mtok == 0.05
    assert "secret-token" not in repr(config)


def test_missing_env_var_is_named() -> None:
    with pytest.raises(ConfigError, match="VLLM_API_KEY"):
        expand_env("api_key: ${VLLM_API_KEY}", environ={})


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["models"][0]["deployments"][0].update(base_url="vllm:8000"), "models.0.deployments.0.base_url"),
        (lambda c: c["models"][0]["deployments"][0].update(weight=0), "models.0.deployments.0.weight"),
        (lambda c: c["models"][0].update(sampling={"rate": 1.5}), "models.0.sampling.rate"),
        (lambda c: c["models"][0].update(fallbacks=["nope"]), "fallback 'nope' is not a configured model"),
        (lambda c: c["models"][0].update(pricing={"gpu_hour_usd": 2, "input_per_mtok": 1}), "not both"),
        (lambda c: c["models"][0].update(pricing={"gpu_hour_usd": 2, "cached_input_per_mtok": 1}), "not both"),
        (lambda c: c["models"][0].update(pricing={"input_per_mtok": 1}), "(output_per_mtok missing"),
        (lambda c: c["models"][0].update(pricing={"output_per_mtok": 1}), "(input_per_mtok missing"),
        (
            lambda c: c["models"][0].update(pricing={"cached_input_per_mtok": 1}),
            "input_per_mtok and output_per_mtok missing",
        ),
        (lambda c: c["models"][0].update(colour="blue"), "models.0.colour: unknown field"),
        (lambda c: c["models"][0].update(name="has space"), "models.0.name"),
        (lambda c: c.update(models=[]), "models"),
        (lambda c: c.update(keys=[{"name": "k", "sha256": "ab" * 32, "rpm": 5}]), "set redis.url"),
        (lambda c: c["models"][0].update(variants=[{"name": "v", "deployments": ["nope"]}]), "unknown deployments"),
        (lambda c: c["models"][0].update(variants=[{"name": "v", "model": "ghost"}]), "unknown model"),
        (lambda c: c.update(monitors={"judges": ["llm_single"]}), "need monitors.judge_model"),
    ],
)
def test_invalid_configs_name_the_field(mutate, expected: str) -> None:
    import copy

    data = copy.deepcopy(MINIMAL)
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.yaml")
    assert expected in str(info.value)
    assert "test.yaml" in str(info.value)


def test_gateway_command_stops_on_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - name: m\n    deployments: []\n")
    result = subprocess.run(
        [sys.executable, "-m", "llmops.cli", "gateway", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "models.0: a model needs at least one deployment" in result.stderr
    assert "Traceback" not in result.stderr


def test_gateway_command_says_when_file_is_missing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llmops.cli", "gateway", "--config", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot read config file" in result.stderr


def test_env_values_are_expanded_after_parsing_never_altered_or_printed(tmp_path: Path) -> None:
    """A secret holding YAML syntax arrives unaltered; a YAML error never prints it; comments are not expanded."""
    secret = 'pa"ss #not-a-comment *alias: x'
    path = tmp_path / "config.yaml"
    path.write_text(
        "# old: ${UNSET_IN_A_COMMENT}\n"
        "redis: {url: 'redis://:${REDIS_PASSWORD}@redis:6379/0'}\n"
        "server: {port: '${PORT}'}\n"
        "telemetry: {otlp_endpoint: '${OTLP:-}'}\n"
        "models:\n"
        "  - name: m\n"
        "    deployments: [{name: d, base_url: 'http://vllm:8000/v1', model: m, api_key: '${VLLM_API_KEY}'}]\n"
    )
    config = load_config(path, environ={"REDIS_PASSWORD": secret, "PORT": "8081", "VLLM_API_KEY": secret})
    assert config.redis is not None and config.redis.url == f"redis://:{secret}@redis:6379/0"
    assert config.models[0].deployments[0].api_key == secret
    assert config.server.port == 8081
    assert config.telemetry is not None and config.telemetry.otlp_endpoint is None
    broken = tmp_path / "broken.yaml"
    broken.write_text("redis: {url: ${REDIS_PASSWORD}\nmodels: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(broken, environ={"REDIS_PASSWORD": secret})
    assert "not valid YAML" in str(info.value)
    assert 'pa"ss' not in str(info.value)
