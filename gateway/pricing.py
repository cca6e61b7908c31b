"""Cost in USD of one request, from per-million-token prices or from the GPU time of a self-hosted deployment.

Per-token prices come from the model's ``pricing`` in the config, else from the shipped table
``gateway/data/prices.yaml`` (dated, with sources). Cached prompt tokens are charged at the cached price and prompt
tokens written to a cache at the cache-write price (the input price when either is not given); reasoning tokens are
output tokens.

GPU-priced (self-hosted) models: the deployment costs ``gpu_hour_usd * gpus / 3600`` USD per second whether it is
busy or not. Each request is charged that cost per second divided by the tokens per second the deployment actually
served over a sliding window (input + output tokens, counted by every gateway process that shares the Redis, or by
this process alone without Redis; see ``gateway/throughput.py``), with a floor of
``min_tokens_per_second`` so that a nearly idle deployment does not make one token infinitely dear::

    usd_per_token = gpu_hour_usd * gpus / 3600 / max(served_tokens_per_second, min_tokens_per_second)
    cost          = (input_tokens + output_tokens) * usd_per_token

Worked example: 1 GPU at 2.50 USD/h costs 0.000694 USD/s. Serving 1,000 tokens/s, a token costs 0.000694 / 1000 =
6.94e-7 USD (0.694 USD per million); a request with 500 input and 200 output tokens costs 700 * 6.94e-7 = 0.000486
USD. At 100 tokens/s the same request costs ten times as much: an idle GPU makes each token dearer, as it really is.
Over any busy window the charged costs add up to the GPU's cost for that window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from gateway.throughput import WINDOW_SECONDS, ServedTokens
from llmops.config import Pricing


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one response. ``input`` counts all prompt tokens: those read from a prompt cache
    (``cached_input``) and those written to one (``cache_write``, Anthropic's cache creation) included. ``output``
    counts all generated tokens, ``reasoning`` ones (hidden thinking) included."""

    input: int = 0
    output: int = 0
    cached_input: int = 0
    cache_write: int = 0
    reasoning: int = 0

    @property
    def uncached_input(self) -> int:
        """Prompt tokens neither read from nor written to a cache."""
        return max(self.input - self.cached_input - self.cache_write, 0)

    @property
    def visible_output(self) -> int:
        """Output tokens that are not reasoning."""
        return max(self.output - self.reasoning, 0)

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """Read OpenAI's usage object (``prompt_tokens``, ``completion_tokens``,
        ``prompt_tokens_details.cached_tokens``); ``None`` when it is missing or malformed."""
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens", 0)
        if not isinstance(prompt, int) or not isinstance(completion, int | None):
            return None
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        output = max(completion or 0, 0)
        out_details = usage.get("completion_tokens_details")
        reasoning = out_details.get("reasoning_tokens") if isinstance(out_details, dict) else None
        return cls(
            input=max(prompt, 0),
            output=output,
            cached_input=cached if isinstance(cached, int) and 0 <= cached <= prompt else 0,
            reasoning=reasoning if isinstance(reasoning, int) and 0 <= reasoning <= output else 0,
        )


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float
    cache_write: float = -1.0  # negative: the input price

    def cost(self, usage: Usage) -> float:
        """Reasoning tokens are output tokens, and priced so."""
        write = self.input if self.cache_write < 0 else self.cache_write
        return (
            usage.uncached_input * self.input
            + usage.cached_input * self.cached_input
            + usage.cache_write * write
            + usage.output * self.output
        ) / 1_000_000

    def cache_savings(self, usage: Usage) -> tuple[float, float]:
        """What prompt caching saved and what it cost extra against uncached prices, in USD, both >= 0: tokens read
        from a cache save ``input - cached_input`` each, tokens written to one cost ``cache_write - input`` more each
        (Anthropic's writes cost 1.25x the input price). The net saving is the first minus the second."""
        write = self.input if self.cache_write < 0 else self.cache_write
        read = usage.cached_input * (self.input - self.cached_input)
        extra = usage.cache_write * (write - self.input)
        return (max(read, 0.0) + max(-extra, 0.0)) / 1_000_000, (max(extra, 0.0) + max(-read, 0.0)) / 1_000_000


class PriceTable:
    """The shipped table of commercial prices, looked up by model name."""

    def __init__(self, entries: dict[str, TokenPrices], as_of: str) -> None:
        self.entries = entries
        self.as_of = as_of

    @classmethod
    def load_default(cls) -> PriceTable:
        text = resources.files("gateway").joinpath("data/prices.yaml").read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        entries = {
            name: TokenPrices(
                input=float(row["input"]),
                output=float(row["output"]),
                cached_input=float(row.get("cached_input", row["input"])),
                cache_write=float(row.get("cache_write", row["input"])),
            )
            for name, row in data["models"].items()
        }
        return cls(entries, str(data["as_of"]))

    def lookup(self, name: str) -> TokenPrices | None:
        """Exact name, else the longest entry that ``name`` extends with ``-`` (dated snapshots); a provider prefix
        such as ``openai/`` is ignored."""
        name = name.rsplit("/", 1)[-1]
        if name in self.entries:
            return self.entries[name]
        best = max((key for key in self.entries if name.startswith(key + "-")), key=len, default=None)
        return self.entries[best] if best else None


class GpuTimeCost:
    """Cost of requests to a GPU-priced deployment, from its served tokens per second over a sliding window
    (:class:`~gateway.throughput.ServedTokens`: every gateway process's tokens when Redis is configured)."""

    def __init__(
        self,
        gpu_hour_usd: float,
        gpus: int,
        min_tokens_per_second: float,
        window_seconds: float = WINDOW_SECONDS,
        clock: Any = time.monotonic,
        key: str = "",
    ) -> None:
        self.usd_per_second = gpu_hour_usd * gpus / 3600.0
        self.min_tokens_per_second = min_tokens_per_second
        self.served = ServedTokens(key, window_seconds=window_seconds, clock=clock)

    def served_tokens_per_second(self) -> float:
        """Tokens per second over the window (or since counting began, when younger than the window)."""
        return self.served.tokens_per_second()

    def usd_per_token(self) -> float:
        return self.usd_per_second / max(self.served_tokens_per_second(), self.min_tokens_per_second)

    def cost(self, usage: Usage) -> float:
        """Record the request's tokens as served, then charge them at the current price per token."""
        tokens = usage.input + usage.output
        self.served.add(tokens)
        return tokens * self.usd_per_token()


class CostModel:
    """Cost of one request to one deployment: per-token prices, GPU time, or nothing (unpriced: 0)."""

    def __init__(self, prices: TokenPrices | None = None, gpu: GpuTimeCost | None = None) -> None:
        self.prices = prices
        self.gpu = gpu

    @property
    def priced(self) -> bool:
        return self.prices is not None or self.gpu is not None

    def cost(self, usage: Usage) -> float:
        if self.prices is not None:
            return self.prices.cost(usage)
        if self.gpu is not None:
            return self.gpu.cost(usage)
        return 0.0

    @classmethod
    def build(cls, pricing: Pricing | None, names: list[str], table: PriceTable, key: str = "") -> CostModel:
        """From the model's configured ``pricing``, else the first of ``names`` found in ``table``. ``key``
        (``model|deployment``) names a GPU-priced deployment's shared throughput in Redis."""
        if pricing is not None:
            if pricing.gpu_hour_usd is not None:
                gpu = GpuTimeCost(pricing.gpu_hour_usd, pricing.gpus, pricing.min_tokens_per_second, key=key)
                return cls(gpu=gpu)
            input_price = pricing.input_per_mtok or 0.0
            return cls(
                prices=TokenPrices(
                    input=input_price,
                    output=pricing.output_per_mtok or 0.0,
                    cached_input=input_price
                    if pricing.cached_input_per_mtok is None
                    else pricing.cached_input_per_mtok,
                    cache_write=input_price if pricing.cache_write_per_mtok is None else pricing.cache_write_per_mtok,
                )
            )
        for name in names:
            found = table.lookup(name)
            if found is not None:
                return cls(prices=found)
        return cls()
