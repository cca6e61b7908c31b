"""``llmops gpu-exporter`` against real NVIDIA GPUs (``pytest -m gpu``; skipped where NVML finds no GPU).

Runs on a bare GPU host that has only pytest, prometheus_client, nvidia-ml-py and torch (a lent GPU machine has
exactly these; ``tests/gpu/test_gpu_standalone.py`` checks that nothing else is needed). From the repository root:

    python3 -m pytest -p no:cacheprovider -m gpu -v -rsP tests/gpu/test_gpu_real.py

``-rP`` prints what each passing test scraped, for the record.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmops.gpu_exporter import GpuCollector, make_exporter_server

pytestmark = pytest.mark.gpu

GIB = 1024**3
# Data-centre GPUs that have far more than 10 GiB: their totals must come through as such.
_BIG_GPUS = ("H100", "H200", "H800", "A100", "A800", "B200", "GH200", "L40", "A6000")


@dataclass(frozen=True)
class RealGpu:
    index: int
    uuid: str
    name: str
    memory_total: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.fixture(scope="module")
def real_gpus() -> list[RealGpu]:
    """The GPUs NVML sees here, read directly with pynvml; skips the module where there are none."""
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py (pynvml) is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        why = f"{type(error).__name__}: {error}"
        pytest.skip(f"NVML is not usable on this host ({why}): no NVIDIA GPU to test")
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(
                RealGpu(
                    index=index,
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_total=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                )
            )
    finally:
        pynvml.nvmlShutdown()
    if not gpus:
        pytest.skip("NVML works but reports no GPU on this host")
    return gpus


@contextmanager
def running_exporter() -> Iterator[str]:
    collector = GpuCollector()
    server, _ = make_exporter_server("127.0.0.1", 0, collector=collector)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        collector.close()
        thread.join(timeout=5)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str) -> Samples:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        body = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def test_real_gpus_are_exported(real_gpus: list[RealGpu]) -> None:
    with running_exporter() as base:
        samples = scrape(base)
        samples = scrape(base)  # the second scrape runs on cached handles
    for (metric, labels), reading in sorted(samples.items(), key=lambda item: (item[0][0], sorted(item[0][1]))):
        if metric.startswith("llm_gpu_"):
            print(metric, dict(sorted(labels)), reading)
    assert value(samples, "llm_gpu_up") == 1.0
    assert value(samples, "llm_gpu_count") == len(real_gpus)
    duration = value(samples, "llm_gpu_scrape_duration_seconds")
    assert duration is not None and duration < 1.0
    for gpu in real_gpus:
        labels = {"gpu": str(gpu.index), "uuid": gpu.uuid}
        assert gpu.uuid.startswith(("GPU-", "MIG-"))
        total = value(samples, "llm_gpu_memory_total_bytes", **labels)
        assert total == gpu.memory_total, f"GPU {gpu.index} ({gpu.name}) memory total"
        assert total > GIB
        if any(model in gpu.name for model in _BIG_GPUS):
            assert total > 10 * GIB, f"{gpu.name} reports only {total} bytes"
        used = value(samples, "llm_gpu_memory_used_bytes", **labels)
        assert used is not None and 0 <= used <= total
        assert value(samples, "llm_gpu_info", **labels, name=gpu.name) == 1.0
        utilization = value(samples, "llm_gpu_utilization_ratio", **labels)
        if utilization is not None:  # not supported on MIG-enabled GPUs
            assert 0.0 <= utilization <= 1.0
        power = value(samples, "llm_gpu_power_watts", **labels)
        if power is not None:  # watts, not milliwatts
            assert 1.0 < power < 2000.0
        temperature = value(samples, "llm_gpu_temperature_celsius", **labels)
        if temperature is not None:
            assert 0.0 < temperature < 120.0


def _nvml_uuid_of_torch_device(torch: Any, real_gpus: list[RealGpu]) -> RealGpu | None:
    """Match CUDA device 0 to its NVML index by UUID (CUDA and NVML may number GPUs differently)."""
    uuid = str(getattr(torch.cuda.get_device_properties(0), "uuid", "") or "")
    if not uuid:
        return None
    for gpu in real_gpus:
        if gpu.uuid.endswith(uuid):
            return gpu
    return None


def test_utilization_rises_under_matmul_load(real_gpus: list[RealGpu]) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed: no GPU load to generate")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    target = _nvml_uuid_of_torch_device(torch, real_gpus)

    stop = threading.Event()
    started = threading.Event()
    failure: list[BaseException] = []

    def load() -> None:
        try:
            a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
            b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
            c = torch.empty_like(a)
            started.set()
            while not stop.is_set():
                for _ in range(8):
                    torch.matmul(a, b, out=c)
                torch.cuda.synchronize()
        except BaseException as error:  # reported by the test, not lost in the thread
            failure.append(error)
            started.set()

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    peak = 0.0
    readings = 0  # utilisation samples seen (NVML gives none for a MIG-enabled GPU)
    seen_pid: dict[str, str] | None = None
    try:
        assert started.wait(timeout=60), "the matmul loop did not start"
        assert not failure, f"the matmul loop failed: {failure}"
        with running_exporter() as base:
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and peak <= 0.5:
                time.sleep(0.5)
                samples = scrape(base)
                gpus = [target] if target is not None else real_gpus
                for gpu in gpus:
                    labels = {"gpu": str(gpu.index), "uuid": gpu.uuid}
                    utilization = value(samples, "llm_gpu_utilization_ratio", **labels)
                    if utilization is not None:
                        readings += 1
                        peak = max(peak, utilization)
                for metric, label_set in samples:
                    process = dict(label_set)
                    if metric == "llm_gpu_process_memory_used_bytes" and process["pid"] == str(os.getpid()):
                        seen_pid = process
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not failure, f"the matmul loop failed: {failure}"
    if readings == 0:
        pytest.skip("NVML gives no utilisation reading for this GPU (MIG enabled?): nothing to check")
    print(f"peak llm_gpu_utilization_ratio under the matmul loop: {peak}; this process seen: {seen_pid}")
    where = f"GPU {target.index} ({target.uuid})" if target is not None else "any GPU"
    assert peak > 0.5, f"llm_gpu_utilization_ratio on {where} peaked at {peak} under a matmul loop"
    if seen_pid is not None:  # NVML lists host PIDs; inside a container this process may not be matched
        with open("/proc/self/comm", encoding="utf-8") as comm:
            assert seen_pid["process"] == comm.read().strip()
