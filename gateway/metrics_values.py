"""The value class of a worker's series (``server.workers``): prometheus_client's multiprocess files, written for less.

prometheus_client's own multiprocess value (``values.MultiProcessValue``) takes a lock, asks for the process id (to
notice a fork), looks its key up in the file's index and packs value and timestamp anew at every update: ~430 ns
against ~180 ns for the in-memory value of a single process, and a gateway makes ~14 updates per request (4-5 % of a
worker's CPU at max load, measured in bench/workers.py as mp1 / single). :class:`WorkerValue` writes the same files
(same names, same layout, read by the same ``MultiProcessCollector``) but keeps each value's place in its file and
stores an update as one aligned 8-byte double through a memoryview of the file's mapping: ~50 ns.

Still exact: every update is in the file as soon as it is made, so a worker killed at any moment loses nothing it
counted. A fork is noticed by an ``os.register_at_fork`` hook, not at every update: the child starts files of its
own, as prometheus_client's value does. No lock on an update: one thread updates a worker's series (its event
loop; the lock guards only the creation of values and the growth of files). A file that grows gets a new mapping;
a writer still holding the old view writes through it to the same shared pages.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client.mmap_dict import MmapedDict, mmap_key

_DOUBLE = 8
# MmapedDict's methods, typed (they are untyped in prometheus_client)
_mmaped_dict_init: Callable[[MmapedDict, str], None] = MmapedDict.__init__
_mmaped_dict_init_value: Callable[[MmapedDict, str], None] = MmapedDict._init_value
_mmaped_dict_close: Callable[[MmapedDict], None] = MmapedDict.close


class _File(MmapedDict):  # (its methods are untyped in prometheus_client)
    """One multiprocess file, with its mapping also seen as an array of doubles (``doubles``)."""

    def __init__(self, filename: str) -> None:
        _mmaped_dict_init(self, filename)
        self.doubles = memoryview(self._m).cast("d")

    def _init_value(self, key: str) -> None:
        _mmaped_dict_init_value(self, key)  # may map a larger file: a writer on the old view still lands
        self.doubles = memoryview(self._m).cast("d")

    def index(self, key: str) -> int:
        """The index in ``doubles`` of ``key``'s value (its timestamp is the next one), added when it is new."""
        if key not in self._positions:
            self._init_value(key)
        position: int = self._positions[key]
        return position // _DOUBLE

    def close(self) -> None:
        if self._m is not None:
            self.doubles.release()
        _mmaped_dict_close(self)


class _Files:
    """This process's files (one per kind of series, named after the process id, as prometheus_client names them)
    and every value written to them, started again in a forked child."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files: dict[str, _File] = {}
        self.values: list[WorkerValue] = []
        os.register_at_fork(after_in_child=self.after_fork)

    def file(self, prefix: str) -> _File:
        found = self.files.get(prefix)
        if found is None:
            directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
            found = self.files[prefix] = _File(os.path.join(directory, f"{prefix}_{os.getpid()}.db"))
        return found

    def close(self) -> None:
        """Close every file (the values keep theirs until :meth:`WorkerValue.reopen`)."""
        for file in self.files.values():
            file.close()
        self.files.clear()

    def after_fork(self) -> None:
        self.lock = threading.Lock()
        self.close()
        for value in self.values:
            value.reopen()


_FILES: _Files | None = None


class WorkerValue:
    """A series' value in this worker's multiprocess file (prometheus_client's ``ValueClass`` interface)."""

    _multiprocess = True

    __slots__ = ("_file", "_index", "_key", "_prefix", "_value")

    def __init__(
        self,
        typ: str,
        metric_name: str,
        name: str,
        labelnames: Any,
        labelvalues: Any,
        help_text: str,
        multiprocess_mode: str = "",
        **kwargs: Any,
    ) -> None:
        self._prefix = f"{typ}_{multiprocess_mode}" if typ == "gauge" else typ
        self._key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
        files = _files()
        with files.lock:
            self.reopen()
            files.values.append(self)

    def reopen(self) -> None:
        """Find (or add) this value in this process's file and read it from there."""
        file = _files().file(self._prefix)
        self._index = file.index(self._key)
        self._file = file
        self._value: float = file.doubles[self._index]

    def inc(self, amount: float) -> None:
        value = self._value = self._value + amount
        self._file.doubles[self._index] = value

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value
        doubles = self._file.doubles
        doubles[self._index + 1] = timestamp or 0.0
        doubles[self._index] = value

    def set_exemplar(self, exemplar: Any) -> None:
        return  # prometheus_client keeps no exemplars in multiprocess mode either

    def get(self) -> float:
        return self._value

    def get_exemplar(self) -> None:
        return None


def _files() -> _Files:
    global _FILES
    if _FILES is None:
        _FILES = _Files()
    return _FILES


def close_files() -> None:
    """Close this process's files and forget its values (tests; a worker's are closed when it exits)."""
    global _FILES
    if _FILES is not None:
        _FILES.close()
        _FILES.values.clear()
        _FILES = None
