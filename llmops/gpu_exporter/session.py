"""The NVML session behind the collector: initialisation with retries, the opened GPUs, and guarded readings.

Not thread-safe: ``GpuCollector`` calls it under its lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from llmops.gpu_exporter.nvml import (
    Device,
    NvmlModule,
    describe_error,
    driver_version,
    init_failure_reason,
    is_unsupported,
    is_version_missing,
    load_pynvml,
    needs_reinit,
    open_device,
)

log = logging.getLogger("llmops.gpu_exporter")

T = TypeVar("T")


class ReinitNeeded(Exception):
    """NVML answered with an error that invalidates the session (driver unloaded, version mismatch)."""


class NvmlSession:
    """NVML initialised at most once per ``retry_init_seconds``, its GPUs' handles cached.

    ``nvml`` ``None`` imports ``pynvml``; where that fails the session stays down. ``on_error(reading)`` is called
    for each failed reading (``handle`` for a GPU that could not be opened).
    """

    def __init__(
        self,
        nvml: NvmlModule | None,
        *,
        retry_init_seconds: float,
        clock: Callable[[], float],
        on_error: Callable[[str], None],
    ) -> None:
        self.import_error: str | None = None
        if nvml is None:
            nvml, self.import_error = load_pynvml()
        self.module: NvmlModule | None = nvml
        self.retry_init_seconds = retry_init_seconds
        self._clock = clock
        self._on_error = on_error
        self.up = False
        self.devices: list[Device] = []
        self.reported = 0  # GPUs NVML reports (some may have failed to open)
        self._last_init_attempt: float | None = None
        self._last_init_error: str | None = None
        self._unavailable_logged = False
        self._last_reopen = 0.0
        self._warned: set[tuple[int, str, str]] = set()

    @property
    def unavailable_reason(self) -> str | None:
        """Why NVML is not usable, or ``None`` while it is."""
        if self.up:
            return None
        return self.import_error or self._last_init_error

    def ensure_up(self) -> bool:
        """Initialise NVML if not done yet and the retry interval has passed; return whether it is up."""
        if self.up:
            return True
        nvml = self.module
        if nvml is None:
            if not self._unavailable_logged:
                log.warning("llmops gpu-exporter: %s; exporting llm_gpu_up 0", self.import_error)
                self._unavailable_logged = True
            return False
        now = self._clock()
        if self._last_init_attempt is not None and now - self._last_init_attempt < self.retry_init_seconds:
            return False
        self._last_init_attempt = now
        try:
            nvml.nvmlInit()
        except Exception as error:
            self._note_init_failure(nvml, error)
            return False
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as error:
            self._note_init_failure(nvml, error)
            self._safe_shutdown(nvml)
            return False
        self.reported = count
        self.devices = [device for index in range(count) if (device := self._open(nvml, index)) is not None]
        self._last_reopen = now
        self.up = True
        self._last_init_error = None
        self._unavailable_logged = False
        driver = driver_version(nvml)
        if self.devices:
            names = ", ".join(f"{d.index}: {d.name} ({d.uuid})" for d in self.devices)
            log.info("llmops gpu-exporter: NVML up%s, %d GPU(s): %s", driver, len(self.devices), names)
        else:
            log.warning("llmops gpu-exporter: NVML up%s but it reports no GPU; llm_gpu_count is 0", driver)
        return True

    def shutdown(self) -> None:
        """Shut NVML down where it is up and forget the GPUs (idempotent)."""
        if self.up and self.module is not None:
            self._safe_shutdown(self.module)
        self.up = False
        self.devices = []
        self.reported = 0

    def lost(self) -> None:
        """NVML lost its driver session: shut down, and initialise again no sooner than the retry interval."""
        self.shutdown()
        self._last_init_attempt = self._clock()

    def reopen_missing(self) -> None:
        """Try again, at most every ``retry_init_seconds``, the GPUs whose handle failed (they may come back)."""
        if len(self.devices) >= self.reported or self.module is None:
            return
        now = self._clock()
        if now - self._last_reopen < self.retry_init_seconds:
            return
        self._last_reopen = now
        nvml = self.module
        present = {device.index for device in self.devices}
        reopened = [d for i in range(self.reported) if i not in present and (d := self._open(nvml, i)) is not None]
        if reopened:
            log.info("llmops gpu-exporter: GPU(s) %s opened", ", ".join(str(d.index) for d in reopened))
            self.devices = sorted([*self.devices, *reopened], key=lambda d: d.index)

    def read(self, device: Device, reading: str, reader: Callable[[NvmlModule, Device], T]) -> T | None:
        """``reader(nvml, device)``; on failure count it, log it once, and return ``None``. A reading the GPU or
        driver lacks is not a failure: it is skipped from then on. Raises ``ReinitNeeded`` where the error
        invalidates the session."""
        if reading in device.unsupported:
            return None
        nvml = self.module
        try:
            return reader(nvml, device)
        except Exception as error:
            if is_unsupported(nvml, error) or is_version_missing(nvml, error):
                # A property of this GPU or driver, not a fault: stop asking until NVML is initialised again.
                device.unsupported.add(reading)
                log.info("llmops gpu-exporter: GPU %d does not support %s; skipped", device.index, reading)
                return None
            self._on_error(reading)
            key = (device.index, reading, type(error).__name__)
            if key not in self._warned:
                self._warned.add(key)
                log.warning(
                    "llmops gpu-exporter: GPU %d %s reading failed: %s",
                    device.index,
                    reading,
                    describe_error(error),
                )
            if needs_reinit(nvml, error):
                raise ReinitNeeded(error) from error
            return None

    def _open(self, nvml: NvmlModule, index: int) -> Device | None:
        try:
            return open_device(nvml, index)
        except Exception as error:
            self._on_error("handle")
            log.warning("llmops gpu-exporter: GPU %d skipped: %s", index, describe_error(error))
            return None

    def _note_init_failure(self, nvml: NvmlModule, error: BaseException) -> None:
        reason = init_failure_reason(nvml, error)
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

    @staticmethod
    def _safe_shutdown(nvml: NvmlModule) -> None:
        try:
            nvml.nvmlShutdown()
        except Exception as error:
            log.debug("llmops gpu-exporter: nvmlShutdown failed: %s", describe_error(error))
