"""A worker's value class (gateway.metrics_values.WorkerValue) writes what prometheus_client's own multiprocess value
writes: the same series, read back by the same MultiProcessCollector, through file growth and a fork."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

from gateway import metrics_values
from gateway.metrics_values import WorkerValue


@pytest.fixture
def multiproc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[type, str], Path]]:
    """``use(value_class, name)``: series made from now on keep their values with ``value_class`` in a directory of
    their own, which it returns."""

    def use(value_class: type, name: str) -> Path:
        directory = tmp_path / name
        directory.mkdir()
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
        monkeypatch.setattr(values, "ValueClass", value_class)
        return directory

    yield use
    metrics_values.close_files()
    values.close_all_multiprocess_files()


def merged(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample that a scrape of ``directory`` shows (pid labels left out)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(directory))
    return {
        (sample.name, tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def record() -> None:
    """The same updates, on series of their own (a registry each: both value classes live in one test process)."""
    registry = CollectorRegistry()
    requests = Counter("req", "requests", ["model", "status"], registry=registry)
    duration = Histogram("dur_seconds", "duration", ["model"], buckets=(0.01, 0.1, 1.0), registry=registry)
    in_flight = Gauge("in_flight", "in flight", ["model"], registry=registry, multiprocess_mode="livesum")
    healthy = Gauge("healthy", "healthy", ["d"], registry=registry, multiprocess_mode="livemax")
    latest = Gauge("latest", "most recent", registry=registry, multiprocess_mode="mostrecent")
    for i in range(200):
        model = "모델-한국어" if i % 3 else "gpt-4o-mini"
        requests.labels(model, "200" if i % 7 else "502").inc()
        duration.labels(model).observe(i / 250)
        in_flight.labels(model).inc()
        if i % 2:
            in_flight.labels(model).dec()
    requests.labels("gpt-4o-mini", "200").inc(0.25)
    healthy.labels("a").set(1)
    healthy.labels("b").set(0)
    latest.set(42.5)


def test_the_scrape_is_what_prometheus_clients_own_value_writes(multiproc: Callable[[type, str], Path]) -> None:
    theirs = multiproc(values.MultiProcessValue(), "theirs")
    record()
    ours = multiproc(WorkerValue, "ours")
    record()
    expected = merged(theirs)
    assert merged(ours) == expected
    assert expected[("req_total", (("model", "모델-한국어"), ("status", "200")))] == 114.0
    assert expected[("dur_seconds_count", (("model", "gpt-4o-mini"),))] == 67.0
    assert expected[("in_flight", (("model", "gpt-4o-mini"),))] == 34.0
    assert expected[("latest", ())] == 42.5
    assert sorted(path.name.rsplit("_", 1)[0] for path in ours.iterdir()) == sorted(
        path.name.rsplit("_", 1)[0] for path in theirs.iterdir()
    )


def test_values_stay_exact_as_the_file_grows(multiproc: Callable[[type, str], Path]) -> None:
    directory = multiproc(WorkerValue, "grow")
    registry = CollectorRegistry()
    counter = Counter("grow", "many children", ["name"], registry=registry)
    first = counter.labels("첫 번째")
    first.inc(3)
    # ~120 bytes an entry: 2,000 children take the file from 64 KiB to 256 KiB (two new mappings)
    children = [counter.labels(f"child-{i:05d}-" + "x" * 60) for i in range(2000)]
    for i, child in enumerate(children):
        child.inc(i)
    first.inc(4)  # through the view it took before the file grew
    children[0].inc(0.5)
    (db,) = directory.iterdir()
    assert db.stat().st_size >= 256 * 1024
    scraped = merged(directory)
    assert scraped[("grow_total", (("name", "첫 번째"),))] == 7.0
    assert scraped[("grow_total", (("name", "child-00000-" + "x" * 60),))] == 0.5
    assert scraped[("grow_total", (("name", "child-01999-" + "x" * 60),))] == 1999.0
    assert len(scraped) == 2001  # (multiprocess counters have no _created series)


def test_a_forked_child_writes_files_of_its_own(multiproc: Callable[[type, str], Path]) -> None:
    directory = multiproc(WorkerValue, "fork")
    registry = CollectorRegistry()
    counter = Counter("forked", "counted on both sides of a fork", ["side"], registry=registry)
    gauge = Gauge("alive", "one per process", registry=registry, multiprocess_mode="liveall")
    counter.labels("부모").inc(2)
    gauge.set(1)
    child = os.fork()
    if child == 0:  # the child: its values start again at 0, in files named after its own pid
        try:
            counter.labels("부모").inc(5)
            counter.labels("자식").inc(1)
            gauge.set(2)
            ok = counter.labels("부모")._value.get() == 5.0
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    counter.labels("부모").inc(1)
    assert sorted(path.name for path in directory.iterdir()) == sorted(
        f"{kind}_{pid}.db" for kind in ("counter", "gauge_liveall") for pid in (os.getpid(), child)
    )
    scraped = merged(directory)
    assert scraped[("forked_total", (("side", "부모"),))] == 8.0
    assert scraped[("forked_total", (("side", "자식"),))] == 1.0


def test_a_value_resumes_from_its_file(multiproc: Callable[[type, str], Path]) -> None:
    directory = multiproc(WorkerValue, "resume")
    Counter("resumed", "kept in the file", registry=CollectorRegistry()).inc(3)
    metrics_values.close_files()  # as if this process's series were made again
    again = Counter("resumed", "kept in the file", registry=CollectorRegistry())
    assert again._value.get() == 3.0
    again.inc(2)
    assert merged(directory)[("resumed_total", ())] == 5.0
