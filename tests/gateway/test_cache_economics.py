"""What prompt caching saved, and how much of the cost is estimated (issue 20, items 3 and 4).

Savings are hand-computed for OpenAI-style usage (``prompt_tokens_details.cached_tokens``) and Anthropic-style usage
(``cache_read_input_tokens``, ``cache_creation_input_tokens``), through a real gateway and upstreams that answer with
exactly that usage; GPU-priced models export none; a stream cut before its usage charges the gateway's estimate, and
that cost is counted as estimated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from gateway.pricing import PriceTable, TokenPrices, Usage
from tests.support import ScriptedUpstream, gateway, gateway_config, metric, scrape, simulator

OPENAI_PRICES = {"input_per_mtok": 2.5, "output_per_mtok": 10, "cached_input_per_mtok": 1.25}
ANTHROPIC_PRICES = {
    "input_per_mtok": 3,
    "output_per_mtok": 15,
    "cached_input_per_mtok": 0.3,
    "cache_write_per_mtok": 3.75,
}

OPENAI_USAGE = {
    "prompt_tokens": 2000,
    "completion_tokens": 100,
    "total_tokens": 2100,
    "prompt_tokens_details": {"cached_tokens": 1536},
}
ANTHROPIC_USAGE = {
    "input_tokens": 100,
    "cache_read_input_tokens": 3000,
    "cache_creation_input_tokens": 1000,
    "output_tokens": 50,
}
# By hand, USD:
# OpenAI:    saved 1536 * (2.5 - 1.25) / 1e6 = 0.00192; no writes
#            cost (464 * 2.5 + 1536 * 1.25 + 100 * 10) / 1e6 = 0.00408
# Anthropic: saved 3000 * (3 - 0.3) / 1e6 = 0.0081; write premium 1000 * (3.75 - 3) / 1e6 = 0.00075; net 0.00735
#            cost (100 * 3 + 3000 * 0.3 + 1000 * 3.75 + 50 * 15) / 1e6 = 0.0057, uncached (4100 * 3 + 50 * 15) / 1e6
#            = 0.01305: 0.01305 - 0.0057 = 0.00735, the net saving
OPENAI_SAVED, OPENAI_COST = 0.00192, 0.00408
ANTHROPIC_SAVED, ANTHROPIC_PREMIUM, ANTHROPIC_COST = 0.0081, 0.00075, 0.0057


def test_savings_by_hand() -> None:
    openai_prices = TokenPrices(input=2.5, output=10, cached_input=1.25)
    usage = Usage(input=2000, output=100, cached_input=1536)
    assert openai_prices.cache_savings(usage) == pytest.approx((OPENAI_SAVED, 0.0))
    assert openai_prices.cost(usage) == pytest.approx(OPENAI_COST)
    anthropic_prices = TokenPrices(input=3, output=15, cached_input=0.3, cache_write=3.75)
    usage = Usage(input=4100, output=50, cached_input=3000, cache_write=1000)
    saved, premium = anthropic_prices.cache_savings(usage)
    assert (saved, premium) == pytest.approx((ANTHROPIC_SAVED, ANTHROPIC_PREMIUM))
    uncached = TokenPrices(input=3, output=15, cached_input=3, cache_write=3).cost(usage)
    assert uncached - anthropic_prices.cost(usage) == pytest.approx(saved - premium)
    assert TokenPrices(input=3, output=15, cached_input=3).cache_savings(usage) == (0.0, 0.0)  # no cache price: 0
    assert anthropic_prices.cache_savings(Usage(input=10, output=5)) == (0.0, 0.0)


def test_the_price_table_prices_cache_reads_below_input() -> None:
    """The shipped table is what most deployments are priced by: its cache prices give savings too."""
    table = PriceTable.load_default()
    prices = table.lookup("gpt-4o-mini")
    assert prices is not None and prices.cached_input < prices.input
    saved, premium = prices.cache_savings(Usage(input=1000, output=10, cached_input=800))
    assert saved == pytest.approx(800 * (prices.input - prices.cached_input) / 1e6) and premium == 0


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[ScriptedUpstream, ScriptedUpstream]]:
    with ScriptedUpstream() as oa, ScriptedUpstream() as an:
        oa.reply = (
            200,
            {"Content-Type": "application/json"},
            orjson.dumps(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "gpt-x",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
                    ],
                    "usage": OPENAI_USAGE,
                }
            ),
        )
        an.reply = (
            200,
            {"Content-Type": "application/json"},
            orjson.dumps(
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-x",
                    "content": [{"type": "text", "text": "hi"}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": ANTHROPIC_USAGE,
                }
            ),
        )
        yield oa, an


def test_cache_savings_through_the_gateway(
    upstreams: tuple[ScriptedUpstream, ScriptedUpstream], tmp_path: Path
) -> None:
    oa, an = upstreams
    models = [
        {
            "name": "oa",
            "deployments": [{"name": "oa-d", "base_url": oa.url, "model": "gpt-x"}],
            "pricing": OPENAI_PRICES,
        },
        {
            "name": "an",
            "deployments": [{"name": "an-d", "provider": "anthropic", "base_url": an.url, "model": "claude-x"}],
            "pricing": ANTHROPIC_PRICES,
        },
        {
            "name": "gpu",  # self-hosted: a cached token costs the same GPU time
            "deployments": [{"name": "gpu-d", "base_url": oa.url, "model": "gpt-x"}],
            "pricing": {"gpu_hour_usd": 2.5},
        },
    ]
    with gateway(gateway_config(tmp_path / "c.yaml", models)) as gw:
        client = openai.OpenAI(base_url=f"{gw}/v1", api_key="x", max_retries=0)
        for model in ("oa", "an", "gpu"):
            answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}])
            assert answer.choices[0].message.content == "hi"
        samples = scrape(gw)
    assert metric(samples, "llm_gateway_cache_savings_usd_total", model="oa") == pytest.approx(OPENAI_SAVED)
    assert metric(samples, "llm_gateway_cache_write_premium_usd_total", model="oa") == 0
    assert metric(samples, "llm_gateway_cost_usd_total", model="oa") == pytest.approx(OPENAI_COST)
    assert metric(samples, "llm_gateway_tokens_total", model="oa", type="cached_input") == 1536
    assert metric(samples, "llm_gateway_cache_savings_usd_total", model="an") == pytest.approx(ANTHROPIC_SAVED)
    assert metric(samples, "llm_gateway_cache_write_premium_usd_total", model="an") == pytest.approx(ANTHROPIC_PREMIUM)
    assert metric(samples, "llm_gateway_cost_usd_total", model="an") == pytest.approx(ANTHROPIC_COST)
    assert metric(samples, "llm_gateway_tokens_total", model="an", type="cached_input") == 3000
    assert metric(samples, "llm_gateway_tokens_total", model="an", type="cache_write") == 1000
    assert metric(samples, "llm_gateway_tokens_total", model="gpu", type="cached_input") == 1536
    assert metric(samples, "llm_gateway_cache_savings_usd_total", model="gpu") == 0  # documented: none
    assert metric(samples, "llm_gateway_estimated_cost_usd_total") == 0


def test_cost_of_a_cut_stream_is_counted_as_estimated(tmp_path: Path) -> None:
    with simulator("--model", "sim-model", "--ttft-ms", "0", "--tokens-per-second", "0") as sim:
        models = [
            {
                "name": "m",
                "deployments": [{"name": "d", "base_url": f"{sim}/v1", "model": "sim-model"}],
                "pricing": {"input_per_mtok": 1, "output_per_mtok": 2},
            }
        ]
        with gateway(gateway_config(tmp_path / "c.yaml", models)) as gw:
            body = {"model": "m", "messages": [{"role": "user", "content": "tell me a long story"}], "max_tokens": 32}
            httpx.post(f"{gw}/v1/chat/completions", json=body, timeout=10).raise_for_status()  # upstream usage
            cut = {**body, "stream": True, "simulate": {"fault": "disconnect", "after_tokens": 3}}
            with httpx.stream("POST", f"{gw}/v1/chat/completions", json=cut, timeout=10) as response:
                response.read()
            samples = scrape(gw)
    total = metric(samples, "llm_gateway_cost_usd_total", model="m")
    estimated = metric(samples, "llm_gateway_estimated_cost_usd_total", model="m")
    assert metric(samples, "llm_gateway_usage_estimated_total", model="m") == 1
    assert 0 < estimated < total
