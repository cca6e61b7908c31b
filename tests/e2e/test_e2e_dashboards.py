"""Acceptance: every query of every Grafana dashboard parses in a real Prometheus and returns data from the real stack.

The stack: Redis, a vLLM-like simulator for the application model (two deployments as A/B variants ``alpha`` and
``beta``, a fallback model), a second simulator scripted as the judge model, the gateway (API keys with an rpm limit
and a spend budget, sampling 1.0), a monitors worker (rules, reference, llm_single and pairwise judges),
``llmops gpu-exporter`` (where it finds no GPU, the same exporter code reading the fake NVML of
``tests/gpu/test_gpu_exporter.py`` stands in, so the GPU rules and panels still run on the exporter's real output), and
Prometheus 2.x scraping them every second with the repository's own rule files
(``prometheus/rules/*.yml``, by absolute path) and a config generated from ``prometheus/prometheus.yml`` (each job
re-targeted at this test's processes). Traffic comes from the official ``openai`` SDK in three waves a few scrapes
apart (so that rates and quantiles have increases to work on): plain and streamed answers, 500s injected with the
simulator's per-request ``simulate`` field (they go through a retry and a fallback and end as 502), requests over
a key's rpm and over a key's budget, feedback (``POST /v1/feedback``), a sample the judge cannot score, and the
same prompt answered by both variants (pairwise verdicts).

Then every target of every panel of ``grafana/dashboards/*.json`` runs through ``/api/v1/query`` with Grafana's
variables substituted (``.*`` for the multi-value ``$model``, ``$key`` and ``$model_name``, ``1m`` for
``$__rate_interval``): each must parse and return at least one finite value, unless its panel is in
``EXPECTED_EMPTY``, which must then really be empty (so the list cannot rot). The dashboards' template variable
queries (``label_values(...)``) must find values too, every rule of ``prometheus/rules`` must evaluate without error
on these real series (``/api/v1/rules`` health ``ok``), and every recording rule must have data (the 1h, 1d and 3d
windows too: Prometheus extrapolates from the few seconds of samples there are).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.prometheus_support import (
    DASHBOARDS_DIR,
    RULES_DIR,
    finite,
    get_json,
    prometheus,
    prometheus_binary,
    prometheus_config,
    query,
    vector,
    wait_targets_up,
    wait_until,
    wait_value,
)
from tests.support import (
    free_port,
    gateway,
    gateway_config,
    metric,
    monitors,
    redis_server,
    running,
    scrape,
    simulator,
)

# Grafana's built-in variables, as Grafana would expand them for a 1 s scrape interval and a short time range.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600"}

# Panel title (every query of the panel) or exact expression -> why it has no data in this test. An entry whose
# query does return data fails the test, so that the list cannot rot. GPU panels read a fake-NVML exporter when there
# is no GPU, drift panels read the worker's drift runs (small windows below). Human review and shadow comparisons
# need reviewers and a shadow config, which this stack has not: their series are checked on the worker's /metrics
# by tests/monitors/test_review_browser.py (votes, agreement) and tests/monitors/test_shadow.py (shadow requests).
_REVIEW = "no reviewer votes or shadow comparisons here (tests/monitors/test_review_browser.py, test_shadow.py)"
EXPECTED_EMPTY: dict[str, str] = {
    # (its third query, the configured floor, has data: only the agreement itself is empty)
    'max by (model, judge, ties) (llm_judge_human_agreement_ratio{model=~".*"})': _REVIEW,
    'max by (model, ties) (llm_review_inter_reviewer_agreement_ratio{model=~".*"})': _REVIEW,
    "Judge-human kappa, position bias and rank correlation": _REVIEW,
    "Review votes and queues": _REVIEW,
    "Shadow comparisons": _REVIEW,
}

# Dashboards whose data another end-to-end test makes, and checks the same way (this stack runs no evaluation).
CHECKED_ELSEWHERE = {"llm-evaluation.json": "tests/eval/test_eval_e2e.py (llmops eval, the Pushgateway)"}


def dashboard_files(names: list[str] | None = None) -> list[Path]:
    """The dashboards named, else every dashboard this test checks (those of CHECKED_ELSEWHERE left out)."""
    paths = sorted(DASHBOARDS_DIR.glob("*.json"))
    if names is not None:
        return [path for path in paths if path.name in names]
    return [path for path in paths if path.name not in CHECKED_ELSEWHERE]


KEYS = {
    "team-a": {},
    "team-b": {},
    "team-limited": {"rpm": 1},  # the second request of a minute gets 429 (llm_gateway_rate_limited_total)
    "team-budget": {"budget_usd": 0.000001, "budget_period": "total"},  # spent after one answer: then 429
    "monitors": {},  # the judges' key
}


SYSTEM_PROMPT = (
    "You are the assistant of a small library. Answer in one short sentence, politely, using the house rules: books "
    "are lent for three weeks, renewals are possible twice unless another reader reserved the book, late returns cost "
    "ten cents a day, and lost books are replaced at the list price."
)


def _secret(name: str) -> str:
    return f"sk-e2e-{name}"


def expected_empty(drift_exported: bool) -> dict[str, str]:
    """The entries of EXPECTED_EMPTY that apply here (drift series must be exported: the worker runs drift)."""
    assert drift_exported, "the monitors worker exports no llm_drift_* series: drift detection is not running"
    return dict(EXPECTED_EMPTY)


# ------------------------------------------------------------------------------------------------ dashboards
def substitute(expr: str, variables: dict[str, str]) -> str:
    """``expr`` with ``$name``, ``${name}``, ``${name:format}`` and ``[[name]]`` replaced; unknown names fail."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        assert name in variables, f"unknown template variable ${name} in {expr!r}"
        return variables[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)


def dashboard_variables(dashboard: dict[str, Any]) -> dict[str, str]:
    """The dashboard's variables as Grafana expands them with "All" selected (or the text box default)."""
    variables = dict(BUILTINS)
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("includeAll"):
            variables[var["name"]] = var.get("allValue") or ".*"
        else:
            current = var.get("current", {}).get("value")
            variables[var["name"]] = current if isinstance(current, str) else var.get("query", "")
    return variables


def panel_queries(names: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    """``(dashboard file, panel title, refId, expression with variables substituted)`` of every panel target."""
    out = []
    for path in dashboard_files(names):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        variables = dashboard_variables(dashboard)
        panels = list(dashboard.get("panels", []))
        for panel in list(panels):
            panels += panel.get("panels", [])  # panels inside collapsed rows
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((path.name, panel["title"], target["refId"], substitute(target["expr"], variables)))
    return out


def variable_queries(names: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    """``(dashboard file, variable, series selector, label)`` of every ``label_values(selector, label)`` variable."""
    out = []
    for path in dashboard_files(names):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        variables = dashboard_variables(dashboard)
        for var in dashboard.get("templating", {}).get("list", []):
            if var.get("type") != "query":
                continue
            raw = var["query"] if isinstance(var["query"], str) else var["query"].get("query", "")
            match = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", raw)
            assert match, f"{path.name}: variable {var['name']}: unexpected query {raw!r}"
            out.append((path.name, var["name"], substitute(match.group(1), variables), match.group(2)))
    return out


# ------------------------------------------------------------------------------------------------ the stack
def judge_script(path: Path) -> Path:
    """The judge model's answers: no verdict for UNJUDGEABLE, not even when reminded (a judge error, "unparseable"),
    pairwise verdicts for the GOOD answer, else an MT-Bench single rating."""
    rules = [
        {"match": "UNJUDGEABLE", "response": "I would rather not rate this one."},
        {"match": "did not end with a rating in the required form", "response": "Still no rating, sorry."},
        {"match": r"(?s)Assistant A's Answer\]\s*GOOD", "response": "A is more helpful. [[A]]"},
        {"match": r"(?s)Assistant B's Answer\]\s*GOOD", "response": "B is more helpful. [[B]]"},
        {"match": r"(?s)Assistant A's Answer", "response": "About the same. [[C]]"},
        {"match": ".*", "response": "Helpful, correct and concise. Rating: [[7]]"},
    ]
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def stack_config(path: Path, app_sim: str, judge_sim: str, redis_url: str, gw_port: int) -> Path:
    per_token = {"input_per_mtok": 0.5, "output_per_mtok": 1.5, "cached_input_per_mtok": 0.25}
    return gateway_config(
        path,
        [
            {
                "name": "app",
                "deployments": [
                    {"name": "app-a", "base_url": f"{app_sim}/v1", "model": "app-model"},
                    {"name": "app-b", "base_url": f"{app_sim}/v1", "model": "app-model"},
                ],
                "variants": [{"name": "alpha", "deployments": ["app-a"]}, {"name": "beta", "deployments": ["app-b"]}],
                "pricing": per_token,
                "fallbacks": ["backup"],
                "sampling": {"rate": 1.0},
                "slos": [  # quality SLOs: their rules are generated from this config (quality_rules)
                    {
                        "name": "no_refusals",
                        "judge": "rules",
                        "criterion": "refusal",
                        "good_above": 0.5,
                        "objective": 0.99,
                    },
                    {
                        "name": "helpful",
                        "judge": "llm_single",
                        "criterion": "overall",
                        "good_above": 0.6,
                        "objective": 0.95,
                    },
                    {"name": "stable", "max_drift_share": 0.5, "objective": 0.95},
                ],
            },
            {
                "name": "backup",  # self-hosted: priced by GPU time (the served-throughput panel reads it)
                "deployments": [{"name": "backup-sim", "base_url": f"{app_sim}/v1", "model": "app-model"}],
                "pricing": {"gpu_hour_usd": 2.5, "gpus": 1},
            },
            {
                "name": "judge",
                "deployments": [{"name": "judge-sim", "base_url": f"{judge_sim}/v1", "model": "judge"}],
                "pricing": per_token,
            },
        ],
        redis={"url": redis_url},
        routing={"backoff_seconds": 0.001},
        keys=[
            {"name": name, "sha256": hashlib.sha256(_secret(name).encode()).hexdigest(), **limits}
            for name, limits in KEYS.items()
        ],
        monitors={
            "gateway_url": f"http://127.0.0.1:{gw_port}/v1",
            "judge_model": "judge",
            "judge_api_key": _secret("monitors"),
            "judges": ["rules", "reference", "llm_single", "pairwise"],
            # small windows so that drift runs after a few samples, once the worker runs drift detection
            "drift": {"window": 10, "every": 10, "min_samples": 10, "every_seconds": 2},
        },
    )


def quality_rules(config: Path, path: Path) -> Path:
    """``llmops slo rules`` for this test's config (its model is not deploy/config.yaml's), every group evaluated at
    the global interval (1 s) like everything else here, so the 3d and 30d windows have data too."""
    from llmops.config import load_config
    from llmops.slo import render_rules

    rules = yaml.safe_load(render_rules(load_config(config)))
    for group in rules["groups"]:
        group.pop("interval", None)
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return path


class Traffic:
    """The application's clients (one per key) and what they sent."""

    def __init__(self, gw: str) -> None:
        self.gw = gw
        self.clients = {
            name: openai.OpenAI(base_url=f"{gw}/v1", api_key=_secret(name), max_retries=0, timeout=30) for name in KEYS
        }
        self.users: dict[str, str] = {}  # variant -> a user the gateway routes to it (sticky A/B split)
        self.statuses: list[int] = []

    def chat(
        self,
        key: str,
        content: str,
        stream: bool = False,
        user: str | None = None,
        system: str | None = None,
        **extra: Any,
    ) -> tuple[int, dict[str, str]]:
        """One chat request; returns (HTTP status, response headers)."""
        client = self.clients[key]
        messages = [{"role": "user", "content": content}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        kwargs: dict[str, Any] = {"model": "app", "messages": messages}
        if user:
            kwargs["user"] = user
        if extra:
            kwargs["extra_body"] = extra
        try:
            if stream:
                with client.chat.completions.with_streaming_response.create(stream=True, **kwargs) as response:
                    chunks = list(response.parse())
                    assert chunks, "an empty stream"
                    status, headers = response.status_code, dict(response.headers)
            else:
                raw = client.chat.completions.with_raw_response.create(**kwargs)
                raw.parse()
                status, headers = raw.status_code, dict(raw.headers)
        except openai.APIStatusError as error:
            status, headers = error.status_code, dict(error.response.headers)
        self.statuses.append(status)
        return status, headers

    def find_variant_users(self) -> None:
        """Users the gateway's sticky split sends to each variant (read back from x-llmops-variant)."""
        for i in range(64):
            status, headers = self.chat("team-a", f"hello number {i}", user=f"user-{i}")
            assert status == 200, status
            self.users.setdefault(headers["x-llmops-variant"], f"user-{i}")
            if len(self.users) == 2:
                return
        raise AssertionError(f"64 users all landed on {sorted(self.users)}")

    def feedback(self, request_id: str, rating: str) -> None:
        """Rate an answer with the key that asked for it (feedback.policy same_key)."""
        response = httpx.post(
            f"{self.gw}/v1/feedback",
            json={"request_id": request_id, "rating": rating},
            headers={"Authorization": f"Bearer {_secret('team-a')}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text

    def wave(self, n: int) -> None:
        """One round of everything the dashboards show."""
        question = f"wave {n}: what is the capital of country number {n}"
        # The same prompt answered by both variants: the pairwise judge compares them (alpha's answer is GOOD).
        ids = {}
        for variant, answer in (("alpha", f"GOOD answer {n}"), ("beta", f"meh answer {n}")):
            status, headers = self.chat(
                "team-a",
                question,
                user=self.users[variant],
                simulate={"response": answer},
                metadata={"reference": f"GOOD answer {n}"},
            )
            assert status == 200 and headers["x-llmops-variant"] == variant, (status, headers)
            ids[variant] = headers["x-request-id"]
        self.feedback(ids["alpha"], "positive")
        self.feedback(ids["beta"], "negative")
        # Streamed and plain answers on another key.
        for i in range(3):
            status, _ = self.chat("team-b", f"wave {n} stream {i}: tell me a story about a lighthouse", stream=True)
            assert status == 200, status
        status, _ = self.chat("team-b", f"wave {n}: name a primary colour", metadata={"reference": "red"})
        assert status == 200, status
        # An upstream 500: the variant's deployment fails, the fallback model's too (same simulate field): 502.
        status, _ = self.chat("team-a", f"wave {n}: fail please", simulate={"fault": "error", "status": 500})
        assert status == 502, status
        # Over the rpm limit (1 per minute): the second one at least gets 429.
        for _ in range(2):
            self.chat("team-limited", f"wave {n}: limited")
        # Over the budget after the first answer.
        self.chat("team-budget", f"wave {n}: spend")
        # A sample the judge cannot rate (llm_judge_errors_total{judge="llm_single", reason="unparseable"}).
        status, _ = self.chat("team-a", f"wave {n}: UNJUDGEABLE question")
        assert status == 200, status
        # A shared system prompt: the simulator's prefix cache answers it from the second time on (cached input
        # tokens at the cached price: prompt-cache savings).
        status, _ = self.chat("team-b", f"wave {n}: which rule applies?", system=SYSTEM_PROMPT)
        assert status == 200, status
        # Personal data in a prompt: masked in the sample (llm_gateway_pii_masked_total).
        status, _ = self.chat("team-b", f"wave {n}: write to e2e.user@example.com or call 010-1234-5678")
        assert status == 200, status
        # A stream the upstream cuts before its usage: charged from the gateway's estimate.
        body = {"model": "app", "messages": [{"role": "user", "content": f"wave {n}: cut me"}], "stream": True}
        body["simulate"] = {"fault": "disconnect", "after_tokens": 2}
        headers = {"Authorization": f"Bearer {_secret('team-b')}"}
        with httpx.stream("POST", f"{self.gw}/v1/chat/completions", json=body, headers=headers, timeout=30) as cut:
            cut.read()


# ------------------------------------------------------------------------------------------------ the test
@contextmanager
def gpu_exporters(port: int) -> Iterator[list[str]]:
    """``llmops gpu-exporter`` on ``port``; where it finds no GPU (``llm_gpu_up 0``), also the same exporter code
    reading a fake NVML (tests/gpu/test_gpu_exporter.py) with one busy 80 GiB GPU, so that the GPU rules and panels run
    on the exporter's real output format. Yields the ``host:port`` targets."""
    with running(["gpu-exporter", "--host", "127.0.0.1", "--port", str(port)], f"http://127.0.0.1:{port}/health"):
        targets = [f"127.0.0.1:{port}"]
        if metric(scrape(f"http://127.0.0.1:{port}"), "llm_gpu_up") == 1:
            yield targets
            return
        from llmops.gpu_exporter import GpuCollector, make_exporter_server
        from tests.gpu.test_gpu_exporter import GIB, FakeNVML, gpu

        fake = FakeNVML(
            [gpu(uuid=b"GPU-e2e00000-0000-0000-0000-000000000001", util=57, memory=(70 * GIB, 80 * GIB), temp=61)]
        )
        server, collector = make_exporter_server("127.0.0.1", 0, collector=GpuCollector(nvml=fake))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield [*targets, f"127.0.0.1:{server.server_address[1]}"]
        finally:
            server.shutdown()
            server.server_close()
            collector.close()
            thread.join(5)


def test_every_dashboard_query_returns_data(tmp_path: Path) -> None:
    prometheus_binary()  # skip (or fail in CI) before starting anything
    queries = panel_queries()
    assert len(queries) > 50, "dashboards not found or empty"
    script = judge_script(tmp_path / "judge.yaml")
    gw_port, worker_port = free_port(), free_port()
    fast = ("--ttft-ms", "5", "--tokens-per-second", "500")
    with (
        redis_server() as redis_url,
        simulator("--echo", "--model", "app-model", "--enable-prompt-tokens-details", *fast) as app_sim,
        simulator("--script", str(script), "--model", "judge", "--ttft-ms", "0", "--tokens-per-second", "0") as jsim,
    ):
        config = stack_config(tmp_path / "config.yaml", app_sim, jsim, redis_url, gw_port)
        with (
            gateway(config, port=gw_port) as gw,
            monitors(config, port=worker_port) as worker,
            gpu_exporters(free_port()) as gpu_targets,
        ):
            prom_config = prometheus_config(
                tmp_path / "prometheus.yml",
                targets={
                    "llm-gateway": [gw.removeprefix("http://")],
                    "llmops-monitors": [worker.removeprefix("http://")],
                    "vllm": [app_sim.removeprefix("http://"), jsim.removeprefix("http://")],
                    "gpu-exporter": gpu_targets,
                },
                rule_files=[
                    *sorted(p for p in RULES_DIR.glob("*.yml") if p.name != "quality_slo.yml"),
                    quality_rules(config, tmp_path / "quality_slo.yml"),
                ],
            )
            with prometheus(prom_config, tmp_path / "prom") as prom:
                wait_targets_up(prom, {"llm-gateway", "llmops-monitors", "vllm", "gpu-exporter"})
                traffic = Traffic(gw)
                traffic.find_variant_users()
                for n in range(3):
                    traffic.wave(n)
                    settle(prom, gw, worker)
                drift_exported = "llm_drift_share" in httpx.get(f"{worker}/metrics", timeout=5).text
                check_dashboards(prom, queries, expected_empty(drift_exported), drift_exported)
                check_variables(prom)
                check_rules(prom)


def settle(prom: str, gw: str, worker: str, timeout: float = 30.0) -> None:
    """Wait until the worker has processed every queued sample and Prometheus has scraped that."""
    queued = wait_until(
        lambda: metric(scrape(gw), "llm_gateway_samples_total", outcome="queued"), timeout, "samples queued"
    )
    wait_until(
        lambda: metric(scrape(worker), "llm_monitor_samples_processed_total") >= queued,
        timeout,
        f"the worker processing {queued:g} samples",
    )
    wait_value(
        prom,
        'sum(llm_monitor_samples_processed_total{job="llmops-monitors"})',
        lambda v: v >= queued,
        timeout,
        f"Prometheus scraping {queued:g} processed samples",
    )
    time.sleep(1.5)  # one more scrape and rule evaluation of everything else


def check_dashboards(
    prom: str, queries: list[tuple[str, str, str, str]], empty: dict[str, str], drift_exported: bool
) -> None:
    def allowed(title: str, expr: str) -> str | None:
        return empty.get(title) or empty.get(expr)

    def missing() -> list[str]:
        out = []
        for file, title, ref, expr in queries:
            if not allowed(title, expr) and not finite(vector(prom, expr)):
                out.append(f"{file} / {title} / {ref}: {expr}")
        return out

    # Recording rules and drift runs may lag a few evaluations behind the last scrape: poll, bounded.
    deadline = time.monotonic() + (30 if drift_exported else 10)
    while (gaps := missing()) and time.monotonic() < deadline:
        time.sleep(1)

    problems = []
    for file, title, ref, expr in queries:
        answer = query(prom, expr)
        if answer.get("status") != "success":
            problems.append(f"{file} / {title} / {ref}: does not run: {answer.get('error')}\n    {expr}")
            continue
        samples = finite(vector(prom, expr))
        has_data = bool(samples)
        shown = ", ".join(f"{_labels(s['metric'])}={float(s['value'][1]):.4g}" for s in samples[:4])
        print(f"{file} / {title} / {ref}: {len(samples)} series: {shown}")
        reason = allowed(title, expr)
        if reason and has_data:
            problems.append(f"{file} / {title} / {ref}: listed as expected empty ({reason}) but has data: {expr}")
    problems += [f"no data: {gap}" for gap in gaps]
    assert not problems, "\n".join(problems)


def _labels(metric: dict[str, str]) -> str:
    return "{" + ",".join(f"{k}={v}" for k, v in sorted(metric.items()) if k != "__name__") + "}"


def check_variables(prom: str) -> None:
    problems = []
    for file, name, selector, label in variable_queries():
        answer = get_json(f"{prom}/api/v1/series?" + httpx.QueryParams({"match[]": selector}).__str__())
        values = {series.get(label) for series in answer.get("data", [])} - {None}
        if answer.get("status") != "success" or not values:
            problems.append(f"{file}: variable {name}: label_values({selector}, {label}) finds nothing: {answer}")
    assert not problems, "\n".join(problems)


def check_rules(prom: str) -> None:
    """Every rule evaluates without error on the real series, and every recording rule has data."""
    groups = get_json(f"{prom}/api/v1/rules")["data"]["groups"]
    problems = []
    for group in groups:
        for rule in group["rules"]:
            name = rule["name"]
            if rule["health"] != "ok":
                problems.append(f"{group['name']} / {name}: {rule['health']}: {rule.get('lastError')}")
            if rule["type"] != "recording":
                continue
            samples = finite(vector(prom, name))
            print(f"rule {name}: {len(samples)} series")
            if not samples:
                problems.append(f"{group['name']} / {name}: no data")
    assert not problems, "\n".join(problems)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only 127.0.0.1 traffic: never send the test's requests through an HTTP proxy from the environment."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
