"""``GpuCollector``: the ``prometheus_client`` collector that reads NVML when scraped."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmops.gpu_exporter.nvml import (
    NvmlModule,
    read_memory,
    read_power,
    read_processes,
    read_temperature,
    read_utilization,
    top_processes,
)
from llmops.gpu_exporter.session import NvmlSession, ReinitNeeded

_GPU_LABELS = ["gpu", "uuid"]
_PROCESS_LABELS = ["gpu", "uuid", "pid", "process"]
# Bounded values of the ``reading`` label of llm_gpu_scrape_errors_total. A failed NVML initialisation is not
# counted there: it shows as llm_gpu_up 0 (a host without GPUs is a state, not a stream of errors).
# ``busy``: a scrape found NVML still held by an earlier one (a hung NVML call) and gave up waiting.
READINGS = ("handle", "utilization", "memory", "power", "temperature", "processes", "busy")


@dataclass
class _Families:
    """One scrape's metric families, in exposition order."""

    up: GaugeMetricFamily
    count: GaugeMetricFamily
    info: GaugeMetricFamily
    util: GaugeMetricFamily
    mem_used: GaugeMetricFamily
    mem_total: GaugeMetricFamily
    power: GaugeMetricFamily
    temp: GaugeMetricFamily
    procs: GaugeMetricFamily
    proc_mem: GaugeMetricFamily
    duration: GaugeMetricFamily
    errors: CounterMetricFamily

    @classmethod
    def empty(cls) -> _Families:
        g = GaugeMetricFamily
        return cls(
            up=g("llm_gpu_up", "1 when NVML is initialised and answering, 0 otherwise"),
            count=g("llm_gpu_count", "Number of GPUs NVML reports"),
            info=g("llm_gpu_info", "GPU model name, value 1", labels=[*_GPU_LABELS, "name"]),
            util=g(
                "llm_gpu_utilization_ratio",
                "GPU busy time over NVML's sample period, 0..1",
                labels=_GPU_LABELS,
            ),
            mem_used=g("llm_gpu_memory_used_bytes", "GPU memory in use, bytes", labels=_GPU_LABELS),
            mem_total=g("llm_gpu_memory_total_bytes", "GPU memory installed, bytes", labels=_GPU_LABELS),
            power=g("llm_gpu_power_watts", "GPU power draw, watts", labels=_GPU_LABELS),
            temp=g("llm_gpu_temperature_celsius", "GPU core temperature, °C", labels=_GPU_LABELS),
            procs=g("llm_gpu_processes", "Compute processes NVML lists on the GPU", labels=_GPU_LABELS),
            proc_mem=g(
                "llm_gpu_process_memory_used_bytes",
                "GPU memory used by a compute process (the largest ones, capped per GPU), bytes",
                labels=_PROCESS_LABELS,
            ),
            duration=g("llm_gpu_scrape_duration_seconds", "Time this scrape spent reading NVML, seconds"),
            errors=CounterMetricFamily(
                "llm_gpu_scrape_errors", "Failed NVML readings while NVML was up", labels=["reading"]
            ),
        )

    def all(self) -> list[Metric]:
        return [getattr(self, f.name) for f in fields(self)]


class GpuCollector(Collector):
    """Prometheus collector that reads NVML when scraped.

    ``nvml`` is the NVML module (``pynvml`` by default; tests pass a fake with the same functions and error
    classes). ``None`` imports ``pynvml``; when that import fails the collector exports ``llm_gpu_up 0``.
    """

    def __init__(
        self,
        nvml: NvmlModule | None = None,
        *,
        retry_init_seconds: float = 30.0,
        max_processes_per_gpu: int = 8,
        proc_root: str | os.PathLike[str] = "/proc",
        clock: Callable[[], float] = time.monotonic,
        lock_timeout_seconds: float = 2.0,
    ) -> None:
        self.lock_timeout_seconds = lock_timeout_seconds
        self._errors: dict[str, int] = dict.fromkeys(READINGS, 0)
        self._session = NvmlSession(
            nvml, retry_init_seconds=retry_init_seconds, clock=clock, on_error=self._count_error
        )
        self.max_processes_per_gpu = max(0, max_processes_per_gpu)
        self._proc_root = Path(proc_root)
        self._lock = threading.Lock()

    # -- state ------------------------------------------------------------------------------------
    @property
    def retry_init_seconds(self) -> float:
        """The least time between two attempts to initialise NVML (or to open a GPU that failed)."""
        return self._session.retry_init_seconds

    @retry_init_seconds.setter
    def retry_init_seconds(self, seconds: float) -> None:
        self._session.retry_init_seconds = seconds

    @property
    def up(self) -> bool:
        """Whether NVML is initialised and answering."""
        return self._session.up

    @property
    def gpu_count(self) -> int:
        """The number of GPUs whose handles were obtained."""
        return len(self._session.devices)

    @property
    def unavailable_reason(self) -> str | None:
        """Why NVML is not usable, or ``None`` while it is."""
        return self._session.unavailable_reason

    def ensure_initialized(self, wait: bool = True) -> bool:
        """Initialise NVML if not done yet and the retry interval has passed; return whether it is up. Without
        ``wait``, a collector busy in NVML (a scrape in progress, or a hung NVML call) is not waited for."""
        if not self._lock.acquire(blocking=wait):
            return self._session.up
        try:
            return self._session.ensure_up()
        finally:
            self._lock.release()

    def close(self) -> None:
        """Shut NVML down (idempotent)."""
        with self._lock:
            self._session.shutdown()

    def _count_error(self, reading: str) -> None:
        self._errors[reading] += 1

    # -- collector API ----------------------------------------------------------------------------
    def describe(self) -> Iterable[Metric]:
        """Metric families without samples, so registering never touches NVML."""
        return _Families.empty().all()

    def collect(self) -> Iterator[Metric]:
        """Read NVML now and yield the ``llm_gpu_*`` families. A scrape that finds NVML still held by an earlier
        one for ``lock_timeout_seconds`` (a hung NVML call) reports ``llm_gpu_up 0`` instead of waiting: scrapes
        never pile up behind a stuck driver."""
        if not self._lock.acquire(timeout=self.lock_timeout_seconds):
            yield from self._busy_families()
            return
        try:
            families = self._collect_locked()
        finally:
            self._lock.release()
        yield from families

    def _busy_families(self) -> list[Metric]:
        self._errors["busy"] += 1
        return self._with_status(_Families.empty(), up=False)

    def _with_status(self, f: _Families, up: bool) -> list[Metric]:
        """Add ``llm_gpu_up`` and the error counters to ``f``; the families that have samples."""
        f.up.add_metric([], 1.0 if up else 0.0)
        for reading in READINGS:
            f.errors.add_metric([reading], float(self._errors[reading]))
        return [family for family in f.all() if family.samples]

    def _collect_locked(self) -> list[Metric]:
        start = time.perf_counter()
        f = _Families.empty()
        session = self._session
        up = session.ensure_up()
        if up:
            try:
                session.reopen_missing()
                self._collect_devices(f)
            except ReinitNeeded:
                # NVML lost its driver session: export what was read, say down, initialise again later.
                session.lost()
                up = False
        if up:
            f.count.add_metric([], float(session.reported))
        f.duration.add_metric([], time.perf_counter() - start)
        return self._with_status(f, up)

    def _collect_devices(self, f: _Families) -> None:
        read = self._session.read
        for device in self._session.devices:
            labels = device.labels
            f.info.add_metric([*labels, device.name], 1.0)
            util = read(device, "utilization", read_utilization)
            if util is not None:
                f.util.add_metric(labels, float(util.gpu) / 100.0)
            mem = read(device, "memory", read_memory)
            if mem is not None:
                f.mem_used.add_metric(labels, float(mem.used))
                f.mem_total.add_metric(labels, float(mem.total))
            milliwatts = read(device, "power", read_power)
            if milliwatts is not None:
                f.power.add_metric(labels, float(milliwatts) / 1000.0)
            celsius = read(device, "temperature", read_temperature)
            if celsius is not None:
                f.temp.add_metric(labels, float(celsius))
            if self.max_processes_per_gpu > 0:
                procs = read(device, "processes", read_processes)
                if procs is not None:
                    total, top = top_processes(procs, self.max_processes_per_gpu, self._proc_root)
                    f.procs.add_metric(labels, float(total))
                    for pid, name, used in top:
                        f.proc_mem.add_metric([*labels, str(pid), name], float(used))
