"""LLM GPU & vLLM (uid ``llmops-gpu-vllm``): GPUs (llmops gpu-exporter or NVIDIA's DCGM exporter) and vLLM engines."""

from __future__ import annotations

from typing import Any

from .panels import RI, Rows, Series, add_rows, new_dashboard, query_variable

MN = 'model_name=~"$model_name"'
GPU = "{{instance}} GPU {{gpu}}"


def model_name_variable() -> Any:
    return query_variable(
        "model_name",
        "vLLM model",
        "vLLM's served model name (its `model_name` label, not the gateway's public name)",
        "label_values(vllm:num_requests_running, model_name)",
    )


def vllm_rate(metric: str) -> str:
    """Per-second rate of a vLLM counter by served model."""
    return f"sum by (model_name) (rate(vllm:{metric}{{{MN}}}[{RI}]))"


GPUS = [
    Series(
        "GPU utilisation",
        "Share of time a kernel ran on the GPU (NVML; DCGM_FI_DEV_GPU_UTIL where only DCGM reports the GPU).",
        [("llmops:gpu_utilization:ratio", GPU)],
        "percentunit",
        max_val=1,
    ),
    Series(
        "GPU memory used",
        "Memory used and total per GPU. vLLM reserves gpu_memory_utilization (0.9 by default) of it up front. "
        "Alert GPUMemoryHigh above 97%.",
        [("llmops:gpu_memory_used:bytes", GPU + " used"), ("llmops:gpu_memory_total:bytes", GPU + " total")],
        "bytes",
        dashed=("regexp", ".* total"),
    ),
    Series("GPU power", "Board power draw in watts.", [("llmops:gpu_power:watts", GPU)], "watt"),
    Series(
        "GPU temperature",
        "GPU core temperature. Alert GPUTemperatureHigh above 85 °C for 10 minutes.",
        [("llmops:gpu_temperature:celsius", GPU)],
        "celsius",
        min_val=None,
        lines=((None, "green"), (85, "red")),
    ),
]

VLLM = [
    Series(
        "vLLM running and waiting requests",
        "Requests in the engine's batch and in its queue. Alert VLLMQueueDepthHigh above 10 waiting.",
        [
            (f"sum by (instance, model_name) (vllm:num_requests_running{{{MN}}})", "{{instance}} running"),
            (f"sum by (instance, model_name) (vllm:num_requests_waiting{{{MN}}})", "{{instance}} waiting"),
        ],
        "short",
    ),
    Series(
        "KV-cache usage",
        "Share of the KV cache in use (vllm:kv_cache_usage_perc, or vllm:gpu_cache_usage_perc before vLLM 0.12). "
        "Alert VLLMKVCacheNearFull above 90%.",
        [(f"llmops:vllm_kv_cache_usage:ratio{{{MN}}}", "{{instance}} {{model_name}}")],
        "percentunit",
        max_val=1,
        lines=((None, "green"), (0.9, "red")),
    ),
    Series(
        "vLLM time to first token p95 and inter-token latency p95",
        "vLLM's own view, without the gateway and network: compare with the LLM Gateway dashboard.",
        [
            (f"llmops:vllm_time_to_first_token_seconds:p95_5m{{{MN}}}", "{{model_name}} TTFT p95"),
            (f"llmops:vllm_inter_token_latency_seconds:p95_5m{{{MN}}}", "{{model_name}} inter-token p95"),
        ],
        "s",
    ),
    Series(
        "Prompt and generation tokens/s",
        "Tokens vLLM processed per second: prompt (prefill) and generated (decode).",
        [
            (vllm_rate("prompt_tokens_total"), "{{model_name}} prompt"),
            (vllm_rate("generation_tokens_total"), "{{model_name}} generation"),
        ],
        "short",
    ),
    Series(
        "Preemptions/s",
        "Running requests evicted for lack of KV-cache space (recomputed later: latency grows).",
        [(vllm_rate("num_preemptions_total"), "{{model_name}}")],
        "ops",
    ),
    Series(
        "Prefix cache hit ratio",
        "Share of prompt tokens served from vLLM's prefix cache.",
        [(f"{vllm_rate('prefix_cache_hits_total')} / {vllm_rate('prefix_cache_queries_total')}", "{{model_name}}")],
        "percentunit",
        max_val=1,
    ),
]


def rows() -> Rows:
    return [("GPUs", GPUS), ("vLLM", VLLM)]


def build() -> Any:
    d = new_dashboard(
        "LLM GPU & vLLM",
        "llmops-gpu-vllm",
        "GPUs (llmops gpu-exporter, or NVIDIA's DCGM exporter) and vLLM engines.",
    )
    return add_rows(d.with_variable(model_name_variable()), rows())
