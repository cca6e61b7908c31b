"""``llmops gpu-exporter`` against real NVIDIA GPUs (``pytest -m gpu``; skipped where NVML finds no GPU).

Runs on a bare GPU host that has only pytest, prometheus_client, nvidia-ml-py and torch (a lent GPU machine has
exactly these; ``tests/gpu/test_gpu_standalone.py`` checks that nothing else is needed). From the repository root:

    python3 -m pytest -p no:cacheprovider -m gpu -v -rsP tests/gpu/test_gpu_real.py

``-rP`` prints what each passing test scraped, for the record: every ``llm_gpu_*`` reading, the peak utilisation
under a matmul loop, power, temperature and memory used idle and under that load, and what a scrape costs.
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


@contextmanager
def matmul_load(torch: Any) -> Iterator[None]:
    """A loop of fp16 8192x8192 matmuls on CUDA device 0 in a thread, running once the block starts, stopped at its
    end; a failure of the loop fails the test (checked at start and at the end)."""
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
    try:
        assert started.wait(timeout=60), "the matmul loop did not start"
        assert not failure, f"the matmul loop failed: {failure}"
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not failure, f"the matmul loop failed: {failure}"


def _cuda(real_gpus: list[RealGpu]) -> tuple[Any, RealGpu | None]:
    torch = pytest.importorskip("torch", reason="torch is not installed: no GPU load to generate")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    return torch, _nvml_uuid_of_torch_device(torch, real_gpus)


def test_utilization_rises_under_matmul_load(real_gpus: list[RealGpu]) -> None:
    torch, target = _cuda(real_gpus)
    peak = 0.0
    readings = 0  # utilisation samples seen (NVML gives none for a MIG-enabled GPU)
    seen_pid: dict[str, str] | None = None
    with matmul_load(torch), running_exporter() as base:
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
    if readings == 0:
        pytest.skip("NVML gives no utilisation reading for this GPU (MIG enabled?): nothing to check")
    print(f"peak llm_gpu_utilization_ratio under the matmul loop: {peak}; this process seen: {seen_pid}")
    where = f"GPU {target.index} ({target.uuid})" if target is not None else "any GPU"
    assert peak > 0.5, f"llm_gpu_utilization_ratio on {where} peaked at {peak} under a matmul loop"
    if seen_pid is not None:  # NVML lists host PIDs; inside a container this process may not be matched
        with open("/proc/self/comm", encoding="utf-8") as comm:
            assert seen_pid["process"] == comm.read().strip()


_MOVES_UP = ("llm_gpu_power_watts", "llm_gpu_temperature_celsius", "llm_gpu_memory_used_bytes")


def test_idle_and_loaded_scrapes_move_the_right_way_and_a_scrape_is_cheap(real_gpus: list[RealGpu]) -> None:
    """Power (watts), temperature and memory used: a scrape under the matmul loop reads more than an idle one (the
    most over up to 15 s of load); and what a scrape costs on the real NVML, over 50 scrapes."""
    torch, target = _cuda(real_gpus)
    gpu = target if target is not None else real_gpus[0]
    labels = {"gpu": str(gpu.index), "uuid": gpu.uuid}
    torch.cuda.empty_cache()  # what earlier tests left cached is not "idle" memory
    with running_exporter() as base:
        time.sleep(2.0)  # the GPU settles after the earlier tests
        idle = scrape(base)
        costs = []
        for _ in range(50):
            started = time.perf_counter()
            samples = scrape(base)
            costs.append((time.perf_counter() - started, value(samples, "llm_gpu_scrape_duration_seconds")))
        before = {name: value(idle, name, **labels) for name in _MOVES_UP}
        loaded: dict[str, float] = {}
        with matmul_load(torch):
            deadline = time.monotonic() + 15.0
            while time.monotonic() < deadline:
                time.sleep(1.0)
                samples = scrape(base)
                for name in _MOVES_UP:
                    reading = value(samples, name, **labels)
                    if reading is not None:
                        loaded[name] = max(loaded.get(name, reading), reading)
                moved = all(before[n] is None or loaded.get(n, 0.0) > (before[n] or 0.0) for n in _MOVES_UP)
                if moved and time.monotonic() > deadline - 10.0:  # and at least 5 s of load, for the temperature
                    break
    walls = sorted(wall for wall, _ in costs)
    inside = sorted(own for _, own in costs if own is not None)
    print(f"GPU {gpu.index} ({gpu.name}) idle: {before}; under load (max): {loaded}")
    print(
        f"a scrape over HTTP: median {walls[len(walls) // 2] * 1e3:.2f} ms, max {walls[-1] * 1e3:.2f} ms; "
        f"llm_gpu_scrape_duration_seconds median {inside[len(inside) // 2] * 1e3:.2f} ms"
    )
    assert inside and inside[len(inside) // 2] < 0.25, "a scrape of the real NVML should take milliseconds"
    for name in _MOVES_UP:
        if before[name] is None:  # not every GPU reports every reading (MIG, some boards)
            continue
        assert name in loaded and loaded[name] > before[name], f"{name}: idle {before[name]}, loaded {loaded}"
    if before["llm_gpu_power_watts"] is not None:  # watts, not milliwatts: an H100/H200 idles at tens of watts
        assert 1.0 < before["llm_gpu_power_watts"] < loaded["llm_gpu_power_watts"] < 2000.0
