"""Helpers for the end-to-end tests that run a real Prometheus and Alertmanager against the stack's own processes.

Binaries: the Debian/Ubuntu packages ``prometheus`` (``/usr/bin/prometheus``), ``prometheus-alertmanager``
(``/usr/bin/prometheus-alertmanager``) and ``prometheus-pushgateway`` (``/usr/bin/prometheus-pushgateway``);
PROMETHEUS / ALERTMANAGER / PUSHGATEWAY override the paths. Without them the tests skip,
unless the environment variable CI is set: then they fail.

Everything listens on 127.0.0.1 only, on free ports, with its data in the test's tmp dir, and is killed when its
context manager ends.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO, free_port, wait_http

PROMETHEUS_DIR = REPO / "prometheus"
PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"
ALERTMANAGER_YML = PROMETHEUS_DIR / "alertmanager.yml"
RULES_DIR = PROMETHEUS_DIR / "rules"
DASHBOARDS_DIR = REPO / "grafana" / "dashboards"


# ------------------------------------------------------------------------------------------------------ binaries
def binary(name: str, package: str, env: str) -> str:
    """Path of ``name``; skips the test without it, or fails it when CI is set."""
    path = os.environ.get(env) or shutil.which(name)
    if path and os.access(path, os.X_OK):
        return path
    message = f"{name} not found on PATH (Debian/Ubuntu: apt-get install -y {package}; or set {env})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so this is an error, not a skip")
    pytest.skip(message)


def prometheus_binary() -> str:
    return binary("prometheus", "prometheus", "PROMETHEUS")


def alertmanager_binary() -> str:
    return binary("prometheus-alertmanager", "prometheus-alertmanager", "ALERTMANAGER")


def pushgateway_binary() -> str:
    return binary("prometheus-pushgateway", "prometheus-pushgateway", "PUSHGATEWAY")


# ------------------------------------------------------------------------------------------------------ configs
class _NoAliases(yaml.SafeDumper):
    """Write shared objects out in full (Alertmanager's receivers share one webhook list through a YAML anchor)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any, path: Path) -> Path:
    path.write_text(yaml.dump(data, Dumper=_NoAliases, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def prometheus_config(
    path: Path,
    targets: dict[str, list[str]],
    rule_files: list[Path],
    alertmanager: str | None = None,
    interval: str = "1s",
) -> Path:
    """``prometheus/prometheus.yml`` with its jobs re-targeted, written to ``path``.

    ``targets`` maps job names to ``host:port`` lists; a job of the file that is not in ``targets`` gets no target
    (it scrapes nothing), and a job in ``targets`` that the file lacks is an error: the test must follow the file.
    Scrape and evaluation intervals become ``interval``; rule files are ``rule_files`` (absolute paths); alerts go
    to ``alertmanager`` (``host:port``), or nowhere.
    """
    config = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    unknown = sorted(set(targets) - set(jobs))
    assert not unknown, f"jobs {unknown} are not in {PROMETHEUS_YML}: {sorted(jobs)}"
    for name, job in jobs.items():
        assert len(job["static_configs"]) == 1, f"job {name}: one static_configs entry expected (docs/observability.md)"
        job["static_configs"][0]["targets"] = list(targets.get(name, []))
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    config["global"]["scrape_timeout"] = interval
    config["rule_files"] = [str(Path(f).resolve()) for f in rule_files]
    if alertmanager is None:
        config.pop("alerting", None)
    else:
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager]
    return dump_yaml(config, path)


def rule_groups(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def find_rules(groups: dict[str, Any], key: str, name: str) -> list[dict[str, Any]]:
    """Every rule whose ``key`` (``record`` or ``alert``) is ``name``."""
    found = [rule for group in groups["groups"] for rule in group["rules"] if rule.get(key) == name]
    assert found, f"no {key} rule named {name}"
    return found


# ------------------------------------------------------------------------------------------------------ processes
@contextmanager
def _service(args: list[str], ready_url: str, log: Path, timeout: float = 30.0) -> Iterator[subprocess.Popen]:
    with log.open("w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        wait_http(ready_url, timeout, process, log)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


#: The feature flags the shipped Prometheus runs with (docker-compose.yml): exemplars are stored only with this one.
PROMETHEUS_FEATURES = ("exemplar-storage",)


@contextmanager
def prometheus(config: Path, workdir: Path, features: tuple[str, ...] = PROMETHEUS_FEATURES) -> Iterator[str]:
    """A running Prometheus with ``config`` and ``--enable-feature`` ``features``, its TSDB under ``workdir``;
    yields its base URL."""
    exe = prometheus_binary()
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    args = [
        exe,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        *(f"--enable-feature={feature}" for feature in features),
    ]
    url = f"http://127.0.0.1:{port}"
    with _service(args, f"{url}/-/ready", workdir / "prometheus.log"):
        yield url


@contextmanager
def alertmanager(config: Path, workdir: Path) -> Iterator[str]:
    """A running Alertmanager (no clustering) with ``config``, its data under ``workdir``; yields its base URL."""
    exe = alertmanager_binary()
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    args = [
        exe,
        f"--config.file={config}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{port}"
    with _service(args, f"{url}/-/ready", workdir / "alertmanager.log"):
        yield url


@contextmanager
def pushgateway(workdir: Path) -> Iterator[str]:
    """A running Pushgateway (metrics in memory only), its log under ``workdir``; yields its base URL."""
    exe = pushgateway_binary()
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    # Debian's build persists to /var/lib/prometheus/pushgateway.data by default: keep this one in memory
    args = [exe, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file=", "--log.level=warn"]
    url = f"http://127.0.0.1:{port}"
    with _service(args, f"{url}/-/ready", workdir / "pushgateway.log"):
        yield url


# ------------------------------------------------------------------------------------------------------ HTTP API
def get_json(url: str, timeout: float = 10.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # Prometheus answers 400/422 with a JSON error body
        return json.loads(error.read() or b"{}")


def query(prom: str, expr: str) -> dict[str, Any]:
    """``GET /api/v1/query`` (an instant query, now): the whole JSON answer (``status``, ``data`` or ``error``)."""
    return get_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


def vector(prom: str, expr: str) -> list[dict[str, Any]]:
    """The samples of an instant query; fails the test if it does not parse."""
    answer = query(prom, expr)
    assert answer.get("status") == "success", f"{expr}: {answer.get('errorType')}: {answer.get('error')}"
    data = answer["data"]
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    return data["result"]


def finite(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The samples whose value is a number (not NaN or ±Inf): what a panel can draw."""
    out = []
    for sample in samples:
        value = float(sample["value"][1])
        if value == value and abs(value) != float("inf"):
            out.append(sample)
    return out


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll ``predicate`` until it returns something truthy; returns it, or fails saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s (last: {value!r})")
        time.sleep(interval)


def wait_targets_up(prom: str, jobs: set[str], timeout: float = 20.0) -> None:
    """Wait until every target of ``jobs`` has been scraped successfully."""

    def all_up() -> bool:
        answer = get_json(f"{prom}/api/v1/targets?state=active")
        seen: dict[str, list[str]] = {}
        for target in answer.get("data", {}).get("activeTargets", []):
            seen.setdefault(target["labels"]["job"], []).append(target["health"])
        return all(seen.get(job) and all(h == "up" for h in seen[job]) for job in jobs)

    wait_until(all_up, timeout, f"a successful scrape of every target of {sorted(jobs)}")


def wait_value(prom: str, expr: str, check: Callable[[float], bool], timeout: float, what: str) -> float:
    """Wait until the instant query ``expr`` has a sample whose value passes ``check``; returns that value."""

    def found() -> list[float]:
        return [float(s["value"][1]) for s in vector(prom, expr) if check(float(s["value"][1]))]

    return wait_until(found, timeout, what)[0]


# ------------------------------------------------------------------------------------------------------ webhook
class WebhookReceiver:
    """A tiny HTTP server (a thread) that records the JSON bodies Alertmanager POSTs to ``/alerts``."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"invalid": body.decode(errors="replace")}
                payload["_path"] = self.path
                payload["_received_at"] = time.monotonic()
                with receiver.lock:
                    receiver.received.append(payload)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def notifications(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.received)
