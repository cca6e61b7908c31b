"""Cost: per-token prices, the shipped price table, and GPU-time cost for self-hosted models (hand-computed)."""

from __future__ import annotations

import pytest

from gateway.pricing import CostModel, GpuTimeCost, PriceTable, TokenPrices, Usage
from llmops.config import Pricing


def test_usage_from_openai_reads_cached_tokens() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 40},
        }
    )
    assert usage == Usage(input=100, output=20, cached_input=40)
    assert usage.uncached_input == 60
    assert Usage.from_openai({"prompt_tokens": 7, "total_tokens": 7}) == Usage(input=7)  # embeddings
    assert Usage.from_openai(None) is None
    assert Usage.from_openai({"prompt_tokens": "x"}) is None


def test_per_token_cost_hand_computed() -> None:
    prices = TokenPrices(input=0.10, output=0.40, cached_input=0.05)
    # 60 uncached * 0.10 + 40 cached * 0.05 + 20 output * 0.40 = 6 + 2 + 8 = 16 per million
    assert prices.cost(Usage(input=100, output=20, cached_input=40)) == pytest.approx(16e-6)


def test_configured_pricing_without_cached_price_charges_input_price() -> None:
    model = CostModel.build(Pricing(input_per_mtok=2.0, output_per_mtok=8.0), ["x"], PriceTable({}, "never"))
    assert model.cost(Usage(input=1000, output=500, cached_input=1000)) == pytest.approx((1000 * 2 + 500 * 8) / 1e6)


def test_price_table_is_dated_and_matches_snapshots() -> None:
    table = PriceTable.load_default()
    assert table.as_of >= "2025-01-01"
    assert table.lookup("gpt-4o-mini") == table.lookup("gpt-4o-mini-2024-07-18")
    assert table.lookup("gpt-4o-2024-08-06") == table.lookup("gpt-4o")
    assert table.lookup("gpt-4o-mini") != table.lookup("gpt-4o")
    assert table.lookup("openai/gpt-4o") == table.lookup("gpt-4o")
    assert table.lookup("meta-llama/Llama-3-8B") is None


def test_cost_model_falls_back_to_table_then_to_unpriced() -> None:
    table = PriceTable.load_default()
    by_upstream = CostModel.build(None, ["gpt-4o-mini", "my-public-name"], table)
    assert by_upstream.priced
    # gpt-4o-mini: 0.15 in, 0.60 out per million
    assert by_upstream.cost(Usage(input=1_000_000, output=1_000_000)) == pytest.approx(0.75)
    unpriced = CostModel.build(None, ["meta-llama/Llama-3-8B", "llama"], table)
    assert not unpriced.priced
    assert unpriced.cost(Usage(input=10, output=10)) == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_gpu_time_cost_worked_example() -> None:
    """1 GPU at 2.50 USD/h serving 1,000 tokens/s: 700 tokens cost 700 * 2.5/3600/1000 USD."""
    clock = FakeClock()
    gpu = GpuTimeCost(gpu_hour_usd=2.5, gpus=1, min_tokens_per_second=50, window_seconds=60, clock=clock)
    clock.now += 60
    for _ in range(59):  # 59,300 tokens over the minute before ...
        gpu.cost(Usage(input=500, output=500))
        clock.now += 0  # all at the same instant: only the total matters
    cost = gpu.cost(Usage(input=500, output=200))  # ... and this request makes 59,700 in 60 s = 995 tokens/s
    assert gpu.served_tokens_per_second() == pytest.approx(59_700 / 60)
    assert cost == pytest.approx(700 * (2.5 / 3600) / (59_700 / 60))


def test_gpu_time_cost_floor_and_window_expiry() -> None:
    clock = FakeClock()
    gpu = GpuTimeCost(gpu_hour_usd=3.6, gpus=2, min_tokens_per_second=100, window_seconds=60, clock=clock)
    clock.now += 120
    # Idle deployment: the floor of 100 tokens/s applies: 2 GPUs * 3.6 USD/h = 0.002 USD/s -> 2e-5 USD/token
    assert gpu.cost(Usage(input=10, output=0)) == pytest.approx(10 * 0.002 / 100)
    clock.now += 61  # the 10 tokens leave the window
    assert gpu.served_tokens_per_second() == 0.0


def test_gpu_costs_add_up_to_gpu_cost_when_busy() -> None:
    """In steady traffic the charged costs equal what the GPU cost over the same time."""
    clock = FakeClock()
    gpu = GpuTimeCost(gpu_hour_usd=2.0, gpus=1, min_tokens_per_second=1, window_seconds=60, clock=clock)
    for _ in range(60):  # the first minute fills the window
        clock.now += 1
        gpu.cost(Usage(input=400, output=600))
    total = 0.0
    for _ in range(540):  # then a steady 1,000 tokens/s for 9 minutes, in 1-second steps
        clock.now += 1
        total += gpu.cost(Usage(input=400, output=600))
    assert total == pytest.approx(540 * 2.0 / 3600, rel=0.02)


def test_cache_writes_and_reasoning_are_their_own_token_types() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 100,
            "completion_tokens": 40,
            "prompt_tokens_details": {"cached_tokens": 30},
            "completion_tokens_details": {"reasoning_tokens": 25},
        }
    )
    assert usage == Usage(input=100, output=40, cached_input=30, reasoning=25)
    assert usage.uncached_input == 70 and usage.visible_output == 15
    # a reasoning count above the output is not believed
    odd = Usage.from_openai(
        {"prompt_tokens": 1, "completion_tokens": 2, "completion_tokens_details": {"reasoning_tokens": 9}}
    )
    assert odd is not None and odd.reasoning == 0
    prices = TokenPrices(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    written = Usage(input=1_000_000 + 200_000 + 500_000, output=100_000, cached_input=200_000, cache_write=500_000)
    assert prices.cost(written) == pytest.approx(3.0 + 0.3 * 0.2 + 3.75 * 0.5 + 15.0 * 0.1)
    assert TokenPrices(input=2.0, output=8.0, cached_input=0.5).cost(Usage(input=10, cache_write=10)) == 20 / 1e6


def test_the_price_table_has_anthropics_cache_write_prices() -> None:
    table = PriceTable.load_default()
    sonnet = table.lookup("claude-sonnet-4-20250514")
    assert sonnet is not None and sonnet.cache_write == pytest.approx(1.25 * sonnet.input)
    gpt = table.lookup("gpt-4o")
    assert gpt is not None and gpt.cost(Usage(input=1_000_000, cache_write=1_000_000)) == pytest.approx(gpt.input)
