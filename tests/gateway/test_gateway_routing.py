"""Retries on another deployment, fallbacks to other models, passive health with cooldown and probing, A/B
variants sticky per user, and streams that are never retried once started — against real simulators."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from llmops.contract import TRAFFIC_HEADER, VARIANT_HEADER
from tests.support import ScriptedUpstream, free_port, gateway, gateway_config, metric, scrape, simulator

USER = [{"role": "user", "content": "one two three"}]
PRICING = {"input_per_mtok": 1.0, "output_per_mtok": 1.0}


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[str, str]]:
    """A healthy echo simulator and one that fails every request with HTTP 500."""
    common = ["--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model"]
    with simulator("--echo", *common) as ok, simulator("--echo", "--error-rate", "1.0", *common) as failing:
        yield ok, failing


@pytest.fixture(scope="module")
def dead_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def gw(sims: tuple[str, str], dead_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ok, failing = sims
    dead = f"http://127.0.0.1:{dead_port}/v1"

    def dep(name: str, url: str, weight: float = 1) -> dict:
        return {"name": name, "base_url": url, "model": "sim-model", "weight": weight}

    config = gateway_config(
        tmp_path_factory.mktemp("gw") / "config.yaml",
        [
            {
                "name": "resilient",
                "deployments": [dep("dead", dead, 1000), dep("alive", f"{ok}/v1")],
                "pricing": PRICING,
            },
            {"name": "flaky", "deployments": [dep("failing", f"{failing}/v1", 1000), dep("steady", f"{ok}/v1")]},
            {"name": "primary-down", "deployments": [dep("gone", dead)], "fallbacks": ["backup"], "pricing": PRICING},
            {"name": "backup", "deployments": [dep("backup-sim", f"{ok}/v1")], "pricing": PRICING},
            {"name": "probe", "deployments": [dep("revivable", dead)]},
            {
                "name": "chat",
                "deployments": [dep("control-sim", f"{ok}/v1")],
                "variants": [
                    {"name": "control", "weight": 1, "deployments": ["control-sim"]},
                    {"name": "candidate", "weight": 1, "model": "backup"},
                ],
            },
        ],
        routing={"failure_threshold": 3, "cooldown_seconds": 30, "backoff_seconds": 0.001},
    )
    with gateway(config) as url:
        yield url


def _delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return metric(after, name, **labels) - metric(before, name, **labels)


def _chat(gw: str, model: str, **extra: object) -> httpx.Response:
    return httpx.post(f"{gw}/v1/chat/completions", json={"model": model, "messages": USER, **extra}, timeout=10)


def test_connect_errors_are_retried_and_the_dead_deployment_cools_down(gw: str) -> None:
    before = scrape(gw)
    responses = [_chat(gw, "resilient") for _ in range(20)]
    assert [r.status_code for r in responses] == [200] * 20
    assert {r.headers["x-llmops-deployment"] for r in responses} == {"alive"}
    after = scrape(gw)
    # three failures put "dead" in cooldown; afterwards it is not tried at all
    assert _delta(before, after, "llm_gateway_upstream_errors_total", deployment="dead", reason="connect") == 3
    assert _delta(before, after, "llm_gateway_retries_total", deployment="dead") == 3
    assert metric(after, "llm_gateway_deployment_healthy", model="resilient", deployment="dead") == 0
    assert metric(after, "llm_gateway_deployment_healthy", model="resilient", deployment="alive") == 1
    # nothing is double-charged: 20 requests of 3 input + 3 output tokens at 1 USD per million
    assert _delta(before, after, "llm_gateway_cost_usd_total", model="resilient") == pytest.approx(20 * 6 / 1e6)
    assert _delta(before, after, "llm_gateway_requests_total", model="resilient", status="200") == 20


def test_5xx_is_retried_on_another_deployment(gw: str) -> None:
    before = scrape(gw)
    assert [_chat(gw, "flaky").status_code for _ in range(5)] == [200] * 5
    after = scrape(gw)
    assert 1 <= _delta(before, after, "llm_gateway_upstream_errors_total", deployment="failing", reason="http_5xx") <= 3


def test_client_errors_are_not_retried(gw: str) -> None:
    before = scrape(gw)
    response = _chat(gw, "backup", simulate={"fault": "error", "status": 400, "message": "bad request"})
    assert response.status_code == 400
    after = scrape(gw)
    assert _delta(before, after, "llm_gateway_retries_total") == 0


def test_fallback_model_serves_when_all_deployments_fail(gw: str) -> None:
    before = scrape(gw)
    client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="primary-down", messages=USER)
    completion = raw.parse()
    assert completion.model == "primary-down"  # the client sees the name it asked for ...
    assert raw.headers["x-llmops-deployment"] == "backup-sim"  # ... and the headers say who served
    assert raw.headers["x-llmops-served-by-model"] == "backup"
    after = scrape(gw)
    assert _delta(before, after, "llm_gateway_fallbacks_total", model="primary-down", fallback_model="backup") == 1
    assert _delta(before, after, "llm_gateway_requests_total", model="primary-down", deployment="backup-sim") == 1
    assert _delta(before, after, "llm_gateway_cost_usd_total", model="primary-down") == pytest.approx(6 / 1e6)


def test_a_started_stream_is_never_retried(gw: str) -> None:
    before = scrape(gw)
    client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="backup",
        messages=[{"role": "user", "content": "a b c d e f"}],
        stream=True,
        extra_body={"simulate": {"fault": "midstream_error", "after_tokens": 2}},
    )
    with pytest.raises(openai.APIError):
        list(stream)
    after = scrape(gw)
    assert _delta(before, after, "llm_gateway_retries_total") == 0
    assert _delta(before, after, "llm_gateway_upstream_errors_total", deployment="backup-sim") == 1


def test_cooling_deployment_is_probed_back(sims: tuple[str, str], tmp_path: Path) -> None:
    port = free_port()
    config = gateway_config(
        tmp_path / "config.yaml",
        [
            {
                "name": "probe",
                "deployments": [{"name": "revivable", "base_url": f"http://127.0.0.1:{port}/v1", "model": "sim-model"}],
            }
        ],
        routing={"failure_threshold": 1, "cooldown_seconds": 0.5, "backoff_seconds": 0},
    )
    with gateway(config) as gw:
        assert _chat(gw, "probe").status_code == 502
        assert metric(scrape(gw), "llm_gateway_deployment_healthy", deployment="revivable") == 0
        # the deployment comes back; after the cooldown one request probes it and restores it
        with simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model", port=port):
            time.sleep(0.6)
            assert _chat(gw, "probe").status_code == 200
            assert metric(scrape(gw), "llm_gateway_deployment_healthy", deployment="revivable") == 1


def test_429_with_retry_after_cools_down_at_once(sims: tuple[str, str], tmp_path: Path) -> None:
    ok, _ = sims
    with ScriptedUpstream() as limited:
        limited.reply = (
            429,
            {"Content-Type": "application/json", "Retry-After": "30"},
            orjson.dumps({"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}),
        )
        config = gateway_config(
            tmp_path / "config.yaml",
            [
                {
                    "name": "m",
                    "deployments": [
                        {"name": "limited", "base_url": limited.url, "model": "sim-model", "weight": 1000},
                        {"name": "spare", "base_url": f"{ok}/v1", "model": "sim-model"},
                    ],
                }
            ],
            routing={"backoff_seconds": 0},
        )
        with gateway(config) as gw:
            assert [_chat(gw, "m").status_code for _ in range(5)] == [200] * 5
            assert len(limited.received) == 1, "after a 429 with Retry-After the deployment rests"
            assert metric(scrape(gw), "llm_gateway_deployment_healthy", deployment="limited") == 0


def test_variants_split_traffic_and_stick_to_a_user(gw: str) -> None:
    before = scrape(gw)
    sticky = {_chat(gw, "chat", user="user-42").headers["x-llmops-variant"] for _ in range(10)}
    assert len(sticky) == 1
    seen = Counter(_chat(gw, "chat", user=f"user-{i}").headers["x-llmops-variant"] for i in range(200))
    assert set(seen) == {"control", "candidate"}
    assert 60 <= seen["control"] <= 140  # weights 1:1
    after = scrape(gw)
    assert _delta(
        before, after, "llm_gateway_requests_total", model="chat", variant="candidate", deployment="backup-sim"
    ) == seen["candidate"] + (10 if sticky == {"candidate"} else 0)


def test_only_shadow_traffic_may_pin_a_variant(gw: str) -> None:
    """``x-llmops-variant`` pins the variant of a shadow request; on user, judge and eval traffic it is ignored (the
    sticky split decides); a variant the model does not have is refused with 400 in OpenAI's shape."""

    def ask(model: str, user: str, **headers: str) -> httpx.Response:
        body = {"model": model, "messages": USER, "user": user}
        return httpx.post(f"{gw}/v1/chat/completions", json=body, headers=headers, timeout=10)

    user = next(u for u in (f"user-{i}" for i in range(100)) if ask("chat", u).headers["x-llmops-variant"] == "control")
    before = scrape(gw)
    for kind in ("user", "judge", "eval", "nonsense"):
        ignored = ask("chat", user, **{TRAFFIC_HEADER: kind, VARIANT_HEADER: "candidate"})
        assert ignored.status_code == 200 and ignored.headers["x-llmops-variant"] == "control", kind
    assert ask("chat", user, **{VARIANT_HEADER: "nope"}).status_code == 200  # not even checked
    pinned = ask("chat", user, **{TRAFFIC_HEADER: "shadow", VARIANT_HEADER: "candidate"})
    assert pinned.status_code == 200
    assert pinned.headers["x-llmops-variant"] == "candidate" and pinned.headers["x-llmops-deployment"] == "backup-sim"
    after = scrape(gw)
    assert _delta(before, after, "llm_gateway_requests_total", model="chat", variant="candidate") == 1
    assert _delta(before, after, "llm_gateway_traffic_requests_total", model="chat", kind="shadow") == 1
    assert _delta(before, after, "llm_gateway_requests_total", model="chat", variant="control") == 5

    unknown = ask("chat", user, **{TRAFFIC_HEADER: "shadow", VARIANT_HEADER: "candidat"})
    assert unknown.status_code == 400
    error = unknown.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "variant_not_found"
    assert "`chat` has no variant `candidat`" in error["message"] and "control, candidate" in error["message"]
    plain = ask("backup", user, **{TRAFFIC_HEADER: "shadow", VARIANT_HEADER: "control"})
    assert plain.status_code == 400 and "it has no variants" in plain.json()["error"]["message"]


def test_revoked_key_or_wrong_model_on_one_deployment_fails_over(sims: tuple[str, str], tmp_path: Path) -> None:
    """An upstream 401 (the gateway's key) or 404 (the deployment's model) is the deployment's fault: the request
    goes to a sibling, and the deployment cools down; the client never sees either."""
    ok, _ = sims
    with ScriptedUpstream() as revoked, ScriptedUpstream() as misnamed:
        revoked.reply = (401, {"Content-Type": "application/json"}, b'{"error":{"message":"Incorrect API key"}}')
        misnamed.reply = (404, {"Content-Type": "application/json"}, b'{"error":{"message":"no such model"}}')
        config = gateway_config(
            tmp_path / "config.yaml",
            [
                {
                    "name": "m",
                    "deployments": [
                        {"name": "revoked", "base_url": revoked.url, "model": "sim-model", "weight": 1000},
                        {"name": "misnamed", "base_url": misnamed.url, "model": "sim-modle", "weight": 1000},
                        {"name": "spare", "base_url": f"{ok}/v1", "model": "sim-model"},
                    ],
                },
                {"name": "lonely", "deployments": [{"name": "only", "base_url": misnamed.url, "model": "x"}]},
            ],
            routing={"backoff_seconds": 0, "failure_threshold": 2},
        )
        with gateway(config) as gw:
            assert [_chat(gw, "m").status_code for _ in range(10)] == [200] * 10
            samples = scrape(gw)
            assert len(revoked.received) == 2 and len(misnamed.received) == 2, "each rests after two failures"
            assert metric(samples, "llm_gateway_deployment_healthy", deployment="revoked") == 0
            assert metric(samples, "llm_gateway_deployment_healthy", deployment="misnamed") == 0
            assert metric(samples, "llm_gateway_upstream_errors_total", deployment="misnamed", reason="http_4xx") == 2
            # With nothing else to try, the client gets 502 (the gateway's problem), never the upstream's 404.
            lonely = _chat(gw, "lonely")
            assert lonely.status_code == 502
            assert lonely.json()["error"]["code"] == "upstream_not_found"


def test_a_probe_answered_with_a_client_error_restores_the_deployment(tmp_path: Path) -> None:
    """After a cooldown the next request probes the deployment; if the upstream answers it with a 400 (the request
    was bad, the deployment is fine), the deployment is healthy again instead of waiting for a probe forever."""
    with ScriptedUpstream() as upstream:
        upstream.reply = (503, {"Content-Type": "application/json"}, b'{"error":{"message":"overloaded"}}')
        config = gateway_config(
            tmp_path / "config.yaml",
            [{"name": "m", "deployments": [{"name": "picky", "base_url": upstream.url, "model": "sim-model"}]}],
            routing={"failure_threshold": 1, "cooldown_seconds": 0.3, "backoff_seconds": 0, "max_attempts": 1},
        )
        with gateway(config) as gw:
            assert _chat(gw, "m").status_code == 502
            assert metric(scrape(gw), "llm_gateway_deployment_healthy", deployment="picky") == 0
            time.sleep(0.4)
            upstream.reply = (400, {"Content-Type": "application/json"}, b'{"error":{"message":"context too long"}}')
            assert _chat(gw, "m").status_code == 400
            assert metric(scrape(gw), "llm_gateway_deployment_healthy", deployment="picky") == 1
            sent = len(upstream.received)
            assert _chat(gw, "m").status_code == 400
            assert len(upstream.received) == sent + 1, "the deployment takes traffic again"


def test_model_names_with_slashes_keep_their_health_series(sims: tuple[str, str], tmp_path: Path) -> None:
    """Hugging Face-style public names ("org/model") and deployment names with "/" map to the right series."""
    config = gateway_config(
        tmp_path / "config.yaml",
        [
            {
                "name": "org/slashy",
                "deployments": [{"name": "pool/gone", "base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "x"}],
            }
        ],
        routing={"failure_threshold": 1, "backoff_seconds": 0, "max_attempts": 1},
    )
    with gateway(config) as gw:
        assert _chat(gw, "org/slashy").status_code == 502
        samples = scrape(gw)
    healthy = {labels: value for (name, labels), value in samples.items() if name == "llm_gateway_deployment_healthy"}
    assert healthy == {(("deployment", "pool/gone"), ("model", "org/slashy")): 0.0}


def test_a_probe_that_fails_beside_the_exchange_releases_the_probe() -> None:
    from gateway.health import DeploymentHealth
    from llmops.config import RoutingConfig

    now = [0.0]
    health = DeploymentHealth(RoutingConfig(failure_threshold=1, cooldown_seconds=10), clock=lambda: now[0])
    health.failure("m/d")
    assert not health.available("m/d")
    now[0] = 11.0
    assert health.available("m/d")
    health.begin("m/d")  # this request is the probe ...
    assert not health.available("m/d")  # ... so no other request probes meanwhile
    health.release("m/d")  # ... and it failed before reaching the upstream
    assert health.available("m/d"), "the next request probes instead"


def test_streams_that_break_after_the_start_cool_the_deployment_down(sims: tuple[str, str], tmp_path: Path) -> None:
    """A deployment whose streams fail mid-way (a 5xx error event after HTTP 200) is counted unhealthy like one that
    fails before the start, so it stops taking a full share of streaming traffic."""
    ok, _ = sims
    config = gateway_config(
        tmp_path / "config.yaml",
        [{"name": "m", "deployments": [{"name": "breaks", "base_url": f"{ok}/v1", "model": "sim-model"}]}],
        routing={"failure_threshold": 2, "cooldown_seconds": 30, "backoff_seconds": 0},
    )
    client_body = {"simulate": {"fault": "midstream_error", "after_tokens": 1}}
    with gateway(config) as gw:
        client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)
        for _ in range(2):
            stream = client.chat.completions.create(model="m", messages=USER, stream=True, extra_body=client_body)
            with pytest.raises(openai.APIError):
                list(stream)
        assert metric(scrape(gw), "llm_gateway_deployment_healthy", deployment="breaks") == 0


def test_overhead_excludes_failed_attempts_and_backoff(sims: tuple[str, str], tmp_path: Path) -> None:
    """llm_gateway_overhead_seconds is the gateway's own time: a first attempt that times out after 0.3 s and the
    backoff before the fallback are upstream time, not overhead."""
    ok, _ = sims
    with simulator("--echo", "--slow-rate", "1.0", "--slow-ms", "2000", "--model", "sim-model") as slow:
        config = gateway_config(
            tmp_path / "config.yaml",
            [
                {
                    "name": "m",  # the stuck deployment first, always; then the fallback model
                    "deployments": [
                        {
                            "name": "stuck",
                            "base_url": f"{slow}/v1",
                            "model": "sim-model",
                            "timeouts": {"first_byte": 0.3},
                        }
                    ],
                    "fallbacks": ["q"],
                },
                {"name": "q", "deployments": [{"name": "quick", "base_url": f"{ok}/v1", "model": "sim-model"}]},
            ],
            routing={"backoff_seconds": 0.2, "failure_threshold": 100},
        )
        with gateway(config) as gw:
            before = scrape(gw)
            responses = [_chat(gw, "m") for _ in range(3)]
            after = scrape(gw)
    assert [r.headers["x-llmops-deployment"] for r in responses] == ["quick"] * 3
    assert _delta(before, after, "llm_gateway_retries_total", deployment="stuck") == 3
    count = _delta(before, after, "llm_gateway_overhead_seconds_count", endpoint="chat")
    under_50ms = _delta(before, after, "llm_gateway_overhead_seconds_bucket", endpoint="chat", le="0.05")
    assert count == 3
    assert under_50ms == 3, "the 0.3 s timeouts and the backoff were counted as the gateway's own time"


def test_a_success_that_began_before_the_cooldown_does_not_end_it() -> None:
    """A long stream (or generation) that began while the deployment still took traffic and ends well after a 429
    with Retry-After cooled it down says nothing about the deployment since: the cooldown stands. A request that
    began after it (the probe) does end it."""
    from gateway.health import DeploymentHealth
    from llmops.config import RoutingConfig

    now = [0.0]
    health = DeploymentHealth(RoutingConfig(failure_threshold=3), clock=lambda: now[0])
    long_stream = health.begin("m|d")  # t = 0
    now[0] = 5.0
    health.failure("m|d", retry_after=30)  # t = 5: a 429, cooldown until 35
    now[0] = 6.0
    health.success("m|d", long_stream)  # the old stream ends fine
    assert not health.available("m|d"), "an old success must not clear the newer cooldown"
    now[0] = 36.0
    probe = health.begin("m|d")
    health.success("m|d", probe)
    assert health.available("m|d")
