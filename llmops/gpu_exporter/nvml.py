"""NVML at arm's length: error classification, device handles and the device readings.

Every function takes the NVML module (``pynvml``, or a test's stand-in with the same functions and error classes)
as its first argument; none keeps state. ``pynvml`` itself is imported only by ``load_pynvml``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

# ``pynvml`` or a stand-in with its functions and error classes (pynvml ships no type information).
NvmlModule: TypeAlias = Any

# NVML return codes (nvml.h); used where the module in hand lacks the matching exception classes.
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
# Errors after which the NVML session is useless: shut it down and initialise again later.
REINIT_CODES = frozenset({NVML_ERROR_UNINITIALIZED, NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIB_RM_VERSION_MISMATCH})

# (pid, process name, GPU memory used in bytes)
ProcessReading: TypeAlias = tuple[int, str, int]


def load_pynvml() -> tuple[NvmlModule | None, str | None]:
    """Import ``pynvml``: ``(module, None)``, or ``(None, why)`` where it is not installed."""
    try:
        import pynvml  # optional at run time: a GPU-less host may lack it
    except ImportError as error:
        return None, f"cannot import pynvml ({error}); install nvidia-ml-py"
    return pynvml, None


# -- errors ----------------------------------------------------------------------------------------
def error_code(error: BaseException) -> int | None:
    """The NVML return code an error carries in ``value``, if any."""
    value = getattr(error, "value", None)
    return value if isinstance(value, int) else None


def describe_error(error: BaseException) -> str:
    """``Type: message`` for a log line, never raising."""
    try:
        text = str(error)
    except Exception:  # pynvml's __str__ may itself call into NVML
        text = ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _error_class(nvml: NvmlModule, name: str) -> type[BaseException] | None:
    cls = getattr(nvml, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None


def is_nvml_exception(nvml: NvmlModule, error: BaseException) -> bool:
    """Whether ``error`` is one of the module's ``NVMLError``s."""
    base = _error_class(nvml, "NVMLError")
    return base is not None and isinstance(error, base)


def is_nvml_error(nvml: NvmlModule, error: BaseException, class_name: str, code: int) -> bool:
    """Whether ``error`` is the module's ``class_name``, or (where it lacks that class) an NVMLError with ``code``."""
    cls = _error_class(nvml, class_name)
    if cls is not None and isinstance(error, cls):
        return True
    return error_code(error) == code and is_nvml_exception(nvml, error)


def is_unsupported(nvml: NvmlModule, error: BaseException) -> bool:
    """Whether NVML says this GPU or driver lacks the call (NotSupported, FunctionNotFound): not a fault."""
    return is_nvml_error(nvml, error, "NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED) or is_nvml_error(
        nvml, error, "NVMLError_FunctionNotFound", NVML_ERROR_FUNCTION_NOT_FOUND
    )


def is_version_missing(nvml: NvmlModule, error: BaseException) -> bool:
    """Whether the driver lacks the version of the call pynvml made (``NVMLLibraryMismatchError``)."""
    mismatch = _error_class(nvml, "NVMLLibraryMismatchError")
    return mismatch is not None and isinstance(error, mismatch)


def needs_reinit(nvml: NvmlModule, error: BaseException) -> bool:
    """Whether ``error`` invalidates the NVML session (driver unloaded, version mismatch)."""
    return error_code(error) in REINIT_CODES and is_nvml_exception(nvml, error)


def init_failure_reason(nvml: NvmlModule, error: BaseException) -> str:
    """Why ``nvmlInit`` (or the device count after it) failed, in words, with the error."""
    if is_nvml_error(nvml, error, "NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND):
        why = "the NVIDIA driver's NVML library (libnvidia-ml.so.1) is not installed or not visible"
    elif is_nvml_error(nvml, error, "NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED):
        why = "the NVIDIA driver is not loaded"
    else:
        why = "NVML failed"
    return f"{why} ({describe_error(error)})"


# -- devices ---------------------------------------------------------------------------------------
def text(value: object) -> str:
    """NVML strings arrive as bytes or str depending on the pynvml version."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


@dataclass
class Device:
    """An opened GPU: its NVML handle and identity, and what it turned out not to support."""

    index: int
    handle: Any
    uuid: str
    name: str
    unsupported: set[str] = field(default_factory=set)
    memory_v1: bool = False  # the driver has no nvmlDeviceGetMemoryInfo_v2

    @property
    def labels(self) -> list[str]:
        """The ``gpu`` and ``uuid`` label values."""
        return [str(self.index), self.uuid]


def open_device(nvml: NvmlModule, index: int) -> Device:
    """The GPU at ``index``; raises where its handle or UUID cannot be read (its name falls back to ``unknown``)."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    uuid = text(nvml.nvmlDeviceGetUUID(handle))
    try:
        name = text(nvml.nvmlDeviceGetName(handle))
    except Exception:
        name = "unknown"
    return Device(index=index, handle=handle, uuid=uuid, name=name)


def driver_version(nvml: NvmlModule) -> str:
    """`` (driver X)`` for a log line, or empty where NVML does not say."""
    try:
        return f" (driver {text(nvml.nvmlSystemGetDriverVersion())})"
    except Exception:
        return ""


# -- readings: each takes (nvml, device) and raises what NVML raises ------------------------------
def read_utilization(nvml: NvmlModule, device: Device) -> Any:
    """Utilisation rates; ``.gpu`` is the percentage of NVML's sample period the GPU was busy."""
    return nvml.nvmlDeviceGetUtilizationRates(device.handle)


def read_power(nvml: NvmlModule, device: Device) -> Any:
    """Power draw in milliwatts."""
    return nvml.nvmlDeviceGetPowerUsage(device.handle)


def read_processes(nvml: NvmlModule, device: Device) -> Any:
    """The compute processes on the GPU (objects with ``pid`` and ``usedGpuMemory``)."""
    return nvml.nvmlDeviceGetComputeRunningProcesses(device.handle)


def read_memory(nvml: NvmlModule, device: Device) -> Any:
    """Memory info: the v2 call where the driver has it (its ``used`` leaves out driver-reserved memory, as
    nvidia-smi and DCGM do), else v1 (remembered on ``device``)."""
    version = getattr(nvml, "nvmlMemory_v2", None)
    if version is not None and not device.memory_v1:
        try:
            return nvml.nvmlDeviceGetMemoryInfo(device.handle, version=version)
        except TypeError:  # a pynvml without the version argument
            device.memory_v1 = True
        except Exception as error:
            if not is_unsupported(nvml, error):
                raise
            device.memory_v1 = True
    return nvml.nvmlDeviceGetMemoryInfo(device.handle)


def read_temperature(nvml: NvmlModule, device: Device) -> Any:
    """The GPU core temperature (°C), through ``nvmlDeviceGetTemperatureV`` where the older call is gone."""
    handle = device.handle
    sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
    newer = getattr(nvml, "nvmlDeviceGetTemperatureV", None)
    if not hasattr(nvml, "nvmlDeviceGetTemperature") and newer is not None:
        return newer(handle, sensor)  # nvmlDeviceGetTemperature is deprecated and will go away
    try:
        return nvml.nvmlDeviceGetTemperature(handle, sensor)
    except Exception as error:
        if newer is not None and error_code(error) == NVML_ERROR_FUNCTION_NOT_FOUND:
            return newer(handle, sensor)
        raise


def read_process_name(proc_root: Path, pid: int) -> str:
    """The process's ``comm`` (its executable's short name), or ``unknown`` where /proc does not tell."""
    try:
        name = (proc_root / str(pid) / "comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "unknown"
    return name[:64] or "unknown"


def top_processes(procs: Iterable[Any], limit: int, proc_root: Path) -> tuple[int, list[ProcessReading]]:
    """From ``nvmlDeviceGetComputeRunningProcesses``: how many distinct processes, and the ``limit`` using the
    most memory (largest first, then by pid) with their names."""
    known: dict[int, int] = {}
    for proc in procs:
        pid = getattr(proc, "pid", None)
        used = getattr(proc, "usedGpuMemory", None)
        if not isinstance(pid, int):
            continue
        # A process may appear once per MIG instance or context: add its memory up.
        known[pid] = known.get(pid, 0) + (int(used) if isinstance(used, int) and used >= 0 else 0)
    top = sorted(known.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return len(known), [(pid, read_process_name(proc_root, pid), used) for pid, used in top]
