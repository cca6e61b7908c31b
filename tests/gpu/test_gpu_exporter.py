"""CPU tests of ``llmops gpu-exporter``: a fake NVML module, the real pynvml without GPUs, real HTTP."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmops.gpu_exporter import DEFAULT_PORT, GpuCollector, make_exporter_server

GIB = 1024**3


# -- a fake NVML module --
class FakeNVMLError(Exception):
    """Stands in for pynvml.NVMLError: the NVML return code in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


class FakeUninitialized(FakeNVMLError):
    def __init__(self) -> None:
        super().__init__(1)


class FakeNotSupported(FakeNVMLError):
    def __init__(self) -> None:
        super().__init__(3)


class FakeLibraryNotFound(FakeNVMLError):
    def __init__(self) -> None:
        super().__init__(12)


class FakeUnknown(FakeNVMLError):
    def __init__(self) -> None:
        super().__init__(999)


Reading = Any  # a value, an exception instance to raise, or a callable returning either


class FakeNVML:
    """The subset of pynvml the exporter uses, with per-GPU readings and call counts."""

    NVMLError = FakeNVMLError
    NVMLError_Uninitialized = FakeUninitialized
    NVMLError_NotSupported = FakeNotSupported
    NVMLError_LibraryNotFound = FakeLibraryNotFound
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, gpus: list[dict[str, Reading]], init_error: Exception | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.init_calls = 0
        self.shutdown_calls = 0
        self.calls: dict[tuple[int, str], int] = {}

    def _get(self, handle: int, key: str) -> Any:
        self.calls[(handle, key)] = self.calls.get((handle, key), 0) + 1
        value = self.gpus[handle][key]
        if callable(value) and not isinstance(value, type):
            value = value()
        if isinstance(value, BaseException):
            raise value
        return value

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "999.1"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> bytes | str:
        return self._get(handle, "uuid")

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._get(handle, "name")

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=self._get(handle, "util"), memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        used, total = self._get(handle, "memory")
        return SimpleNamespace(used=used, total=total, free=total - used)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._get(handle, "power_mw")

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._get(handle, "temp")

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in self._get(handle, "procs")]


def gpu(**overrides: Reading) -> dict[str, Reading]:
    base: dict[str, Reading] = {
        "uuid": b"GPU-00000000-0000-0000-0000-000000000000",
        "name": "NVIDIA Fake 80GB",
        "util": 0,
        "memory": (0, 80 * GIB),
        "power_mw": 60_000,
        "temp": 30,
        "procs": [],
    }
    base.update(overrides)
    return base


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- HTTP helpers --
@contextmanager
def running(collector: GpuCollector) -> Iterator[str]:
    """Serve ``collector`` on a free port in a thread; yield the base URL."""
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


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str) -> Samples:
    status, content_type, body = get(f"{base}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for sample_name, labels in samples if sample_name == name]


# -- (1) no NVML --
def test_library_not_found_exports_up_0_keeps_serving_and_retries_init(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    nvml = FakeNVML([gpu(uuid="GPU-a")], init_error=FakeLibraryNotFound())
    collector = GpuCollector(nvml, retry_init_seconds=30, clock=clock)
    caplog.set_level(logging.DEBUG, logger="llmops.gpu_exporter")
    with running(collector) as base:
        for _ in range(3):
            samples = scrape(base)
            assert value(samples, "llm_gpu_up") == 0.0
            assert "llm_gpu_count" not in names(samples)
            assert "llm_gpu_utilization_ratio" not in names(samples)
        assert nvml.init_calls == 1, "init must not be retried inside the retry interval"
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1
        assert "llm_gpu_up 0" in warnings[0].getMessage()
        assert "libnvidia-ml" in warnings[0].getMessage()

        status, content_type, body = get(f"{base}/health")
        assert status == 200 and content_type == "application/json"
        health = json.loads(body)
        assert health["status"] == "ok" and health["nvml"] is False and health["gpus"] == 0
        assert "NVML" in health["reason"]

        # The driver appears (say, after an install): the next retry picks it up.
        nvml.init_error = None
        clock.now += 29
        assert value(scrape(base), "llm_gpu_up") == 0.0
        clock.now += 2
        samples = scrape(base)
        assert nvml.init_calls == 2
        assert value(samples, "llm_gpu_up") == 1.0
        assert value(samples, "llm_gpu_count") == 1.0
        assert value(samples, "llm_gpu_memory_total_bytes", gpu="0", uuid="GPU-a") == 80 * GIB


def test_real_pynvml_on_a_host_without_gpu(caplog: pytest.LogCaptureFixture) -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("NVML works on this host: the no-GPU path is covered by the fake-module tests")
    caplog.set_level(logging.INFO, logger="llmops.gpu_exporter")
    collector = GpuCollector()  # imports the real pynvml
    with running(collector) as base:
        for _ in range(2):
            samples = scrape(base)
            assert value(samples, "llm_gpu_up") == 0.0
        assert get(f"{base}/health")[0] == 200
        assert scrape(base)  # still serving
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "llm_gpu_up 0" in warnings[0]


def test_without_pynvml_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    collector = GpuCollector()
    assert "pynvml" in (collector.unavailable_reason or "")
    with running(collector) as base:
        assert value(scrape(base), "llm_gpu_up") == 0.0
        assert json.loads(get(f"{base}/health")[2])["nvml"] is False


# -- (2) readings --
def two_gpus() -> FakeNVML:
    return FakeNVML(
        [
            gpu(
                uuid=b"GPU-aaaa",
                name="NVIDIA H100 80GB HBM3",
                util=37,
                memory=(12 * GIB + 5, 80 * GIB),
                power_mw=215_500,
                temp=64,
            ),
            gpu(
                uuid="GPU-bbbb",
                util=100,
                memory=(1024, 40 * GIB),
                power_mw=FakeNotSupported(),
                temp=FakeUnknown(),
            ),
        ]
    )


def test_two_gpus_exact_values_and_failed_readings_skipped() -> None:
    nvml = two_gpus()
    with running(GpuCollector(nvml)) as base:
        samples = scrape(base)
        a = {"gpu": "0", "uuid": "GPU-aaaa"}
        b = {"gpu": "1", "uuid": "GPU-bbbb"}
        assert value(samples, "llm_gpu_up") == 1.0
        assert value(samples, "llm_gpu_count") == 2.0
        assert value(samples, "llm_gpu_utilization_ratio", **a) == pytest.approx(0.37)
        assert value(samples, "llm_gpu_utilization_ratio", **b) == 1.0
        assert value(samples, "llm_gpu_memory_used_bytes", **a) == 12 * GIB + 5
        assert value(samples, "llm_gpu_memory_total_bytes", **a) == 80 * GIB
        assert value(samples, "llm_gpu_memory_used_bytes", **b) == 1024
        assert value(samples, "llm_gpu_memory_total_bytes", **b) == 40 * GIB
        assert value(samples, "llm_gpu_power_watts", **a) == 215.5
        assert value(samples, "llm_gpu_temperature_celsius", **a) == 64
        assert value(samples, "llm_gpu_info", **a, name="NVIDIA H100 80GB HBM3") == 1.0
        # GPU 1: power not supported and temperature failing are skipped; nothing else is lost.
        assert series(samples, "llm_gpu_power_watts") == [a]
        assert series(samples, "llm_gpu_temperature_celsius") == [a]
        # Not supported is a property of the GPU, not an error; the unknown failure is counted.
        assert value(samples, "llm_gpu_scrape_errors_total", reading="power") == 0
        assert value(samples, "llm_gpu_scrape_errors_total", reading="temperature") == 1
        assert value(samples, "llm_gpu_scrape_duration_seconds") is not None

        samples = scrape(base)
        assert value(samples, "llm_gpu_power_watts", **a) == 215.5
        assert value(samples, "llm_gpu_scrape_errors_total", reading="temperature") == 2
        assert nvml.calls[(1, "power_mw")] == 1, "an unsupported reading is asked for once"
        assert nvml.calls[(1, "temp")] == 2, "a failing reading is tried again at each scrape"
        assert nvml.calls[(0, "uuid")] == 1, "handles and UUIDs are cached"
        assert nvml.init_calls == 1


def test_readings_change_between_scrapes() -> None:
    utilisation = iter([10, 90])
    nvml = FakeNVML([gpu(uuid="GPU-x", util=lambda: next(utilisation))])
    with running(GpuCollector(nvml)) as base:
        assert value(scrape(base), "llm_gpu_utilization_ratio", gpu="0", uuid="GPU-x") == pytest.approx(0.1)
        assert value(scrape(base), "llm_gpu_utilization_ratio", gpu="0", uuid="GPU-x") == pytest.approx(0.9)


def test_lost_driver_session_goes_down_then_recovers() -> None:
    clock = FakeClock()
    nvml = FakeNVML([gpu(uuid="GPU-x", util=FakeUninitialized())])
    with running(GpuCollector(nvml, retry_init_seconds=10, clock=clock)) as base:
        samples = scrape(base)
        assert value(samples, "llm_gpu_up") == 0.0
        assert nvml.shutdown_calls == 1
        nvml.gpus[0]["util"] = 50
        assert value(scrape(base), "llm_gpu_up") == 0.0  # inside the retry interval
        clock.now += 11
        samples = scrape(base)
        assert value(samples, "llm_gpu_up") == 1.0
        assert value(samples, "llm_gpu_utilization_ratio", gpu="0", uuid="GPU-x") == 0.5
        assert nvml.init_calls == 2


def test_gpu_whose_handle_fails_is_skipped_then_opened_again() -> None:
    """A GPU whose handle fails is left out (llm_gpu_count still says how many NVML reports) and tried again every
    retry interval, so it shows up once it can be opened."""
    clock = FakeClock()
    attempts = iter([FakeUnknown(), FakeUnknown(), "GPU-late"])
    nvml = FakeNVML([gpu(uuid=lambda: next(attempts)), gpu(uuid="GPU-ok")])
    with running(GpuCollector(nvml, retry_init_seconds=30, clock=clock)) as base:
        samples = scrape(base)
        assert value(samples, "llm_gpu_up") == 1.0
        assert value(samples, "llm_gpu_count") == 2.0  # what NVML reports; one of them has no series yet
        assert series(samples, "llm_gpu_memory_total_bytes") == [{"gpu": "1", "uuid": "GPU-ok"}]
        assert value(samples, "llm_gpu_scrape_errors_total", reading="handle") == 1
        clock.now += 10  # within the retry interval: not tried again
        assert value(scrape(base), "llm_gpu_scrape_errors_total", reading="handle") == 1
        clock.now += 25
        assert value(scrape(base), "llm_gpu_scrape_errors_total", reading="handle") == 2  # tried, failed again
        clock.now += 31
        samples = scrape(base)
        assert sorted(s["uuid"] for s in series(samples, "llm_gpu_memory_total_bytes")) == ["GPU-late", "GPU-ok"]
        assert value(samples, "llm_gpu_info", gpu="0", uuid="GPU-late", name="NVIDIA Fake 80GB") == 1.0


def test_a_hung_nvml_call_never_blocks_scrapes_or_health() -> None:
    """NVML has no call timeout: a reading that hangs holds the collector. The next scrapes give up after the lock
    timeout with llm_gpu_up 0 (counted as reading="busy"), /health answers at once, and readings resume when NVML
    answers again."""
    release = threading.Event()

    def hung_power() -> int:
        release.wait(10)
        return 70_000

    nvml = FakeNVML([gpu(uuid="GPU-h")])
    collector = GpuCollector(nvml, lock_timeout_seconds=0.2)
    with running(collector) as base:
        assert value(scrape(base), "llm_gpu_power_watts", gpu="0", uuid="GPU-h") == 60.0
        nvml.gpus[0]["power_mw"] = hung_power
        stuck = threading.Thread(target=lambda: get(f"{base}/metrics"), daemon=True)
        stuck.start()
        time.sleep(0.1)  # the stuck scrape holds the collector
        for expected_busy in (1, 2):
            samples = scrape(base)
            assert value(samples, "llm_gpu_up") == 0.0
            assert value(samples, "llm_gpu_scrape_errors_total", reading="busy") == expected_busy
            assert "llm_gpu_power_watts" not in names(samples)
        status, _, body = get(f"{base}/health")
        assert status == 200 and '"status": "ok"' in body
        release.set()
        stuck.join(5)
        samples = scrape(base)
        assert value(samples, "llm_gpu_up") == 1.0
        assert value(samples, "llm_gpu_power_watts", gpu="0", uuid="GPU-h") == 70.0


class FakeNVMLWithMemoryV2(FakeNVML):
    """A driver with nvmlDeviceGetMemoryInfo_v2: its ``used`` leaves out the driver's reserved memory."""

    nvmlMemory_v2 = 0x02000028

    def __init__(self, gpus: list[dict[str, Reading]], v2_error: Exception | None = None) -> None:
        super().__init__(gpus)
        self.v2_error = v2_error

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: int | None = None) -> SimpleNamespace:
        used, total = self._get(handle, "memory")
        if version is None:
            return SimpleNamespace(used=used, total=total, free=total - used)
        assert version == self.nvmlMemory_v2
        if self.v2_error is not None:
            raise self.v2_error
        reserved = 512 * 1024**2
        return SimpleNamespace(used=used - reserved, reserved=reserved, total=total, free=total - used)


class FakeFunctionNotFound(FakeNVMLError):
    def __init__(self) -> None:
        super().__init__(13)


def test_memory_used_leaves_out_reserved_memory_where_the_driver_can() -> None:
    readings = gpu(uuid="GPU-m", memory=(10 * GIB, 80 * GIB))
    with running(GpuCollector(FakeNVMLWithMemoryV2([readings]))) as base:
        samples = scrape(base)
    assert value(samples, "llm_gpu_memory_used_bytes", gpu="0", uuid="GPU-m") == 10 * GIB - 512 * 1024**2
    assert value(samples, "llm_gpu_memory_total_bytes", gpu="0", uuid="GPU-m") == 80 * GIB
    older = FakeNVMLWithMemoryV2([dict(readings)], v2_error=FakeFunctionNotFound())  # a driver before v2
    with running(GpuCollector(older)) as base:
        first, second = scrape(base), scrape(base)
    assert value(first, "llm_gpu_memory_used_bytes", gpu="0", uuid="GPU-m") == 10 * GIB
    assert value(second, "llm_gpu_memory_used_bytes", gpu="0", uuid="GPU-m") == 10 * GIB
    assert value(second, "llm_gpu_scrape_errors_total", reading="memory") == 0


class FakeLibraryMismatch(Exception):
    """pynvml's NVMLLibraryMismatchError: a versioned call (e.g. ..._v3) the driver does not have."""


def test_process_listing_missing_from_an_older_driver_is_unsupported_not_an_error() -> None:
    nvml = FakeNVML([gpu(uuid="GPU-o", procs=FakeLibraryMismatch("no _v3"))])
    nvml.NVMLLibraryMismatchError = FakeLibraryMismatch
    with running(GpuCollector(nvml)) as base:
        scrape(base)
        samples = scrape(base)
    assert value(samples, "llm_gpu_scrape_errors_total", reading="processes") == 0
    assert nvml.calls[(0, "procs")] == 1  # asked once, then skipped
    assert value(samples, "llm_gpu_memory_total_bytes", gpu="0", uuid="GPU-o") == 80 * GIB


# -- (3) processes --
def test_processes_capped_largest_first_with_names(tmp_path: Path) -> None:
    for pid, comm in ((101, "vllm"), (102, "python3")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_text(f"{comm}\n")
    procs = [(100 + i, i * 1024**2) for i in range(12)]  # pid 111 uses the most
    procs[1] = (101, 50 * GIB)
    procs[2] = (102, 20 * GIB)
    procs.append((200, None))  # memory not available (WDDM, some containers)
    nvml = FakeNVML([gpu(uuid="GPU-p", procs=procs)])
    with running(GpuCollector(nvml, max_processes_per_gpu=3, proc_root=tmp_path)) as base:
        samples = scrape(base)
    exported = {
        (s["pid"], s["process"]): value(samples, "llm_gpu_process_memory_used_bytes", **s)
        for s in series(samples, "llm_gpu_process_memory_used_bytes")
    }
    assert exported == {
        ("101", "vllm"): 50 * GIB,
        ("102", "python3"): 20 * GIB,
        ("111", "unknown"): 11 * 1024**2,
    }
    assert value(samples, "llm_gpu_processes", gpu="0", uuid="GPU-p") == 13
    process_series = series(samples, "llm_gpu_process_memory_used_bytes")
    assert all(s["gpu"] == "0" and s["uuid"] == "GPU-p" for s in process_series)


def test_processes_disabled_with_cap_zero() -> None:
    nvml = FakeNVML([gpu(uuid="GPU-p", procs=[(1, 5)])])
    with running(GpuCollector(nvml, max_processes_per_gpu=0)) as base:
        samples = scrape(base)
    assert "llm_gpu_process_memory_used_bytes" not in names(samples)
    assert (0, "procs") not in nvml.calls


# -- HTTP and CLI --
def test_http_routes() -> None:
    with running(GpuCollector(FakeNVML([gpu(uuid="GPU-h")]))) as base:
        status, _, body = get(f"{base}/health")
        assert status == 200 and json.loads(body) == {"status": "ok", "nvml": True, "gpus": 1, "reason": None}
        assert get(f"{base}/nope")[0] == 404
        request = urllib.request.Request(
            f"{base}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            assert response.read().decode().rstrip().endswith("# EOF")


def test_concurrent_scrapes() -> None:
    with running(GpuCollector(two_gpus())) as base:
        results: list[float | None] = []

        def worker() -> None:
            results.append(value(scrape(base), "llm_gpu_power_watts", gpu="0", uuid="GPU-aaaa"))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    assert results == [215.5] * 8


def test_cli_help_and_wiring(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from llmops import cli, gpu_exporter

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["gpu-exporter", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--port" in out and "--host" in out and "llm_gpu_up 0" in out

    assert cli.build_parser().parse_args(["gpu-exporter"]).port == DEFAULT_PORT == 9835
    seen: dict[str, Any] = {}

    def fake_serve(**kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(gpu_exporter, "serve", fake_serve)
    assert cli.main(["gpu-exporter", "--host", "127.0.0.1", "--port", "19835"]) == 0
    assert seen == {"host": "127.0.0.1", "port": 19835}
