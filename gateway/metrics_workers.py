"""The series of a gateway that runs several worker processes (``server.workers``, :mod:`gateway.workers`).

Each worker writes its series to prometheus_client's multiprocess files in the directory its supervisor made
(``PROMETHEUS_MULTIPROC_DIR``), and whichever worker answers ``/metrics`` merges every worker's
(:func:`multiprocess_registry`): counters and histograms summed (a dead worker's files stay, so nothing it counted is
lost), each gauge by its declared ``multiprocess_mode`` (:mod:`gateway.metrics`). The process collectors read only
the process that answers the scrape, so they give way to :class:`WorkerSeries`: a few ``llm_gateway_worker_*``
gauges per worker (label ``pid``, mode ``liveall``: a dead worker's disappear), set every second by the refresher.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, values
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.metrics_values import WorkerValue

REFRESH_SECONDS = 1.0
_collector: Callable[[CollectorRegistry, str], object] = MultiProcessCollector  # (untyped in prometheus_client)
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def use_worker_values() -> None:
    """Keep this worker process's series in its multiprocess files with :class:`WorkerValue`. Call it first thing in
    the worker, before any series exists: series of two value classes in one process would write one file apart."""
    values.ValueClass = WorkerValue


def multiprocess_registry(path: str) -> CollectorRegistry:
    """The registry ``/metrics`` serves with several workers: every worker's files in ``path``, merged.

    Refuses to start when prometheus_client keeps values in this process's memory: ``PROMETHEUS_MULTIPROC_DIR`` must
    be in the environment before prometheus_client is first imported (the supervisor starts each worker so)."""
    if values.ValueClass is values.MutexValue:
        raise RuntimeError(
            "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set: this worker's series would stay "
            "in its own memory and /metrics would miss them"
        )
    registry = CollectorRegistry()
    _collector(registry, path)
    return registry


def _resident_bytes() -> float | None:
    """This process's resident memory (Linux ``/proc/self/statm``), or None where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return float(int(statm.read().split()[1]) * _PAGE_SIZE)
    except (OSError, IndexError, ValueError):
        return None


class WorkerSeries:
    """This worker's own series, each with the label ``pid`` (``liveall``), and the count of replaced workers."""

    def __init__(self, requests: Counter, registry: CollectorRegistry) -> None:
        self._requests_counter = requests
        self.requests = Gauge(
            "llm_gateway_worker_requests",
            "Several workers: requests this worker process has handled since it started (llm_gateway_requests_total "
            "counts every worker's, dead ones' included).",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.cpu = Gauge(
            "llm_gateway_worker_cpu_seconds",
            "Several workers: user and system CPU time this worker process has used.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.memory = Gauge(
            "llm_gateway_worker_resident_memory_bytes",
            "Several workers: this worker process's resident memory.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.start_time = Gauge(
            "llm_gateway_worker_start_time_seconds",
            "Several workers: when this worker process started (Unix time).",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.restarts = Counter(
            "llm_gateway_worker_restarts",
            "Several workers: worker processes started to replace one that died.",
            registry=registry,
        )
        self.start_time.set(time.time())
        self.refresh()

    def handled(self) -> float:
        """Requests this process has counted in ``llm_gateway_requests_total`` (its own values, not the merge)."""
        return sum(
            sample.value
            for family in self._requests_counter.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )

    def refresh(self) -> None:
        self.requests.set(self.handled())
        self.cpu.set(time.process_time())
        memory = _resident_bytes()
        if memory is not None:
            self.memory.set(memory)
