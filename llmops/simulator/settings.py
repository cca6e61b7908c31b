"""Settings of ``llmops simulate``, defined once: the validated models, from which the flags are generated.

:class:`SimulatorSettings` is the one source: each field's type, default, bounds and description make its flag (see
:mod:`llmops.simulator.flags`). :class:`FaultConfig`, the part ``POST /admin/faults`` may change at run time, is its
base class; :class:`AnthropicSimulatorSettings` (``--api anthropic``) takes the fields it shares from it.
"""

from __future__ import annotations

import argparse
import copy
from functools import cached_property
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from llmops.simulator.errors import SimulatorSettingsError
from llmops.simulator.flags import Flag, describe_errors, flag_name, given_values, load_values
from llmops.simulator.script import ScriptRule, load_script
from llmops.simulator.skill import KeyItem, Skill, load_answer_key

LogLevel = Literal["debug", "info", "warning", "error"]


def _check_names(value: tuple[str, ...]) -> tuple[str, ...]:
    for name in value:
        if not name.strip():
            raise ValueError("a model name must not be empty")
    if len(set(value)) != len(value):
        raise ValueError(f"model names must be unique, got {list(value)}")
    return value


ModelNames = Annotated[tuple[str, ...], AfterValidator(_check_names), Flag("server", name="--model", metavar="NAME")]


class FaultConfig(BaseModel):
    """Pacing and fault injection: the settings that ``POST /admin/faults`` may change at run time (and
    ``DELETE /admin/faults`` resets to those of the start). :class:`SimulatorSettings` inherits these fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_rate: Annotated[float, Flag("faults")] = Field(
        0.0, ge=0, le=1, description="share of requests answered 500 (0..1)"
    )
    slow_rate: Annotated[float, Flag("faults")] = Field(
        0.0, ge=0, le=1, description="share of requests delayed by --slow-ms (0..1)"
    )
    slow_ms: Annotated[float, Flag("faults")] = Field(1000.0, ge=0, description="delay of slow requests")
    midstream_error_rate: Annotated[float, Flag("faults")] = Field(
        0.0,
        ge=0,
        le=1,
        description="share of streamed requests that send an error event after a few tokens, after HTTP 200 "
        "(0..1); requests that are not streamed are never affected",
    )
    ttft_ms: Annotated[float, Flag("generation")] = Field(50.0, ge=0, description="time to the first token")
    tokens_per_second: Annotated[float, Flag("generation")] = Field(
        100.0, ge=0, description="pace of the tokens after the first; 0 = no delay"
    )


class SimulatorSettings(FaultConfig):
    """Everything the vLLM-like simulator is started with. Invalid values raise :class:`pydantic.ValidationError`;
    :func:`build_settings` turns them into a :class:`SimulatorSettingsError` that names the flag to fix."""

    host: Annotated[str, Flag("server")] = Field("127.0.0.1", description="listen address")
    port: Annotated[int, Flag("server")] = Field(8000, ge=0, le=65535, description="listen port; 0 picks a free one")
    models: ModelNames = Field(
        ("sim-model",),
        min_length=1,
        description="served model name; repeat to serve several names (aliases of one engine, as vLLM's "
        "--served-model-name; with --api anthropic: any name is served unless some are given)",
    )
    api_key: Annotated[str | None, Flag("server", metavar="KEY")] = Field(
        None,
        repr=False,
        description="require 'Authorization: Bearer KEY' on /v1/* (as vLLM's --api-key; with --api anthropic "
        "'x-api-key: KEY' or the bearer form)",
    )
    log_level: Annotated[LogLevel, Flag("server")] = Field("info", description="log level")
    output_tokens: Annotated[int, Flag("generation")] = Field(
        32, ge=0, description="answer length (words) when the request sets no max_tokens"
    )
    echo: Annotated[bool, Flag("generation")] = Field(False, description="answer with the last user message's text")
    script: Annotated[tuple[ScriptRule, ...], Flag("generation", metavar="FILE", load=load_script)] = Field(
        (),
        description="YAML list of {match: REGEX, response?: TEXT, finish_reason?: stop|length, tool_calls?: "
        "[{name, arguments?}], logprob?: NUMBER}, matched on the last user message (or prompt); the first match with "
        "a response (or tool calls) wins; logprob scores the prompt tokens a match covers",
    )
    seed: Annotated[int, Flag("generation")] = Field(
        0, description="seed of generated text, of random faults and of which items --skill knows"
    )
    skill: Annotated[float | None, Flag("generation", metavar="SHARE")] = Field(
        None,
        ge=0,
        le=1,
        description="share of each task's --answer-key items the model gets right (exactly round(SHARE * n) of n, "
        "chosen by --seed): multiple-choice prompt logprobs favour its pick, generative items get the target",
    )
    answer_key: Annotated[tuple[KeyItem, ...], Flag("generation", metavar="FILE", load=load_answer_key)] = Field(
        (),
        description="JSON Lines of benchmark items {task, query, choices, answer} or {task, query, target} "
        "(llmops eval answer-key writes one), for --skill",
        validate_default=True,
    )
    embedding_dim: Annotated[int, Flag("generation")] = Field(64, ge=1, le=16384, description="embedding dimensions")
    max_num_seqs: Annotated[int, Flag("engine")] = Field(
        256, ge=1, description="sequences running at once; more wait in a queue"
    )
    max_model_len: Annotated[int, Flag("engine")] = Field(8192, ge=1, description="context length")
    kv_cache_tokens: Annotated[int, Flag("engine")] = Field(
        262144, ge=1, description="KV cache capacity in tokens, for vllm:kv_cache_usage_perc and preemptions"
    )
    block_size: Annotated[int, Flag("engine")] = Field(
        16,
        ge=1,
        le=1024,
        description="tokens per KV cache block, as vLLM's flag: prefix cache hits count whole blocks",
    )
    enable_prompt_tokens_details: Annotated[bool, Flag("engine")] = Field(
        False, description="report usage.prompt_tokens_details.cached_tokens (simulated prefix caching)"
    )
    legacy_metric_names: Annotated[bool, Flag("engine")] = Field(
        False,
        description="export vllm:gpu_cache_usage_perc and vllm:time_per_output_token_seconds (pre-rename names)",
    )
    enable_tokenizer_info_endpoint: Annotated[bool, Flag("engine")] = Field(
        False, description="serve GET /tokenizer_info, as vLLM's flag of the same name (/tokenize is always served)"
    )
    enable_responses_store: Annotated[bool, Flag("engine")] = Field(
        False,
        description="keep /v1/responses answers in memory when a request has store=true (GET /v1/responses/ID, "
        "previous_response_id), as vLLM with VLLM_ENABLE_RESPONSES_API_STORE=1; without it store is ignored",
    )

    @field_validator("answer_key")
    @classmethod
    def _key_with_skill(cls, value: tuple[KeyItem, ...], info: ValidationInfo) -> tuple[KeyItem, ...]:
        skill = info.data.get("skill")
        if skill is not None and not value:
            raise ValueError("--skill needs an answer key with at least one item")
        if skill is None and value and "skill" in info.data:
            raise ValueError("an answer key is used with --skill only")
        return value

    @cached_property
    def skill_model(self) -> Skill | None:
        """The model's knowledge of the answer key's items (None without ``--skill``)."""
        return Skill(self.answer_key, self.skill, self.seed) if self.skill is not None else None

    @property
    def metrics_model_name(self) -> str:
        """The ``model_name`` label of the ``vllm:*`` series: the first served name, as in vLLM."""
        return self.models[0]

    def fault_config(self) -> FaultConfig:
        """The run-time part of these settings (what ``/admin/faults`` starts from and resets to)."""
        return FaultConfig.model_validate(self.model_dump(include=set(FaultConfig.model_fields)))


def _shared(name: str) -> Any:
    """:class:`SimulatorSettings`' field ``name`` (default, bounds, description and flag), for another model."""
    return copy.copy(SimulatorSettings.model_fields[name])


class AnthropicSimulatorSettings(BaseModel):
    """What the Anthropic Messages API simulator (``--api anthropic``) is started with: the fields it shares with
    :class:`SimulatorSettings`, defined there; only ``models`` differs (empty: any model name is served)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = _shared("host")
    port: int = _shared("port")
    models: ModelNames = Field(default=(), description="served model names (empty: any)")
    api_key: str | None = _shared("api_key")
    log_level: LogLevel = _shared("log_level")
    echo: bool = _shared("echo")
    output_tokens: int = _shared("output_tokens")
    ttft_ms: float = _shared("ttft_ms")
    tokens_per_second: float = _shared("tokens_per_second")
    seed: int = _shared("seed")


#: The settings model of each ``--api``.
API_SETTINGS: dict[str, type[SimulatorSettings] | type[AnthropicSimulatorSettings]] = {
    "openai": SimulatorSettings,
    "anthropic": AnthropicSimulatorSettings,
}
Settings = TypeVar("Settings", bound=BaseModel)


def build(model: type[Settings], **values: Any) -> Settings:
    """``model`` from keyword values; raises :class:`SimulatorSettingsError` that names the flags to fix."""
    try:
        return model(**values)
    except ValidationError as error:
        raise SimulatorSettingsError("invalid simulator settings: " + describe_errors(error, model)) from None


def build_settings(**values: Any) -> SimulatorSettings:
    """:class:`SimulatorSettings` from keyword values; raises :class:`SimulatorSettingsError` naming what to fix."""
    return build(SimulatorSettings, **values)


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    """Validated settings of the OpenAI-compatible simulator from parsed flags; raises
    :class:`SimulatorSettingsError` naming the flag to fix."""
    return build(SimulatorSettings, **load_values(SimulatorSettings, given_values(args, SimulatorSettings)))


def anthropic_settings_from_args(args: argparse.Namespace) -> AnthropicSimulatorSettings:
    """Validated settings of the Anthropic simulator from parsed flags; a flag it has no use for, given a value other
    than its default, raises :class:`SimulatorSettingsError`."""
    given = given_values(args, SimulatorSettings)
    fields = AnthropicSimulatorSettings.model_fields
    unused = [
        name
        for name, value in given.items()
        if name not in fields and value != SimulatorSettings.model_fields[name].default
    ]
    if unused:
        flags = ", ".join(flag_name(SimulatorSettings, name) for name in unused)
        raise SimulatorSettingsError(f"{flags}: not supported with --api anthropic")
    values = {name: value for name, value in given.items() if name in fields}
    return build(AnthropicSimulatorSettings, **load_values(AnthropicSimulatorSettings, values))
