"""The monitors worker against a real Redis: at-least-once with idempotent effects, claiming from a killed worker,
several workers sharing the load, dead letters, the backlog gauge, and `llmops monitors show`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis

from llmops.contract import SAMPLES_STREAM as STREAM
from llmops.sample import Sample
from monitors.store import DEAD_LETTERS, PROCESSED, RESULTS
from tests.support import (
    LLMOPS,
    REPO,
    free_port,
    gateway_config,
    metric,
    monitors,
    scrape,
    simulator,
    wait_for,
)


def make_sample(i: int, *, model: str = "app", answer: str | None = None, **extra: object) -> Sample:
    question = f"question number {i}"
    return Sample(
        id=f"req-{i:05d}",
        ts=time.time(),
        model=model,
        provider="openai_compatible",
        deployment="sim",
        endpoint="chat",
        key="anonymous",
        request={"model": model, "messages": [{"role": "user", "content": question}]},
        response={"text": question if answer is None else answer, "finish_reason": "stop", "logprobs": None},
        usage={"input": 3, "output": 3, "cached": 0},
        latency={"total": 0.1, "ttft": None, "per_output_token": None},
        cost_usd=0.0,
        status=200,
        **extra,  # type: ignore[arg-type]
    )


def add_samples(url: str, samples: list[Sample]) -> None:
    client = redis.Redis.from_url(url)
    for sample in samples:
        client.xadd(STREAM, {"id": sample.id, "sample": sample.to_json()})


def write_config(tmp_path: Path, redis_url: str, **monitors_section: object) -> Path:
    return gateway_config(
        tmp_path / "config.yaml",
        [{"name": "app", "deployments": [{"name": "sim", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]}],
        redis={"url": redis_url},
        monitors={"judges": ["rules"], "claim_idle_seconds": 1, **monitors_section},
    )


def judge_config(tmp_path: Path, redis_url: str, judge_url: str, gw_port: int, **monitors_section: object) -> Path:
    """A config whose one model is the judge (a simulator at ``judge_url``), judged through a gateway to be started
    on ``gw_port``."""
    return gateway_config(
        tmp_path / "config.yaml",
        [{"name": "judge", "deployments": [{"name": "judge-sim", "base_url": f"{judge_url}/v1", "model": "judge"}]}],
        redis={"url": redis_url},
        monitors={"gateway_url": f"http://127.0.0.1:{gw_port}/v1", "judge_model": "judge", **monitors_section},
    )


def test_worker_judges_commits_and_exports(tmp_path: Path, redis_url: str) -> None:
    samples = [make_sample(i) for i in range(10)] + [make_sample(10, answer="")]  # one empty answer
    add_samples(redis_url, samples)  # written before any worker exists: the group reads from the start
    with monitors(write_config(tmp_path, redis_url)) as worker:
        wait_for(lambda: metric(scrape(worker), "llm_monitor_samples_processed_total", outcome="ok") == 11)
        after = scrape(worker)
        assert metric(after, "llm_judge_score_count", model="app", judge="rules", criterion="empty_answer") == 11
        assert metric(after, "llm_judge_score_sum", model="app", judge="rules", criterion="empty_answer") == 10
        assert metric(after, "llm_judge_score_sum", model="app", judge="rules", criterion="truncated") == 11
        wait_for(lambda: metric(scrape(worker), "llm_monitor_stream_backlog", stream=STREAM) == 0)
    client = redis.Redis.from_url(redis_url)
    assert client.xpending(STREAM, "llmops-monitors")["pending"] == 0
    assert len(client.keys(PROCESSED + "*")) == 11
    result = client.hgetall(RESULTS + "req-00010")
    assert b"rules:empty_answer" in result and b"_meta" in result


def test_monitors_show_prints_results(tmp_path: Path, redis_url: str) -> None:
    add_samples(redis_url, [make_sample(1, answer="")])
    config = write_config(tmp_path, redis_url)
    with monitors(config) as worker:
        wait_for(lambda: metric(scrape(worker), "llm_monitor_samples_processed_total") == 1)
    shown = subprocess.run(
        [*LLMOPS, "monitors", "show", "req-00001", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "rules:empty_answer" in shown.stdout and "0.000" in shown.stdout
    assert "question number 1" in shown.stdout
    missing = subprocess.run(
        [*LLMOPS, "monitors", "show", "nope", "--redis-url", redis_url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "no judge results" in missing.stdout


def test_same_request_id_twice_is_judged_twice(tmp_path: Path, redis_url: str) -> None:
    """Two stream entries with one request id (a client retrying with the same x-request-id) are two samples: both
    are judged. De-duplication is per stream entry (a redelivery): tests/monitors/test_monitors_store.py."""
    sample = make_sample(1)
    add_samples(redis_url, [sample, sample])
    with monitors(write_config(tmp_path, redis_url)) as worker:
        wait_for(lambda: metric(scrape(worker), "llm_monitor_samples_processed_total") == 2)
        after = scrape(worker)
        assert metric(after, "llm_monitor_samples_duplicate_total") == 0
        assert metric(after, "llm_judge_score_count", criterion="empty_answer") == 2


def test_worker_recreates_a_lost_consumer_group(tmp_path: Path, redis_url: str) -> None:
    """The stream (and with it the group) disappears under a running worker: Redis restarted empty, FLUSHALL, or
    eviction. The gateway's next XADD recreates the stream without a group; the worker must create the group again
    and judge what arrives, and the backlog must count the stream's entries while there is no group."""
    client = redis.Redis.from_url(redis_url)
    add_samples(redis_url, [make_sample(0)])
    with monitors(write_config(tmp_path, redis_url)) as worker:
        wait_for(lambda: metric(scrape(worker), "llm_monitor_samples_processed_total") == 1)
        client.delete(STREAM)
        add_samples(redis_url, [make_sample(i) for i in range(1, 5)])
        wait_for(lambda: metric(scrape(worker), "llm_monitor_samples_processed_total") == 5)
        assert client.xinfo_groups(STREAM)[0]["name"] == b"llmops-monitors"
        wait_for(lambda: metric(scrape(worker), "llm_monitor_stream_backlog", stream=STREAM) == 0)
    assert client.xpending(STREAM, "llmops-monitors")["pending"] == 0


def test_ratings_refresh_finds_models_without_scanning_the_keyspace(tmp_path: Path, redis_url: str) -> None:
    """Feedback counted by the gateway on a configured model becomes variant ratings; the worker finds the models
    from its config (and a set of models with pairwise verdicts), never with SCAN over every key of Redis."""
    client = redis.Redis.from_url(redis_url)
    client.mset({f"llmops:req:{i}": "x" for i in range(2000)})  # what the keyspace is mostly made of
    client.hincrby("llmops:feedback_tally:app", "alpha|positive", 3)
    client.hincrby("llmops:feedback_tally:app", "beta|negative", 2)
    client.config_resetstat()
    with monitors(write_config(tmp_path, redis_url)) as worker:
        ratings = wait_for(
            lambda: (
                {
                    v: metric(scrape(worker), "llm_judge_variant_rating", model="app", variant=v)
                    for v in ("alpha", "beta")
                }
                if metric(scrape(worker), "llm_judge_variant_rating", model="app", variant="alpha")
                else None
            )
        )
        assert ratings["alpha"] > 1000 > ratings["beta"]
    assert "cmdstat_scan" not in client.info("commandstats")


def test_judge_failures_are_counted_as_failed_runs(tmp_path: Path, redis_url: str) -> None:
    """A judge model that cannot be reached: each attempt's judge run counts as an error
    (llm_judge_runs_total{outcome="error"}), the sample is tried again (``max_deliveries`` attempts in all), then
    processed with the failure recorded; the rules judge ran once per sample."""
    config = write_config(
        tmp_path,
        redis_url,
        judges=["rules", "llm_single"],
        judge_model="app",
        gateway_url=f"http://127.0.0.1:{free_port()}/v1",  # no gateway listens there
        max_deliveries=2,
    )
    add_samples(redis_url, [make_sample(i) for i in range(2)])
    with monitors(config) as worker:
        wait_for(lambda: metric(scrape(worker), "llm_monitor_samples_processed_total") == 2, timeout=60)
        after = scrape(worker)
        assert metric(after, "llm_monitor_samples_deferred_total", model="app") == 2
        assert metric(after, "llm_judge_runs_total", judge="llm_single", outcome="error") == 4
        assert metric(after, "llm_judge_runs_total", judge="llm_single", outcome="ok") == 0
        assert metric(after, "llm_judge_runs_total", judge="rules", outcome="ok") == 2
        assert metric(after, "llm_judge_errors_total", judge="llm_single", reason="llm_error") == 4
    assert redis.Redis.from_url(redis_url).hget(RESULTS + "req-00001", "llm_single:error") is not None


def test_malformed_entries_go_to_dead_letters(tmp_path: Path, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.xadd(STREAM, {"id": "bad-1", "sample": b"{not json"})
    add_samples(redis_url, [make_sample(2)])
    with monitors(write_config(tmp_path, redis_url)) as worker:
        wait_for(lambda: metric(scrape(worker), "llm_monitor_samples_processed_total") == 2)
        after = scrape(worker)
        assert metric(after, "llm_monitor_samples_processed_total", model="unknown", outcome="error") == 1
        assert metric(after, "llm_monitor_samples_processed_total", model="app", outcome="ok") == 1
    dead = client.xrange(DEAD_LETTERS)
    assert len(dead) == 1 and dead[0][1][b"id"] == b"bad-1"
    assert client.xpending(STREAM, "llmops-monitors")["pending"] == 0


def test_two_workers_share_the_load(tmp_path: Path, redis_url: str) -> None:
    config = write_config(tmp_path, redis_url, concurrency=2)
    with monitors(config) as first, monitors(config) as second:
        add_samples(redis_url, [make_sample(i) for i in range(200)])

        def done() -> tuple[float, float] | None:
            a = metric(scrape(first), "llm_monitor_samples_processed_total")
            b = metric(scrape(second), "llm_monitor_samples_processed_total")
            return (a, b) if a + b == 200 else None

        a, b = wait_for(done)
        assert a > 0 and b > 0, "both workers take entries"
        assert (
            metric(scrape(first), "llm_monitor_samples_duplicate_total")
            + metric(scrape(second), "llm_monitor_samples_duplicate_total")
            == 0
        )


def test_killed_worker_loses_nothing_and_nothing_counts_twice(tmp_path: Path, redis_url: str) -> None:
    """SIGKILL a worker in the middle of a batch of slow judge calls; a second worker claims what it left pending;
    every sample ends up processed exactly once."""
    script = tmp_path / "judge.yaml"
    script.write_text('- {match: ".*", response: "Consistent and correct. Rating: [[8]]"}\n')
    with simulator("--script", str(script), "--ttft-ms", "400", "--tokens-per-second", "0", "--model", "judge") as sim:
        gw_port = free_port()
        config = judge_config(
            tmp_path, redis_url, sim, gw_port, judges=["llm_single"], concurrency=4, claim_idle_seconds=1
        )
        from tests.support import gateway

        with gateway(config, port=gw_port):
            add_samples(redis_url, [make_sample(i) for i in range(24)])
            port = free_port()
            first = subprocess.Popen(
                [*LLMOPS, "monitors", "--config", str(config), "--metrics-port", str(port)],
                cwd=REPO,
                env={**os.environ},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            client = redis.Redis.from_url(redis_url)
            try:
                # kill it in the middle of a batch: some samples done, others delivered and being judged
                wait_for(
                    lambda: (
                        len(client.keys(PROCESSED + "*")) >= 4
                        and client.xpending(STREAM, "llmops-monitors")["pending"] > 0
                    ),
                    interval=0.01,
                )
                first.send_signal(signal.SIGKILL)
                pending = client.xpending(STREAM, "llmops-monitors")["pending"]
                first.wait()
            finally:
                if first.poll() is None:
                    first.kill()
            assert pending > 0, "the worker was killed with entries in hand"
            by_first = len(client.keys(PROCESSED + "*"))
            assert by_first < 24
            with monitors(config) as second:
                wait_for(lambda: len(client.keys(PROCESSED + "*")) == 24, timeout=60)
                wait_for(lambda: metric(scrape(second), "llm_monitor_samples_processed_total") == 24 - by_first)
                after = scrape(second)
                assert metric(after, "llm_monitor_entries_claimed_total") >= 1
                assert metric(after, "llm_judge_score_count", judge="llm_single") == 24 - by_first
                assert metric(after, "llm_judge_score_sum", judge="llm_single") == pytest.approx(
                    (24 - by_first) * 7 / 9
                )
            assert client.xpending(STREAM, "llmops-monitors")["pending"] == 0
            workers = {client.hget(RESULTS + f"req-{i:05d}", "_meta") is not None for i in range(24)}
            assert workers == {True}


def test_slow_judge_calls_are_not_taken_over_by_other_workers(tmp_path: Path, redis_url: str) -> None:
    """A judge call slower than claim_idle_seconds: the worker judging it keeps its entries (heartbeat), so the
    other workers do not claim them and call the judge model again."""
    script = tmp_path / "judge.yaml"
    script.write_text('- {match: ".*", response: "Fine. Rating: [[8]]"}\n')
    with simulator("--script", str(script), "--ttft-ms", "3500", "--tokens-per-second", "0", "--model", "judge") as sim:
        gw_port = free_port()
        config = judge_config(tmp_path, redis_url, sim, gw_port, judges=["llm_single"], claim_idle_seconds=1)
        from tests.support import gateway

        with gateway(config, port=gw_port) as gw, monitors(config) as first, monitors(config) as second:
            add_samples(redis_url, [make_sample(i) for i in range(2)])
            workers = (first, second)

            def total(name: str) -> float:
                return sum(metric(scrape(w), name) for w in workers)

            wait_for(lambda: total("llm_monitor_samples_processed_total") == 2, timeout=60)
            time.sleep(1.5)  # a takeover would show by now
            assert total("llm_monitor_entries_claimed_total") == 0
            assert total("llm_monitor_samples_duplicate_total") == 0
            assert metric(scrape(gw), "llm_gateway_requests_total", model="judge") == 2, "one judge call per sample"


def test_monitors_without_redis_says_what_to_fix(tmp_path: Path) -> None:
    config = gateway_config(
        tmp_path / "c.yaml",
        [{"name": "app", "deployments": [{"name": "sim", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]}],
    )
    result = subprocess.run(
        [sys.executable, "-m", "llmops.cli", "monitors", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "redis.url" in result.stderr


def test_pairwise_verdicts_and_feedback_rate_variants(tmp_path: Path, redis_url: str) -> None:
    """Variants answering the same prompt are compared in both orders through the gateway's judge model; the
    verdicts and user thumbs become Bradley-Terry ratings, one per source. A judge that prefers whatever it reads
    first (the BIASED pair) gives an order-inconsistent tie, counted apart from the real ones."""
    script = tmp_path / "judge.yaml"
    script.write_text(
        '- {match: "BIASED", response: "The first one. [[A]]"}\n'
        '- {match: "(?s)Assistant A\'s Answer\\\\]\\\\s*GOOD", response: "A is more helpful. [[A]]"}\n'
        '- {match: "(?s)Assistant B\'s Answer\\\\]\\\\s*GOOD", response: "B is more helpful. [[B]]"}\n'
        '- {match: ".*", response: "About the same. [[C]]"}\n'
    )
    with simulator("--script", str(script), "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "judge") as sim:
        gw_port = free_port()
        config = judge_config(tmp_path, redis_url, sim, gw_port, judges=["pairwise"])
        from tests.support import gateway

        samples = []
        for i in range(3):
            samples.append(make_sample(i, model="app", answer=f"GOOD answer {i}", variant="alpha"))
            samples.append(make_sample(100 + i, model="app", answer=f"meh {i}", variant="beta"))
            samples[-1].request = samples[-2].request  # the same prompt
        samples.append(make_sample(3, model="app", answer="BIASED one", variant="alpha"))
        samples.append(make_sample(103, model="app", answer="BIASED two", variant="beta"))
        samples[-1].request = samples[-2].request
        client = redis.Redis.from_url(redis_url)
        client.hincrby("llmops:feedback_tally:app", "alpha|positive", 3)
        client.hincrby("llmops:feedback_tally:app", "beta|negative", 2)
        with gateway(config, port=gw_port), monitors(config) as worker:
            add_samples(redis_url, samples)
            wait_for(lambda: metric(scrape(worker), "llm_monitor_samples_processed_total") == 8)
            after = scrape(worker)
            pair = {"model": "app", "variant_a": "alpha", "variant_b": "beta"}
            assert metric(after, "llm_judge_pairwise_total", winner="a", orders="agree", **pair) == 3
            assert metric(after, "llm_judge_pairwise_total", winner="b", **pair) == 0
            assert metric(after, "llm_judge_pairwise_total", winner="tie", orders="disagree", **pair) == 1
            assert metric(after, "llm_judge_pairwise_total", winner="tie", orders="agree", **pair) == 0

            def rated() -> dict | None:
                samples = scrape(worker)
                if not metric(samples, "llm_judge_pairwise_consistency_ratio", model="app"):
                    return None
                return {
                    (v, source): metric(samples, "llm_judge_variant_rating", model="app", variant=v, source=source)
                    for v in ("alpha", "beta")
                    for source in ("pairwise", "feedback")
                } | {"consistency": metric(samples, "llm_judge_pairwise_consistency_ratio", model="app")}

            ratings = wait_for(lambda: (r := rated()) and r["consistency"] == 0.75 and r)
            assert ratings["alpha", "pairwise"] > 1000 > ratings["beta", "pairwise"]
            assert ratings["alpha", "feedback"] > 1000 > ratings["beta", "feedback"]
        result = client.hgetall(RESULTS + samples[1].id)
        assert b"pairwise:alpha:beta" in result


def test_judge_calls_join_the_judged_requests_trace(tmp_path: Path, redis_url: str) -> None:
    from tests.support import ScriptedUpstream, gateway

    with ScriptedUpstream() as judge:
        judge.reply = (
            200,
            {"Content-Type": "application/json"},
            orjson.dumps(
                {
                    "id": "j",
                    "object": "chat.completion",
                    "model": "judge",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Fine. Rating: [[9]]"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
                }
            ),
        )
        gw_port = free_port()
        config = gateway_config(
            tmp_path / "config.yaml",
            [{"name": "judge", "deployments": [{"name": "rec", "base_url": judge.url, "model": "judge"}]}],
            redis={"url": redis_url},
            monitors={
                "gateway_url": f"http://127.0.0.1:{gw_port}/v1",
                "judge_model": "judge",
                "judges": ["llm_single"],
            },
        )
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        add_samples(redis_url, [make_sample(1, trace_id=trace_id)])
        with gateway(config, port=gw_port), monitors(config) as worker:
            wait_for(lambda: metric(scrape(worker), "llm_monitor_samples_processed_total") == 1)
            assert metric(scrape(worker), "llm_judge_score_sum", judge="llm_single") == pytest.approx(8 / 9)
        traceparent = judge.received[-1]["headers"]["traceparent"]
        assert traceparent.startswith(f"00-{trace_id}-")
    shown = subprocess.run(
        [*LLMOPS, "monitors", "show", "req-00001", "--redis-url", redis_url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert trace_id in shown.stdout  # from a score to the request's trace


def test_worker_runs_drift_detection_and_serves_the_report(tmp_path: Path, redis_url: str) -> None:
    config = write_config(
        tmp_path,
        redis_url,
        drift={"window": 20, "every": 20, "min_samples": 10, "every_seconds": 1, "reports_dir": str(tmp_path / "r")},
    )
    # a reference window of short English prompts, then a current window of long Korean ones

    def korean(i: int) -> Sample:
        sample = make_sample(i)
        sample.request["messages"][0]["content"] = "서울은 대한민국의 수도이며 가장 큰 도시입니다 " * 8
        return sample

    add_samples(redis_url, [make_sample(i) for i in range(20)])
    with monitors(config) as worker:
        # the first full window becomes the reference; runs start once Evidently is imported (a few seconds)
        wait_for(lambda: metric(scrape(worker), "llm_drift_last_run_timestamp_seconds", model="app") > 0, timeout=60)
        add_samples(redis_url, [korean(i) for i in range(20, 40)])
        # Runs come every `every` samples or `every_seconds` after the last one while traffic flows: the run the
        # first Korean sample triggers sees a mixed window, and the count may not reach `every` again. Traffic goes
        # on, one Korean sample a second, as it would in production, until a run has seen a Korean window.
        more = iter(range(40, 200))
        last_added = [time.monotonic()]

        def drifted() -> dict | None:
            samples = scrape(worker)
            if metric(samples, "llm_drift_share", model="app") > 0:
                return samples
            if time.monotonic() - last_added[0] > 1.0:
                add_samples(redis_url, [korean(next(more))])
                last_added[0] = time.monotonic()
            return None

        after = wait_for(drifted, timeout=60)
        assert metric(after, "llm_drift_detected", model="app", feature="prompt_script") == 1
        assert metric(after, "llm_drift_detected", model="app", feature="latency_seconds") == 0
        import httpx

        # the report is written in the background after the run (Evidently's HTML takes a second or two)
        report = wait_for(
            lambda: (r := httpx.get(f"{worker}/reports/app", timeout=60)).status_code == 200 and r,
            timeout=60,
            interval=0.5,
        )
        assert "<html" in report.text.lower()
        assert httpx.get(f"{worker}/reports/nope", timeout=30).status_code == 404
