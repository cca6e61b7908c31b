"""Served throughput of GPU-priced deployments, shared by gateway processes through Redis.

Hand-computed window arithmetic with fake clocks; counters syncing through a real ``redis-server`` (killed and
restarted mid-test); two processes' charges adding up to the GPU's cost once, not twice; and real gateway processes
in front of one simulator, one of which sees the throughput another served.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
from openai import OpenAI

from gateway.pricing import GpuTimeCost, Usage
from gateway.throughput import ServedTokens, ThroughputSync
from tests.support import gateway, gateway_config, metric, redis_server, scrape, simulator, wait_for


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_local_window_hand_computed() -> None:
    mono = Clock(100.0)
    served = ServedTokens("m/d", window_seconds=60, bucket_seconds=5, clock=mono, wall_clock=Clock(1_000.0))
    mono.now = 110.0  # 10 s old: the span is its age
    served.add(300)
    served.add(200)
    assert served.tokens_per_second() == pytest.approx(500 / 10)
    mono.now = 200.0  # 100 s old: the span is the window, and the 500 tokens have left it
    served.add(120)
    assert served.tokens_per_second() == pytest.approx(120 / 60)
    assert not served.shared


def test_window_buckets_and_dirty_totals() -> None:
    wall = Clock(1_003.0)  # bucket 200 (5 s buckets)
    served = ServedTokens("m/d", window_seconds=60, bucket_seconds=5, clock=Clock(0.0), wall_clock=wall)
    served.synced = True  # as a ThroughputSync sets it
    assert served.window_buckets(1_003.0) == list(range(189, 201))  # 12 buckets: [945 s, now]
    served.add(10)
    wall.now = 1_006.0  # bucket 201
    served.add(5)
    served.add(0)  # nothing served: not counted
    assert served.take_dirty(1_006.0) == {200: 10, 201: 5}
    assert served.take_dirty(1_006.0) == {}
    served.add(1)  # the bucket's total, not the increment, goes to Redis
    assert served.take_dirty(1_006.0) == {201: 6}
    served.sync_failed({200: 10, 201: 6})
    assert served.take_dirty(1_006.0) == {200: 10, 201: 6}
    served.sync_failed({200: 10})
    assert served.take_dirty(1_070.0) == {}  # bucket 200 has left the window: forgotten
    assert served.bucket_key(201) == "llmops:served:m/d:201"


def test_shared_estimate_hand_computed_and_going_stale() -> None:
    mono = Clock(50.0)
    served = ServedTokens("m/d", window_seconds=60, bucket_seconds=5, clock=mono, wall_clock=Clock(1_003.0))
    served.synced = True
    served.add(40)  # this process's own: 40 tokens in 1 s of age -> 40 tokens/s locally
    served.take_dirty(1_003.0)
    # The fleet served 6,000 tokens in the window; counting began long ago: the span runs from the oldest bucket's
    # start (189 * 5 = 945 s) to the read (1,003 s): 58 s.
    served.set_shared(6_000, since_wall=0.0, now_wall=1_003.0)
    assert served.shared
    assert served.tokens_per_second() == pytest.approx(6_000 / 58)
    mono.now = 51.0  # one second later, 58 more tokens served here, not yet synced
    served.add(58)
    assert served.tokens_per_second() == pytest.approx((6_000 + 58) / 59)
    # A young fleet (counting began 20 s before the read) divides by its age.
    served.set_shared(6_000, since_wall=983.0, now_wall=1_003.0)
    assert served.tokens_per_second() == pytest.approx(6_058 / 20)
    mono.now = 51.0 + served.stale_after + 0.5  # no sync since: this process's own window again
    assert not served.shared
    assert served.tokens_per_second() == pytest.approx(served.local_tokens_per_second())


def test_gpu_time_cost_uses_the_fleet_throughput() -> None:
    """2.5 USD/h = 6.944e-4 USD/s; the fleet serves 1,000 tokens/s, this process a tenth: price from the 1,000."""
    mono = Clock(500.0)
    gpu = GpuTimeCost(gpu_hour_usd=2.5, gpus=1, min_tokens_per_second=50, clock=mono, key="m/d")
    for _ in range(10):
        gpu.cost(Usage(input=50, output=50))  # 1,000 local tokens in the 500 s-old process: 16.7 tokens/s locally
    gpu.served.synced = True
    gpu.served.take_dirty(1_000.0)
    gpu.served.set_shared(60_000, since_wall=0.0, now_wall=1_000.0)  # window [945, 1000] s: 55 s
    expected_rate = 60_000 / 55
    cost = gpu.cost(Usage(input=500, output=200))
    assert cost == pytest.approx(700 * (2.5 / 3600) / ((60_000 + 700) / 55))
    assert gpu.served_tokens_per_second() == pytest.approx((60_000 + 700) / 55)
    assert expected_rate > 1_000


def test_two_processes_share_their_counts_through_real_redis() -> None:
    async def scenario(url: str) -> tuple[float, float, float]:
        a = ServedTokens("llama/vllm-a")
        b = ServedTokens("llama/vllm-a")
        sync_a, sync_b = ThroughputSync(url, [a], interval=60), ThroughputSync(url, [b], interval=60)
        await sync_a.start()
        await sync_b.start()
        try:
            a.add(3_000)
            b.add(1_000)
            assert await sync_a.sync_once()
            assert await sync_b.sync_once()
            assert await sync_a.sync_once()  # a now reads b's counts too
            return a.tokens_per_second(), b.tokens_per_second(), a.local_tokens_per_second()
        finally:
            await sync_a.close()
            await sync_b.close()

    with redis_server() as url:
        fleet_a, fleet_b, local_a = asyncio.run(scenario(url))
    # Both see the fleet's 4,000 tokens over the same short span (counting began moments ago: the 1 s minimum).
    assert fleet_a == pytest.approx(4_000, rel=0.05)
    assert fleet_b == pytest.approx(4_000, rel=0.05)
    assert local_a == pytest.approx(3_000, rel=0.05)


def test_a_sync_sent_twice_counts_once() -> None:
    """A sync that timed out after Redis applied it is sent again: absolute totals make that harmless."""

    async def scenario(url: str) -> int:
        served = ServedTokens("m/d")
        sync = ThroughputSync(url, [served], interval=60)
        await sync.start()
        try:
            served.add(700)
            dirty = served.take_dirty(served.wall())
            served.sync_failed(dirty)  # as if the reply was lost: the same totals go again
            assert await sync.sync_once()
            assert await sync.sync_once()
            return served._shared_tokens
        finally:
            await sync.close()

    with redis_server() as url:
        assert asyncio.run(scenario(url)) == 700


def test_redis_outage_falls_back_to_local_and_loses_no_count() -> None:
    """Kill Redis: syncs fail, the estimate turns local, counts are kept; an empty Redis back: they all arrive."""
    import redis as redis_sync

    with redis_server() as url, asyncio.Runner() as runner:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        wall = Clock(time.time())  # one bucket for the whole test
        served = ServedTokens("m/d", wall_clock=wall)
        sync = ThroughputSync(url, [served], interval=60)
        runner.run(sync.start())
        try:
            served.add(100)
            assert runner.run(sync.sync_once())
            assert served.shared
            redis_sync.Redis.from_url(url).shutdown(nosave=True)
            served.add(250)
            assert not runner.run(sync.sync_once())
            served.stale_after = 0.0  # no waiting for the last good sync to go stale
            assert not served.shared
            assert served.tokens_per_second() == served.local_tokens_per_second() > 0
            restarted = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 10
                while not runner.run(sync.sync_once()):
                    assert time.monotonic() < deadline, "no sync succeeded after Redis came back"
                    time.sleep(0.05)
                # The restarted Redis was empty: it now holds this process's whole total, 100 + 250.
                client = redis_sync.Redis(port=port)
                buckets = served.window_buckets(wall.now)
                assert sum(int(v) for b in buckets for v in client.hvals(served.bucket_key(b))) == 350
                assert served.tokens_per_second() == pytest.approx(350, rel=0.05)  # shared again, over the 1 s minimum
            finally:
                runner.run(sync.close())
                restarted.kill()
                restarted.wait()
        finally:
            runner.run(sync.close())


def _fleet_charges(redis_url: str | None) -> float:
    """Two gateway processes, each serving 1,000 tokens/s of one GPU deployment (2.5 USD/h) for 120 s of fake time,
    syncing every second through ``redis_url`` (or not at all); returns what they charged over the last 60 s."""
    mono, wall = Clock(0.0), Clock(1_800_000_000.0)
    costs = [GpuTimeCost(2.5, 1, min_tokens_per_second=1, clock=mono, key="llama/vllm-a") for _ in range(2)]
    for cost in costs:
        cost.served._wall = wall
    syncs = [ThroughputSync(redis_url, [cost.served], interval=1.0) for cost in costs] if redis_url else []
    charged = 0.0

    async def run() -> None:
        nonlocal charged
        for sync in syncs:
            await sync.start()
        for step in range(1, 1201):  # 0.1 s steps
            mono.now += 0.1
            wall.now += 0.1
            for cost in costs:
                value = cost.cost(Usage(input=60, output=40))
                if step > 600:
                    charged += value
            if step % 10 == 0:
                for sync in syncs:
                    assert await sync.sync_once()
        for sync in syncs:
            await sync.close()

    asyncio.run(run())
    return charged


def test_fleet_charges_add_up_to_the_gpu_cost_once() -> None:
    """Steady traffic through two processes: shared throughput charges the GPU's cost once; each process pricing by
    its own half of the traffic charges it twice."""
    gpu_cost = 2.5 / 3600 * 60
    with redis_server() as url:
        shared = _fleet_charges(url)
    alone = _fleet_charges(None)
    assert shared == pytest.approx(gpu_cost, rel=0.03)
    assert alone == pytest.approx(2 * gpu_cost, rel=0.03)


# -- two real gateway processes -------------------------------------------------------------------------------------
def _chat(base_url: str, count: int) -> None:
    client = OpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0)
    for _ in range(count):
        client.chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "one two three four five six"}], max_tokens=20
        )


def _gpu_gauges(base_url: str) -> tuple[float, float]:
    samples = scrape(base_url)
    labels = {"model": "llama", "deployment": "vllm-a"}
    return (
        metric(samples, "llm_gateway_gpu_served_tokens_per_second", **labels),
        metric(samples, "llm_gateway_gpu_throughput_shared", **labels),
    )


@pytest.mark.slow
def test_a_gateway_prices_by_tokens_another_gateway_served(tmp_path: Path) -> None:
    """Traffic goes to the first of two gateway processes only; the second, sharing the Redis, sees the same served
    throughput (and would price its own requests by it). Without redis the second sees nothing."""
    with simulator("--model", "llama", "--ttft-ms", "0", "--tokens-per-second", "0") as sim, redis_server() as url:
        model = {
            "name": "llama",
            "deployments": [
                {"name": "vllm-a", "provider": "openai_compatible", "base_url": f"{sim}/v1", "model": "llama"}
            ],
            "pricing": {"gpu_hour_usd": 2.5, "gpus": 1},
        }
        shared_config = gateway_config(tmp_path / "shared.yaml", [model], redis={"url": url})
        alone_config = gateway_config(tmp_path / "alone.yaml", [model])
        with gateway(shared_config) as first, gateway(shared_config) as second, gateway(alone_config) as alone:
            _chat(first, 30)
            time.sleep(1.5)  # both have synced since the last request
            wait_for(lambda: _gpu_gauges(second)[0] > 0)
            first_rate, first_shared = _gpu_gauges(first)
            second_rate, second_shared = _gpu_gauges(second)
            alone_rate, alone_shared = _gpu_gauges(alone)
    assert first_shared == second_shared == 1.0
    assert first_rate > 0
    # The same tokens over spans at most one sync (1 s) apart, out of the several seconds since the first started.
    assert second_rate == pytest.approx(first_rate, rel=0.25)
    assert (alone_rate, alone_shared) == (0.0, 0.0)


def test_local_window_stays_bounded_while_the_shared_estimate_is_used() -> None:
    """The local window (the fallback during Redis outages) forgets old requests as new ones come, even while
    nothing reads it: memory does not grow with traffic."""
    mono = Clock(0.0)
    served = ServedTokens("m|d", window_seconds=60, clock=mono, wall_clock=Clock(1_000.0))
    served.take_dirty(1_000.0)
    served.set_shared(1_000, since_wall=0.0, now_wall=1_000.0)
    for _ in range(10_000):  # 10,000 requests over 1,000 s, 0.1 s apart, read through the shared estimate only
        mono.now += 0.1
        served.stale_after = mono.now + 1  # the shared estimate stays fresh
        served.add(10)
    assert len(served._events) <= 601  # 60 s of requests
    assert served.local_tokens_per_second() == pytest.approx(100, rel=0.02)


def test_without_redis_no_buckets_are_kept() -> None:
    """Buckets exist to be sent to Redis: without a ThroughputSync none are kept, so nothing grows with uptime."""
    mono, wall = Clock(0.0), Clock(1_000.0)
    served = ServedTokens("m|d", window_seconds=60, clock=mono, wall_clock=wall)
    for _ in range(1_000):  # 1,000 s of traffic: 200 buckets' worth
        mono.now += 1
        wall.now += 1
        served.add(10)
    assert served._mine == {} and served._dirty == set()
    assert served.tokens_per_second() == pytest.approx(10, rel=0.02)  # the local window still works
