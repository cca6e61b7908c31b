"""NVML GPU exporter for Prometheus: ``llmops gpu-exporter``.

A custom ``prometheus_client`` collector reads NVML (``nvidia-ml-py``, imported as ``pynvml``) at scrape
time and exports the ``llm_gpu_*`` series of docs/metrics.md. The cost of a scrape is bounded: NVML is initialised
once (a failed initialisation is retried at most every ``retry_init_seconds``), device handles and UUIDs are
cached, a reading a GPU does not support is asked for once and then skipped, and at most
``max_processes_per_gpu`` processes are exported per GPU. A reading that fails skips that reading for that
GPU; the scrape still succeeds. Without NVIDIA's library or driver (or without ``pynvml``) the exporter
still starts, says so in one log line and exports ``llm_gpu_up 0``.

HTTP: ``GET /metrics`` (Prometheus text or OpenMetrics), ``GET /health`` (JSON, 200 while the process serves).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from types import ModuleType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "DEFAULT_PORT",
    "GpuCollector",
    "make_exporter_server",
    "serve",
]

log = logging.getLogger("llmops.gpu_exporter")

DEFAULT_PORT = 9835
_GPU_LABELS = ["gpu", "uuid"]
_PROCESS_LABELS = ["gpu", "uuid", "pid", "process"]
# Bounded values of the ``reading`` label of llm_gpu_scrape_errors_total. A failed NVML initialisation is not
# counted there: it shows as llm_gpu_up 0 (a host without GPUs is a state, not a stream of errors).
# ``busy``: a scrape found NVML still held by an earlier one (a hung NVML call) and gave up waiting.
READINGS = ("handle", "utilization", "memory", "power", "temperature", "processes", "busy")

# NVML return codes (nvml.h); used where the module in hand lacks the matching exception classes.
_NVML_ERROR_UNINITIALIZED = 1
_NVML_ERROR_NOT_SUPPORTED = 3
_NVML_ERROR_DRIVER_NOT_LOADED = 9
_NVML_ERROR_LIBRARY_NOT_FOUND = 12
_NVML_ERROR_FUNCTION_NOT_FOUND = 13
_NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
# Errors after which the NVML session is useless: shut it down and initialise again later.
_REINIT_CODES = {
    _NVML_ERROR_UNINITIALIZED,
    _NVML_ERROR_DRIVER_NOT_LOADED,
    _NVML_ERROR_LIB_RM_VERSION_MISMATCH,
}


def _error_code(error: BaseException) -> int | None:
    value = getattr(error, "value", None)
    return value if isinstance(value, int) else None


def _describe_error(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # pynvml's __str__ may itself call into NVML
        text = ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _text(value: Any) -> str:
    """NVML strings arrive as bytes or str depending on the pynvml version."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _read_process_name(proc_root: Path, pid: int) -> str:
    """The process's ``comm`` (its executable's short name), or ``unknown`` where /proc does not tell."""
    try:
        name = (proc_root / str(pid) / "comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "unknown"
    return name[:64] or "unknown"


@dataclass
class _Device:
    index: int
    handle: Any
    uuid: str
    name: str
    unsupported: set[str] = field(default_factory=set)
    memory_v1: bool = False  # the driver has no nvmlDeviceGetMemoryInfo_v2

    @property
    def labels(self) -> list[str]:
        return [str(self.index), self.uuid]


class GpuCollector(Collector):
    """Prometheus collector that reads NVML when scraped.

    ``nvml`` is the NVML module (``pynvml`` by default; tests pass a fake with the same functions and error
    classes). ``None`` imports ``pynvml``; when that import fails the collector exports ``llm_gpu_up 0``.
    """

    def __init__(
        self,
        nvml: ModuleType | Any | None = None,
        *,
        retry_init_seconds: float = 30.0,
        max_processes_per_gpu: int = 8,
        proc_root: str | os.PathLike[str] = "/proc",
        clock: Callable[[], float] = time.monotonic,
        lock_timeout_seconds: float = 2.0,
    ) -> None:
        self._nvml = nvml
        self.lock_timeout_seconds = lock_timeout_seconds
        self._import_error: str | None = None
        if nvml is None:
            try:
                import pynvml  # optional at run time: a GPU-less host may lack it
            except ImportError as error:
                self._import_error = f"cannot import pynvml ({error}); install nvidia-ml-py"
            else:
                self._nvml = pynvml
        self.retry_init_seconds = retry_init_seconds
        self.max_processes_per_gpu = max(0, max_processes_per_gpu)
        self._proc_root = Path(proc_root)
        self._clock = clock
        self._lock = threading.Lock()
        self._initialized = False
        self._last_init_attempt: float | None = None
        self._last_init_error: str | None = None
        self._unavailable_logged = False
        self._devices: list[_Device] = []
        self._reported = 0  # GPUs NVML reports (some may have failed to open)
        self._last_reopen = 0.0
        self._errors: dict[str, int] = dict.fromkeys(READINGS, 0)
        self._warned: set[tuple[int, str, str]] = set()

    # -- state ------------------------------------------------------------------------------------
    @property
    def up(self) -> bool:
        """Whether NVML is initialised and answering."""
        return self._initialized

    @property
    def gpu_count(self) -> int:
        """The number of GPUs whose handles were obtained."""
        return len(self._devices)

    @property
    def unavailable_reason(self) -> str | None:
        """Why NVML is not usable, or ``None`` while it is."""
        if self._initialized:
            return None
        return self._import_error or self._last_init_error

    def ensure_initialized(self, wait: bool = True) -> bool:
        """Initialise NVML if not done yet and the retry interval has passed; return whether it is up. Without
        ``wait``, a collector busy in NVML (a scrape in progress, or a hung NVML call) is not waited for."""
        if not self._lock.acquire(blocking=wait):
            return self._initialized
        try:
            return self._ensure_initialized()
        finally:
            self._lock.release()

    def close(self) -> None:
        """Shut NVML down (idempotent)."""
        with self._lock:
            self._shutdown()

    def _error_class(self, name: str) -> type[BaseException] | None:
        cls = getattr(self._nvml, name, None)
        return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None

    def _is_nvml_error(self, error: BaseException, class_name: str, code: int) -> bool:
        cls = self._error_class(class_name)
        if cls is not None and isinstance(error, cls):
            return True
        return _error_code(error) == code and self._is_nvml_exception(error)

    def _is_nvml_exception(self, error: BaseException) -> bool:
        base = self._error_class("NVMLError")
        return base is not None and isinstance(error, base)

    def _unsupported(self, error: BaseException) -> bool:
        """Whether NVML says this GPU or driver lacks the call (NotSupported, FunctionNotFound): not a fault."""
        return self._is_nvml_error(error, "NVMLError_NotSupported", _NVML_ERROR_NOT_SUPPORTED) or self._is_nvml_error(
            error, "NVMLError_FunctionNotFound", _NVML_ERROR_FUNCTION_NOT_FOUND
        )

    def _ensure_initialized(self) -> bool:
        if self._initialized:
            return True
        if self._nvml is None:
            if not self._unavailable_logged:
                log.warning("llmops gpu-exporter: %s; exporting llm_gpu_up 0", self._import_error)
                self._unavailable_logged = True
            return False
        now = self._clock()
        if self._last_init_attempt is not None and now - self._last_init_attempt < self.retry_init_seconds:
            return False
        self._last_init_attempt = now
        try:
            self._nvml.nvmlInit()
        except Exception as error:
            self._note_init_failure(error)
            return False
        try:
            count = int(self._nvml.nvmlDeviceGetCount())
        except Exception as error:
            self._note_init_failure(error)
            self._safe_shutdown()
            return False
        self._reported = count
        self._devices = [device for index in range(count) if (device := self._open_device(index)) is not None]
        self._last_reopen = now
        self._initialized = True
        self._last_init_error = None
        self._unavailable_logged = False
        driver = self._driver_version()
        if self._devices:
            names = ", ".join(f"{d.index}: {d.name} ({d.uuid})" for d in self._devices)
            log.info("llmops gpu-exporter: NVML up%s, %d GPU(s): %s", driver, len(self._devices), names)
        else:
            log.warning("llmops gpu-exporter: NVML up%s but it reports no GPU; llm_gpu_count is 0", driver)
        return True

    def _note_init_failure(self, error: BaseException) -> None:
        if self._is_nvml_error(error, "NVMLError_LibraryNotFound", _NVML_ERROR_LIBRARY_NOT_FOUND):
            why = "the NVIDIA driver's NVML library (libnvidia-ml.so.1) is not installed or not visible"
        elif self._is_nvml_error(error, "NVMLError_DriverNotLoaded", _NVML_ERROR_DRIVER_NOT_LOADED):
            why = "the NVIDIA driver is not loaded"
        else:
            why = "NVML failed"
        reason = f"{why} ({_describe_error(error)})"
        if reason != self._last_init_error:
            # One clear line per distinct reason; repeated identical failures go to debug only.
            log.warning(
                "llmops gpu-exporter: no GPU readings on this host: %s; exporting llm_gpu_up 0, "
                "retrying at most every %gs",
                reason,
                self.retry_init_seconds,
            )
        else:
            log.debug("llmops gpu-exporter: NVML init failed again: %s", reason)
        self._last_init_error = reason

    def _open_device(self, index: int) -> _Device | None:
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        except Exception as error:
            self._errors["handle"] += 1
            log.warning("llmops gpu-exporter: GPU %d skipped: %s", index, _describe_error(error))
            return None
        try:
            name = _text(nvml.nvmlDeviceGetName(handle))
        except Exception:
            name = "unknown"
        return _Device(index=index, handle=handle, uuid=uuid, name=name)

    def _driver_version(self) -> str:
        try:
            return f" (driver {_text(self._nvml.nvmlSystemGetDriverVersion())})"
        except Exception:
            return ""

    def _safe_shutdown(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception as error:
            log.debug("llmops gpu-exporter: nvmlShutdown failed: %s", _describe_error(error))

    def _shutdown(self) -> None:
        if self._initialized:
            self._safe_shutdown()
        self._initialized = False
        self._devices = []
        self._reported = 0

    def _reopen_missing(self) -> None:
        """Try again, at most every ``retry_init_seconds``, the GPUs whose handle failed (they may come back)."""
        if len(self._devices) >= self._reported:
            return
        now = self._clock()
        if now - self._last_reopen < self.retry_init_seconds:
            return
        self._last_reopen = now
        present = {device.index for device in self._devices}
        reopened = [d for i in range(self._reported) if i not in present and (d := self._open_device(i)) is not None]
        if reopened:
            log.info("llmops gpu-exporter: GPU(s) %s opened", ", ".join(str(d.index) for d in reopened))
            self._devices = sorted([*self._devices, *reopened], key=lambda d: d.index)

    # -- readings ---------------------------------------------------------------------------------
    def _read(self, device: _Device, reading: str, fn: Callable[[], Any]) -> Any | None:
        """Call one NVML reading; on failure count it, log it once, and return ``None``."""
        if reading in device.unsupported:
            return None
        try:
            return fn()
        except Exception as error:
            mismatch = self._error_class("NVMLLibraryMismatchError")  # the driver lacks this call's version
            if self._unsupported(error) or (mismatch is not None and isinstance(error, mismatch)):
                # A property of this GPU or driver, not a fault: stop asking until NVML is initialised again.
                device.unsupported.add(reading)
                log.info("llmops gpu-exporter: GPU %d does not support %s; skipped", device.index, reading)
                return None
            self._errors[reading] += 1
            key = (device.index, reading, type(error).__name__)
            if key not in self._warned:
                self._warned.add(key)
                log.warning(
                    "llmops gpu-exporter: GPU %d %s reading failed: %s",
                    device.index,
                    reading,
                    _describe_error(error),
                )
            if _error_code(error) in _REINIT_CODES and self._is_nvml_exception(error):
                raise _ReinitNeeded(error) from error
            return None

    def _memory(self, device: _Device) -> Any:
        """Memory info: the v2 call where the driver has it (its ``used`` leaves out driver-reserved memory, as
        nvidia-smi and DCGM do), else v1."""
        nvml = self._nvml
        version = getattr(nvml, "nvmlMemory_v2", None)
        if version is not None and not device.memory_v1:
            try:
                return nvml.nvmlDeviceGetMemoryInfo(device.handle, version=version)
            except TypeError:  # a pynvml without the version argument
                device.memory_v1 = True
            except Exception as error:
                if not self._unsupported(error):
                    raise
                device.memory_v1 = True
        return nvml.nvmlDeviceGetMemoryInfo(device.handle)

    def _temperature(self, handle: Any) -> int:
        nvml = self._nvml
        sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        newer = getattr(nvml, "nvmlDeviceGetTemperatureV", None)
        if not hasattr(nvml, "nvmlDeviceGetTemperature") and newer is not None:
            return newer(handle, sensor)  # nvmlDeviceGetTemperature is deprecated and will go away
        try:
            return nvml.nvmlDeviceGetTemperature(handle, sensor)
        except Exception as error:
            if newer is not None and _error_code(error) == _NVML_ERROR_FUNCTION_NOT_FOUND:
                return newer(handle, sensor)
            raise

    def _processes(self, device: _Device) -> tuple[int, list[tuple[int, str, int]]] | None:
        nvml, handle = self._nvml, device.handle
        procs = self._read(device, "processes", lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        if procs is None:
            return None
        known: dict[int, int] = {}
        for proc in procs:
            pid = getattr(proc, "pid", None)
            used = getattr(proc, "usedGpuMemory", None)
            if not isinstance(pid, int):
                continue
            # A process may appear once per MIG instance or context: add its memory up.
            known[pid] = known.get(pid, 0) + (int(used) if isinstance(used, int) and used >= 0 else 0)
        top = sorted(known.items(), key=lambda item: (-item[1], item[0]))[: self.max_processes_per_gpu]
        return len(known), [(pid, _read_process_name(self._proc_root, pid), used) for pid, used in top]

    # -- collector API ----------------------------------------------------------------------------
    def describe(self) -> Iterable[Metric]:
        """Metric families without samples, so registering never touches NVML."""
        return list(self._families().values())

    def _families(self) -> dict[str, Metric]:
        g = GaugeMetricFamily
        return {
            "up": g("llm_gpu_up", "1 when NVML is initialised and answering, 0 otherwise"),
            "count": g("llm_gpu_count", "Number of GPUs NVML reports"),
            "info": g("llm_gpu_info", "GPU model name, value 1", labels=[*_GPU_LABELS, "name"]),
            "util": g(
                "llm_gpu_utilization_ratio",
                "GPU busy time over NVML's sample period, 0..1",
                labels=_GPU_LABELS,
            ),
            "mem_used": g("llm_gpu_memory_used_bytes", "GPU memory in use, bytes", labels=_GPU_LABELS),
            "mem_total": g("llm_gpu_memory_total_bytes", "GPU memory installed, bytes", labels=_GPU_LABELS),
            "power": g("llm_gpu_power_watts", "GPU power draw, watts", labels=_GPU_LABELS),
            "temp": g("llm_gpu_temperature_celsius", "GPU core temperature, °C", labels=_GPU_LABELS),
            "procs": g("llm_gpu_processes", "Compute processes NVML lists on the GPU", labels=_GPU_LABELS),
            "proc_mem": g(
                "llm_gpu_process_memory_used_bytes",
                "GPU memory used by a compute process (the largest ones, capped per GPU), bytes",
                labels=_PROCESS_LABELS,
            ),
            "duration": g("llm_gpu_scrape_duration_seconds", "Time this scrape spent reading NVML, seconds"),
            "errors": CounterMetricFamily(
                "llm_gpu_scrape_errors", "Failed NVML readings while NVML was up", labels=["reading"]
            ),
        }

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
        return self._with_status(self._families(), up=False)

    def _with_status(self, f: dict[str, Metric], up: bool) -> list[Metric]:
        """Add ``llm_gpu_up`` and the error counters to ``f``; the families that have samples."""
        f["up"].add_metric([], 1.0 if up else 0.0)
        for reading in READINGS:
            f["errors"].add_metric([reading], float(self._errors[reading]))
        return [family for family in f.values() if family.samples]

    def _collect_locked(self) -> list[Metric]:
        start = time.perf_counter()
        f = self._families()
        up = self._ensure_initialized()
        if up:
            try:
                self._reopen_missing()
                self._collect_devices(f)
            except _ReinitNeeded:
                # NVML lost its driver session: export what was read, say down, initialise again later.
                self._shutdown()
                self._last_init_attempt = self._clock()
                up = False
        if up:
            f["count"].add_metric([], float(self._reported))
        f["duration"].add_metric([], time.perf_counter() - start)
        return self._with_status(f, up)

    def _collect_devices(self, f: dict[str, Metric]) -> None:
        nvml = self._nvml
        for device in self._devices:
            labels = device.labels
            h = device.handle
            f["info"].add_metric([*labels, device.name], 1.0)
            util = self._read(device, "utilization", lambda h=h: nvml.nvmlDeviceGetUtilizationRates(h))
            if util is not None:
                f["util"].add_metric(labels, float(util.gpu) / 100.0)
            mem = self._read(device, "memory", lambda device=device: self._memory(device))
            if mem is not None:
                f["mem_used"].add_metric(labels, float(mem.used))
                f["mem_total"].add_metric(labels, float(mem.total))
            milliwatts = self._read(device, "power", lambda h=h: nvml.nvmlDeviceGetPowerUsage(h))
            if milliwatts is not None:
                f["power"].add_metric(labels, float(milliwatts) / 1000.0)
            celsius = self._read(device, "temperature", lambda h=h: self._temperature(h))
            if celsius is not None:
                f["temp"].add_metric(labels, float(celsius))
            if self.max_processes_per_gpu > 0:
                processes = self._processes(device)
                if processes is not None:
                    total, top = processes
                    f["procs"].add_metric(labels, float(total))
                    for pid, name, used in top:
                        f["proc_mem"].add_metric([*labels, str(pid), name], float(used))


class _ReinitNeeded(Exception):
    """NVML answered with an error that invalidates the session (driver unloaded, version mismatch)."""


# -- HTTP ----------------------------------------------------------------------------------------
class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("llmops gpu-exporter: %s %s", self.address_string(), format % args)


def _make_app(registry: CollectorRegistry, collector: GpuCollector) -> Callable[..., Iterable[bytes]]:
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Allow", "GET, HEAD")])
            return [b"method not allowed\n"]
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/health":
            collector.ensure_initialized(wait=False)  # bounded by the retry interval; never waits for a scrape
            body = json.dumps(
                {
                    "status": "ok",
                    "nvml": collector.up,
                    "gpus": collector.gpu_count,
                    "reason": collector.unavailable_reason,
                }
            ).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]
        if path == "/":
            body = b"llmops gpu-exporter: metrics at /metrics, health at /health\n"
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def make_exporter_server(
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    *,
    collector: GpuCollector | None = None,
) -> tuple[WSGIServer, GpuCollector]:
    """Bind the exporter's HTTP server (port 0 picks a free one) without serving yet.

    Call ``server.serve_forever()`` (in a thread if needed), then ``server.shutdown()`` and
    ``collector.close()``.
    """
    collector = collector if collector is not None else GpuCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server_class: type[_ThreadingServer] = _ThreadingServer
    if ":" in host:  # an IPv6 address such as "::"
        server_class = type("_ThreadingServer6", (_ThreadingServer,), {"address_family": socket.AF_INET6})
    server = make_server(host, port, _make_app(registry, collector), server_class, _QuietHandler)
    return server, collector


def serve(host: str = "0.0.0.0", port: int = DEFAULT_PORT, *, nvml: ModuleType | Any | None = None) -> None:
    """Run the exporter until interrupted (Ctrl-C or SIGTERM). Blocks."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server, collector = make_exporter_server(host, port, collector=GpuCollector(nvml))
    except OSError as error:
        raise SystemExit(f"llmops gpu-exporter: cannot listen on {host}:{port}: {error}") from error
    collector.ensure_initialized()  # say at start whether there are GPUs, not at the first scrape

    def _stop(signum: int, _frame: Any) -> None:
        log.info("llmops gpu-exporter: signal %d, stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    bound_host, bound_port = server.server_address[:2]
    log.info("llmops gpu-exporter: serving http://%s:%d/metrics", bound_host, bound_port)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        collector.close()
