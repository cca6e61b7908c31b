"""The gateway's own meter of evaluation traffic: ``llm_gateway_traffic_cost_usd_total{kind="eval"}`` and
``llm_gateway_traffic_requests_total{kind="eval"}`` read from its ``/metrics``, per model. A run's cost is the
difference between its end and its start (other evaluation runs of the same models at the same time through the same
gateway count too)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

COST = "llm_gateway_traffic_cost_usd_total"
REQUESTS = "llm_gateway_traffic_requests_total"


def read_eval_traffic(gateway: str, timeout: float = 10.0) -> dict[str, tuple[float, float]]:
    """Per model: (cost in USD, requests) of the gateway's ``kind="eval"`` traffic so far."""
    request = urllib.request.Request(gateway.rstrip("/") + "/metrics", headers={"Accept": "text/plain"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode("utf-8")
    out: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("kind") != "eval" or sample.name not in (COST, REQUESTS):
                continue
            model = sample.labels.get("model", "")
            cost, requests = out.get(model, (0.0, 0.0))
            if sample.name == COST:
                cost += sample.value
            else:
                requests += sample.value
            out[model] = (cost, requests)
    return out


@dataclass
class GatewayMeter:
    """Evaluation traffic of ``models`` through ``gateway`` since :meth:`start` (or the figures of a stopped run
    that is resumed, in ``carried``)."""

    gateway: str
    models: list[str]
    baseline: dict[str, tuple[float, float]] = field(default_factory=dict)
    carried: dict[str, tuple[float, float]] = field(default_factory=dict)

    def start(self) -> None:
        self.baseline = read_eval_traffic(self.gateway)

    def since_start(self) -> dict[str, tuple[float, float]]:
        """Per model: (cost, requests) since :meth:`start`, plus what was carried over."""
        now = read_eval_traffic(self.gateway)
        out = {}
        for model in self.models:
            cost, requests = now.get(model, (0.0, 0.0))
            cost0, requests0 = self.baseline.get(model, (0.0, 0.0))
            carried_cost, carried_requests = self.carried.get(model, (0.0, 0.0))
            out[model] = (max(0.0, cost - cost0) + carried_cost, max(0.0, requests - requests0) + carried_requests)
        return out

    def spent_usd(self) -> float:
        """Cost of this invocation's evaluation traffic (carried-over cost excluded: the budget is per invocation)."""
        now = read_eval_traffic(self.gateway)
        return sum(max(0.0, now.get(m, (0.0, 0.0))[0] - self.baseline.get(m, (0.0, 0.0))[0]) for m in self.models)
