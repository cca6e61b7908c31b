"""The real-GPU test runs on a bare GPU host, and its checks pass against H200-like NVML readings.

A lent GPU machine has PyTorch, pytest, prometheus_client and nvidia-ml-py, but not this project's other
dependencies (FastAPI, pydantic, redis, OpenTelemetry, ...). This test runs ``tests/gpu/test_gpu_real.py`` in a
subprocess where importing those fails, with pytest's plugin autoloading off, and with a fake ``pynvml`` module first
on the path that reports one H200. So the GPU test is known to import, collect and pass its own checks before a
device session spends its few minutes on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support import REPO

# This project's dependencies that the GPU test must not need (some are on a lent GPU machine, most are not).
PROJECT_ONLY_MODULES = [
    "fastapi",
    "starlette",
    "uvicorn",
    "aiohttp",
    "orjson",
    "pydantic",
    "pydantic_core",
    "yaml",
    "redis",
    "fakeredis",
    "openai",
    "anthropic",
    "opentelemetry",
    "sacrebleu",
    "rouge_score",
    "evidently",
    "pandas",
]

H200_MEMORY_TOTAL = 143_771 * 1024 * 1024  # what nvidia-smi shows for an H200: 143771 MiB
H200_UUID = "GPU-5d2f6a5e-0b1c-4e2f-9a7d-3c1b2a4e5f60"

# A pynvml stand-in with the functions and error classes the exporter and the GPU test use.
FAKE_PYNVML = f'''
"""Fake pynvml: one H200, fixed readings."""
from types import SimpleNamespace

NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value


class NVMLError_NotSupported(NVMLError):
    def __init__(self):
        super().__init__(3)


_handle = object()


def nvmlInit(): pass
def nvmlShutdown(): pass
def nvmlSystemGetDriverVersion(): return "580.159.03"
def nvmlDeviceGetCount(): return 1
def nvmlDeviceGetHandleByIndex(index): return _handle
def nvmlDeviceGetUUID(handle): return "{H200_UUID}"
def nvmlDeviceGetName(handle): return b"NVIDIA H200"
def nvmlDeviceGetMemoryInfo(handle): return SimpleNamespace(total={H200_MEMORY_TOTAL}, used=4 * 1024**3, free=0)
def nvmlDeviceGetUtilizationRates(handle): return SimpleNamespace(gpu=87, memory=40)
def nvmlDeviceGetPowerUsage(handle): return 412_345
def nvmlDeviceGetTemperature(handle, sensor): return 51
def nvmlDeviceGetComputeRunningProcesses(handle): return []
'''

# Runs pytest with the modules named in argv[1] (comma-separated) refused.
BOOTSTRAP = textwrap.dedent(
    """
    import importlib.abc, sys

    refused = set(sys.argv[1].split(","))

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in refused:
                raise ModuleNotFoundError(f"{top} is not installed on a bare GPU host", name=top)
            return None

    sys.meta_path.insert(0, Refuse())
    import pytest

    sys.exit(pytest.main(sys.argv[2:]))
    """
)


def test_gpu_test_runs_with_gpu_host_packages_only(tmp_path: Path) -> None:
    (tmp_path / "pynvml.py").write_text(FAKE_PYNVML, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    command = [
        sys.executable,
        "-c",
        BOOTSTRAP,
        ",".join(PROJECT_ONLY_MODULES),
        "-p",
        "no:cacheprovider",
        "-m",
        "gpu",
        "-v",
        "-rsP",
        "tests/gpu/test_gpu_real.py",
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "test_real_gpus_are_exported PASSED" in output, output
    # No CUDA here: the load test skips (torch imports, finds no device); it must not error.
    assert "test_utilization_rises_under_matmul_load SKIPPED" in output, output
    assert "torch has no CUDA device" in output or "torch is not installed" in output, output
    assert "is not installed on a bare GPU host" not in output, output
    # The exporter's readings, as the passing test printed them: one H200, memory in bytes, power in watts.
    labels = f"{{'gpu': '0', 'uuid': '{H200_UUID}'}}"
    assert f"llm_gpu_memory_total_bytes {labels} {float(H200_MEMORY_TOTAL)}" in output, output
    assert f"llm_gpu_power_watts {labels} 412.345" in output, output
    assert f"llm_gpu_utilization_ratio {labels} 0.87" in output, output


def test_import_guard_refuses_what_a_gpu_host_lacks(tmp_path: Path) -> None:
    """The guard above is real: a test file importing FastAPI fails under it."""
    (tmp_path / "test_needs_fastapi.py").write_text("import fastapi\n\ndef test_x():\n    pass\n", encoding="utf-8")
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    command = [sys.executable, "-c", BOOTSTRAP, ",".join(PROJECT_ONLY_MODULES), "-q"]
    result = subprocess.run(
        [*command, "-p", "no:cacheprovider", str(tmp_path / "test_needs_fastapi.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "fastapi is not installed on a bare GPU host" in result.stdout + result.stderr
