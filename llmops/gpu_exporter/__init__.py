"""NVML GPU exporter for Prometheus: ``llmops gpu-exporter``.

A custom ``prometheus_client`` collector reads NVML (``nvidia-ml-py``, imported as ``pynvml``) at scrape
time and exports the ``llm_gpu_*`` series of docs/metrics.md. The cost of a scrape is bounded: NVML is initialised
once (a failed initialisation is retried at most every ``retry_init_seconds``), device handles and UUIDs are
cached, a reading a GPU does not support is asked for once and then skipped, and at most
``max_processes_per_gpu`` processes are exported per GPU. A reading that fails skips that reading for that
GPU; the scrape still succeeds. Without NVIDIA's library or driver (or without ``pynvml``) the exporter
still starts, says so in one log line and exports ``llm_gpu_up 0``.

HTTP: ``GET /metrics`` (Prometheus text or OpenMetrics), ``GET /health`` (JSON, 200 while the process serves).

Modules: ``nvml`` (NVML error classification, device handles and readings), ``session`` (NVML initialisation with
retries and guarded readings), ``collector`` (``GpuCollector``, the Prometheus collector), ``server`` (the HTTP
server and ``serve``). This package imports nothing beyond the standard library and ``prometheus_client``;
``pynvml`` is imported when a collector is made without an NVML module.
"""

from llmops.gpu_exporter.collector import READINGS as READINGS
from llmops.gpu_exporter.collector import GpuCollector
from llmops.gpu_exporter.server import DEFAULT_PORT, make_exporter_server, serve

__all__ = [
    "DEFAULT_PORT",
    "GpuCollector",
    "make_exporter_server",
    "serve",
]
