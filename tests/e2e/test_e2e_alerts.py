"""Acceptance: a real outage reaches the on-call webhook through Prometheus and Alertmanager, and so does its end.

A simulator behind the gateway gets a steady trickle of requests from the ``openai`` SDK. Prometheus scrapes the
gateway and the simulator every second with the repository's rules and a config generated from
``prometheus/prometheus.yml``; it sends alerts to a real Alertmanager run with ``prometheus/alertmanager.yml``, whose
webhook points at a small HTTP receiver in this test. The simulator is switched to fail every request
(``POST /admin/faults {"error_rate": 1.0}``): ``LLMHighErrorRatio`` must reach the webhook as ``firing`` through
the ``page`` receiver, grouped by alertname and model; its 1% ``ticket`` tier, firing meanwhile, must be held back by
the page (inhibition) and not reach the webhook while the page fires. Switched back (``{"error_rate": 0.0}``), the
page must arrive as ``resolved``.

Shortened, in this test's tmp copies only, so that the whole runs in well under two minutes (the production values
stay in the repository's files, whose timing ``prometheus/rules/tests/*.yml`` checks with ``promtool test rules``
and ``tests/deploy/test_prometheus_rules.py`` with ``amtool``):

- ``recording.yml``: the window of ``llmops:requests:rate5m`` (which ``llmops:request_errors:ratio_rate5m`` and the
  alert's volume condition read) from ``[5m]`` to ``[10s]``, so that the error ratio follows the fault in seconds;
- ``alerts.yml``: ``for:`` of ``LLMHighErrorRatio`` from ``5m`` to ``5s`` (page) and ``30m`` to ``12s`` (ticket),
  keeping the page ahead of the ticket as in production;
- ``prometheus.yml``: scrape and evaluation intervals 1 s;
- ``alertmanager.yml``: ``group_wait``/``group_interval`` of the root route and of the ``page`` and ``ticket``
  routes (30s/5m, 30s/5m, 2m/15m become 1s/2s, 1s/2s, 2s/3s), ``resolve_timeout`` 5m to 10s, and the webhook URL.

Everything else (routes and their matchers, ``group_by``, inhibition rules, receivers, the alert's expression,
labels and annotations) runs as written; the test checks that nothing else changed in the copies.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.prometheus_support import (
    ALERTMANAGER_YML,
    RULES_DIR,
    WebhookReceiver,
    alertmanager,
    alertmanager_binary,
    dump_yaml,
    find_rules,
    get_json,
    prometheus,
    prometheus_binary,
    prometheus_config,
    rule_groups,
    wait_targets_up,
    wait_until,
    wait_value,
)
from tests.support import gateway, gateway_config, simulator

ALERT = "LLMHighErrorRatio"
WINDOW = "10s"  # instead of 5m, in llmops:requests:rate5m
FOR = {"page": ("5m", "5s"), "ticket": ("30m", "12s")}  # severity -> (production, here)
ROUTE_TIMING = {  # route (None: the root) -> {field: (production, here)}
    None: {"group_wait": ("30s", "1s"), "group_interval": ("5m", "2s")},
    "page": {"group_wait": ("30s", "1s"), "group_interval": ("5m", "2s")},
    "ticket": {"group_wait": ("2m", "2s"), "group_interval": ("15m", "3s")},
}
RESOLVE_TIMEOUT = ("5m", "10s")
FIRING_WITHIN = 45.0  # seconds from the fault to the page at the webhook (here: window + for + group_wait + scrapes)
RESOLVED_WITHIN = 45.0  # seconds from the recovery to the resolved page at the webhook


# ------------------------------------------------------------------------------------------------ tmp copies
def shortened_rules(tmp: Path) -> list[Path]:
    """Copies of the rule files with the exercised rules' windows and ``for:`` shortened (nothing else)."""
    recording = rule_groups(RULES_DIR / "recording.yml")
    original_recording = copy.deepcopy(recording)
    (rate,) = find_rules(recording, "record", "llmops:requests:rate5m")
    assert rate["expr"].count("[5m]") == 1, rate["expr"]
    rate["expr"] = rate["expr"].replace("[5m]", f"[{WINDOW}]")

    alerts = rule_groups(RULES_DIR / "alerts.yml")
    original_alerts = copy.deepcopy(alerts)
    tiers = find_rules(alerts, "alert", ALERT)
    assert sorted(rule["labels"]["severity"] for rule in tiers) == ["page", "ticket"]
    for rule in tiers:
        production, here = FOR[rule["labels"]["severity"]]
        assert rule["for"] == production, f"{ALERT} {rule['labels']['severity']}: for {rule['for']}, not {production}"
        rule["for"] = here
        assert "llmops:request_errors:ratio_rate5m" in rule["expr"] and "llmops:requests:rate5m" in rule["expr"]

    # Nothing else changed: undo the edits on copies and compare with the files.
    undone = copy.deepcopy(recording)
    (rate,) = find_rules(undone, "record", "llmops:requests:rate5m")
    rate["expr"] = rate["expr"].replace(f"[{WINDOW}]", "[5m]")
    assert undone == original_recording
    undone = copy.deepcopy(alerts)
    for rule in find_rules(undone, "alert", ALERT):
        rule["for"] = FOR[rule["labels"]["severity"]][0]
    assert undone == original_alerts

    out = tmp / "rules"
    out.mkdir()
    return [dump_yaml(recording, out / "recording.yml"), dump_yaml(alerts, out / "alerts.yml")]


def shortened_alertmanager(tmp: Path, webhook: str) -> Path:
    """A copy of ``alertmanager.yml`` with the webhook pointed at ``webhook`` and shorter grouping waits."""
    original = rule_groups(ALERTMANAGER_YML)
    config = copy.deepcopy(original)
    routes = {None: config["route"]} | {route["receiver"]: route for route in config["route"]["routes"]}
    assert set(routes) == set(ROUTE_TIMING), sorted(str(r) for r in routes)
    for name, timing in ROUTE_TIMING.items():
        for field, (production, here) in timing.items():
            assert routes[name][field] == production, f"route {name}: {field} is {routes[name][field]}"
            routes[name][field] = here
    assert config["global"]["resolve_timeout"] == RESOLVE_TIMEOUT[0]
    config["global"]["resolve_timeout"] = RESOLVE_TIMEOUT[1]
    for receiver in config["receivers"]:
        receiver["webhook_configs"] = [dict(hook, url=webhook) for hook in receiver["webhook_configs"]]
        assert all(hook["send_resolved"] for hook in receiver["webhook_configs"])

    # Nothing else changed: undo the edits on a copy and compare.
    undone = copy.deepcopy(config)
    undo_routes = {None: undone["route"]} | {route["receiver"]: route for route in undone["route"]["routes"]}
    for name, timing in ROUTE_TIMING.items():
        for field, (production, _) in timing.items():
            undo_routes[name][field] = production
    undone["global"]["resolve_timeout"] = RESOLVE_TIMEOUT[0]
    for receiver, before in zip(undone["receivers"], original["receivers"], strict=True):
        receiver["webhook_configs"] = before["webhook_configs"]
    assert undone == original
    return dump_yaml(config, tmp / "alertmanager.yml")


# ------------------------------------------------------------------------------------------------ traffic
class Trickle:
    """Chat requests through the gateway, one every ``pause`` seconds, in a thread, until stopped."""

    def __init__(self, gw: str, pause: float = 0.05) -> None:
        self.client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0, timeout=10)
        self.pause = pause
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trickle", daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                self.client.chat.completions.create(
                    model="app", messages=[{"role": "user", "content": f"ping {i}"}], max_tokens=4, stream=i % 3 == 0
                )
                self.statuses.append(200)
            except openai.APIStatusError as error:
                self.statuses.append(error.status_code)
            except openai.APIError:
                self.statuses.append(-1)
            self._stop.wait(self.pause)

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def set_faults(sim: str, error_rate: float) -> None:
    response = httpx.post(f"{sim}/admin/faults", json={"error_rate": error_rate}, timeout=5)
    assert response.status_code == 200, response.text


# ------------------------------------------------------------------------------------------------ the test
def test_high_error_ratio_pages_then_resolves(tmp_path: Path) -> None:
    prometheus_binary()  # skip (or fail in CI) before starting anything
    alertmanager_binary()
    rule_files = shortened_rules(tmp_path)
    with (
        WebhookReceiver() as webhook,
        simulator("--model", "app-model", "--ttft-ms", "2", "--tokens-per-second", "0") as sim,
    ):
        config = gateway_config(
            tmp_path / "config.yaml",
            [{"name": "app", "deployments": [{"name": "app-sim", "base_url": f"{sim}/v1", "model": "app-model"}]}],
        )
        am_config = shortened_alertmanager(tmp_path, webhook.url)
        with (
            gateway(config) as gw,
            alertmanager(am_config, tmp_path / "am") as am,
        ):
            prom_config = prometheus_config(
                tmp_path / "prometheus.yml",
                targets={"llm-gateway": [gw.removeprefix("http://")], "vllm": [sim.removeprefix("http://")]},
                rule_files=rule_files,
                alertmanager=am.removeprefix("http://"),
            )
            with prometheus(prom_config, tmp_path / "prom") as prom, Trickle(gw) as trickle:
                wait_targets_up(prom, {"llm-gateway", "vllm"})
                # Healthy traffic is measured (a 0 error ratio, enough requests) and nothing is sent.
                wait_value(
                    prom, 'llmops:request_errors:ratio_rate5m{model="app"}', lambda v: v == 0, 20, "a 0 error ratio"
                )
                assert not pages(webhook), webhook.notifications()

                set_faults(sim, 1.0)
                failed_at = time.monotonic()
                firing = wait_until(
                    lambda: pages(webhook, "firing"), FIRING_WITHIN, f"{ALERT} firing at the webhook", interval=0.2
                )[0]
                fired_after = firing["_received_at"] - failed_at
                check_notification(firing, "firing")
                assert 502 in trickle.statuses

                # The ticket tier fires too, but the page of the same alertname and model holds it back.
                wait_value(
                    prom,
                    f'ALERTS{{alertname="{ALERT}", severity="ticket", alertstate="firing"}}',
                    lambda v: v == 1,
                    30,
                    "the ticket tier firing in Prometheus",
                )
                suppressed = wait_until(
                    lambda: [
                        alert
                        for alert in get_json(f"{am}/api/v2/alerts?inhibited=true")
                        if alert["labels"].get("alertname") == ALERT and alert["labels"].get("severity") == "ticket"
                    ],
                    15,
                    "the ticket tier reaching Alertmanager",
                )[0]
                assert suppressed["status"]["state"] == "suppressed", suppressed
                assert suppressed["status"]["inhibitedBy"], suppressed
                time.sleep(3)  # longer than the ticket route's group_wait: it would have been sent by now

                set_faults(sim, 0.0)
                recovered_at = time.monotonic()
                resolved = wait_until(
                    lambda: pages(webhook, "resolved"),
                    RESOLVED_WITHIN,
                    f"{ALERT} resolved at the webhook",
                    interval=0.2,
                )[0]
                resolved_after = resolved["_received_at"] - recovered_at
                check_notification(resolved, "resolved")
                assert resolved["groupKey"] == firing["groupKey"]
                assert trickle.statuses[-1] == 200

    # While the page fires, the ticket is held back. Once the fault ends, the 5xx ratio falls through the 1-5% band:
    # the page resolves first and a ticket may then go out for the errors that remain, as it would in production.
    tickets = [
        n
        for n in webhook.notifications()
        if any(a["labels"].get("alertname") == ALERT and a["labels"].get("severity") == "ticket" for a in n["alerts"])
        and n["_received_at"] < recovered_at
    ]
    assert not tickets, f"the ticket tier reached the webhook despite the page (inhibition): {tickets}"
    print(f"{ALERT}: firing at the webhook {fired_after:.1f} s after the fault, resolved {resolved_after:.1f} s after")


def pages(webhook: WebhookReceiver, status: str | None = None) -> list[dict[str, Any]]:
    """Notifications about the alert, optionally only those of ``status`` (firing, resolved)."""
    return [
        n
        for n in webhook.notifications()
        if n.get("groupLabels", {}).get("alertname") == ALERT and (status is None or n.get("status") == status)
    ]


def check_notification(notification: dict[str, Any], status: str) -> None:
    """The webhook JSON of Alertmanager: routed to ``page``, grouped by alertname and model, the alert as written."""
    assert notification["_path"] == "/alerts"
    assert notification["receiver"] == "page", notification
    assert notification["status"] == status, notification
    assert notification["groupLabels"] == {"alertname": ALERT, "model": "app"}, notification
    (alert,) = notification["alerts"]
    assert alert["status"] == status
    assert alert["labels"]["severity"] == "page"
    assert alert["labels"]["model"] == "app"
    assert alert["labels"]["stack"] == "llmops"  # Prometheus' external label
    assert alert["annotations"]["runbook"] == "docs/runbook.md#llmhigherrorratio"
    assert alert["annotations"]["summary"].startswith("app: ")
    assert "of requests fail with 5xx" in alert["annotations"]["summary"]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only 127.0.0.1 traffic: never send the test's requests through an HTTP proxy from the environment."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
