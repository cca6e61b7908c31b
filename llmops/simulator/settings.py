"""Settings of ``llmops simulate``: the validated :class:`SimulatorSettings` and the command-line flags."""

from __future__ import annotations

import argparse
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmops.simulator.errors import SimulatorSettingsError
from llmops.simulator.script import ScriptRule, load_script


class SimulatorSettings(BaseModel):
    """Everything the simulator is started with. Invalid values raise :class:`pydantic.ValidationError`;
    :func:`settings_from_args` turns them into a :class:`SimulatorSettingsError` that names the flag to fix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    models: tuple[str, ...] = Field(("sim-model",), min_length=1, description="served names; aliases of one engine")
    ttft_ms: float = Field(50.0, ge=0, description="time to the first token")
    tokens_per_second: float = Field(100.0, ge=0, description="0 = no delay between tokens")
    output_tokens: int = Field(32, ge=0, description="answer length when the request sets no max_tokens")
    error_rate: float = Field(0.0, ge=0, le=1, description="share of requests answered 500")
    slow_rate: float = Field(0.0, ge=0, le=1)
    slow_ms: float = Field(1000.0, ge=0)
    midstream_error_rate: float = Field(0.0, ge=0, le=1, description="share of requests answered 500")
    echo: bool = False
    script: tuple[ScriptRule, ...] = ()
    seed: int = 0
    max_num_seqs: int = Field(256, ge=1)
    max_model_len: int = Field(8192, ge=1)
    kv_cache_tokens: int = Field(262144, ge=1, description="KV cache capacity in tokens")
    block_size: int = Field(
        16, ge=1, le=1024, description="tokens per KV cache block (prefix cache hits are whole blocks)"
    )
    embedding_dim: int = Field(64, ge=1, le=16384)
    enable_prompt_tokens_details: bool = False
    legacy_metric_names: bool = False
    api_key: str | None = Field(None, repr=False)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("models")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not name.strip():
                raise ValueError("a model name must not be empty")
        if len(set(value)) != len(value):
            raise ValueError(f"model names must be unique, got {list(value)}")
        return value

    @property
    def metrics_model_name(self) -> str:
        """The ``model_name`` label of the ``vllm:*`` series: the first served name, as in vLLM."""
        return self.models[0]


_FLAG_OF_FIELD = {"models": "--model"}


def _flag(field: str) -> str:
    return _FLAG_OF_FIELD.get(field, "--" + field.replace("_", "-"))


def describe_errors(error: ValidationError) -> str:
    """One line per invalid setting, naming its flag, what is wrong and the value given."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "settings"
        value = item.get("input")
        given = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"{_flag(field)}: {item['msg']}{given}")
    return "invalid simulator settings: " + "; ".join(lines)


def build_settings(**values: Any) -> SimulatorSettings:
    """:class:`SimulatorSettings` from keyword values; raises :class:`SimulatorSettingsError` that names what to fix."""
    try:
        return SimulatorSettings(**values)
    except ValidationError as error:
        raise SimulatorSettingsError(describe_errors(error)) from None


def _default(field: str) -> Any:
    return SimulatorSettings.model_fields[field].default


EPILOG = """\
tokens: a token is a whitespace-separated word; prompt tokens are the words of all message contents.
answers: the request's simulate.response, else the first --script match, else the last user message (--echo),
  else lorem ipsum; max_tokens sets the length (finish "length"), otherwise --output-tokens words (finish "stop").
per request: a body field "simulate", e.g. {"fault": "error", "status": 503}, {"fault": "slow", "delay_ms": 500},
  {"fault": "midstream_error", "after_tokens": 3}, {"fault": "disconnect"}, {"fault": "none"},
  {"response": "fixed text"}, {"ttft_ms": 200, "tokens_per_second": 20}.
at run time: GET, POST (JSON with any of error_rate, slow_rate, slow_ms, midstream_error_rate, ttft_ms,
  tokens_per_second) and DELETE (reset) /admin/faults.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``llmops simulate`` (and a help epilog on tokens, answers and faults) to ``parser``."""
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    net = parser.add_argument_group("server")
    net.add_argument("--host", default=_default("host"), help="listen address (default %(default)s)")
    net.add_argument("--port", type=int, default=_default("port"), help="listen port (default %(default)s)")
    net.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="served model name; repeat to serve several names (aliases of one engine, as vLLM's "
        "--served-model-name). Default: sim-model",
    )
    net.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1/* (as vLLM's --api-key)")
    net.add_argument("--log-level", default=_default("log_level"), choices=["debug", "info", "warning", "error"])

    gen = parser.add_argument_group("generation")
    gen.add_argument(
        "--ttft-ms", type=float, default=_default("ttft_ms"), help="time to the first token (default %(default)s)"
    )
    gen.add_argument(
        "--tokens-per-second",
        type=float,
        default=_default("tokens_per_second"),
        help="pace of the tokens after the first; 0 = no delay (default %(default)s)",
    )
    gen.add_argument(
        "--output-tokens",
        type=int,
        default=_default("output_tokens"),
        help="answer length (words) when the request sets no max_tokens (default %(default)s)",
    )
    gen.add_argument("--echo", action="store_true", help="answer with the last user message's text")
    gen.add_argument(
        "--script",
        metavar="FILE",
        help="YAML list of {match: REGEX, response: TEXT, finish_reason?: stop|length}; first match on the last "
        "user message (or prompt) wins",
    )
    gen.add_argument("--seed", type=int, default=_default("seed"), help="seed of generated text and of random faults")
    gen.add_argument(
        "--embedding-dim",
        type=int,
        default=_default("embedding_dim"),
        help="embedding dimensions (default %(default)s)",
    )

    eng = parser.add_argument_group("engine")
    eng.add_argument(
        "--max-num-seqs",
        type=int,
        default=_default("max_num_seqs"),
        help="sequences running at once; more wait in a queue (default %(default)s)",
    )
    eng.add_argument(
        "--max-model-len", type=int, default=_default("max_model_len"), help="context length (default %(default)s)"
    )
    eng.add_argument(
        "--kv-cache-tokens",
        type=int,
        default=_default("kv_cache_tokens"),
        help="KV cache capacity in tokens, for vllm:kv_cache_usage_perc and preemptions (default %(default)s)",
    )
    eng.add_argument(
        "--block-size",
        type=int,
        default=_default("block_size"),
        help="tokens per KV cache block, as vLLM's flag: prefix cache hits count whole blocks (default %(default)s)",
    )
    eng.add_argument(
        "--enable-prompt-tokens-details",
        action="store_true",
        help="report usage.prompt_tokens_details.cached_tokens (simulated prefix caching)",
    )
    eng.add_argument(
        "--legacy-metric-names",
        action="store_true",
        help="export vllm:gpu_cache_usage_perc and vllm:time_per_output_token_seconds (pre-rename names)",
    )

    faults = parser.add_argument_group("fault injection (also at run time: POST /admin/faults)")
    faults.add_argument(
        "--error-rate", type=float, default=_default("error_rate"), help="share of requests answered 500 (0..1)"
    )
    faults.add_argument(
        "--slow-rate", type=float, default=_default("slow_rate"), help="share of requests delayed by --slow-ms"
    )
    faults.add_argument(
        "--slow-ms", type=float, default=_default("slow_ms"), help="delay of slow requests (default %(default)s)"
    )
    faults.add_argument(
        "--midstream-error-rate",
        type=float,
        default=_default("midstream_error_rate"),
        help="share of streams that send an error event after a few tokens (after HTTP 200)",
    )


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    """Validated settings from parsed flags; raises :class:`SimulatorSettingsError` naming the flag to fix."""
    values: dict[str, Any] = {
        name: getattr(args, name)
        for name in SimulatorSettings.model_fields
        if name not in ("models", "script") and getattr(args, name, None) is not None
    }
    if args.models:
        values["models"] = tuple(args.models)
    if getattr(args, "script", None):
        values["script"] = load_script(args.script)
    return build_settings(**values)
