"""The demo's traffic: English and Korean prompts sent through the gateway with the official SDKs: most as chat
completions, some through OpenAI's Responses API and Anthropic's Messages API (the same models, the same metrics)."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any, cast

from rich.progress import Progress

from llmops.demo.stack import DEMO_MODELS

if TYPE_CHECKING:
    from openai import AsyncStream
    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

PROMPTS = [
    "Summarise the benefits of continuous batching in two sentences.",
    "What is the capital of France and why is it famous?",
    "Write a haiku about GPUs running hot at night.",
    "Explain time to first token to a product manager.",
    "서울에서 가볼 만한 곳을 세 군데 추천해 주세요.",
    "한국어로 짧은 인사말을 작성해 주세요.",
    "List three ways to reduce the cost of serving large language models.",
    "How does a KV cache speed up autoregressive decoding?",
]

REFERENCES = {
    "What is the capital of France and why is it famous?": "Paris is the capital of France, famous for its art.",
    "서울에서 가볼 만한 곳을 세 군데 추천해 주세요.": "경복궁, 남산타워, 북촌 한옥마을을 추천합니다.",
}


async def send_traffic(gateway_url: str, requests: int, concurrency: int, progress: Progress) -> dict[str, int]:
    """Send ``requests`` requests (half streamed, some with a reference answer or a short ``max_tokens``; one in ten
    through the Responses API and one in ten through the Messages API) through the gateway with the official SDKs,
    ``concurrency`` at a time; counts of ``ok`` and ``error`` outcomes, and of each API used."""
    import openai

    anthropic: Any
    try:
        import anthropic
    except ImportError:  # the dev extra brings it; without it, no Messages API traffic
        anthropic = None

    task = progress.add_task("sending requests through the gateway", total=requests)
    outcomes = {"ok": 0, "error": 0, "chat": 0, "responses": 0, "messages": 0}
    claude = anthropic.AsyncAnthropic(base_url=gateway_url, api_key="demo", max_retries=0) if anthropic else None
    rng = random.Random(7)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async with openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="demo", max_retries=0) as client:

        async def one() -> None:
            model = rng.choice(DEMO_MODELS)
            prompt = rng.choice(PROMPTS)
            messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": prompt}]
            options: dict[str, Any] = {"logprobs": rng.random() < 0.3}
            if rng.random() < 0.2:  # a short limit: these answers end truncated (finish_reason "length")
                options["max_tokens"] = 16
            if prompt in REFERENCES:
                options["extra_body"] = {"llmops": {"reference": REFERENCES[prompt]}}
            api = rng.random()
            try:
                if api < 0.1:  # OpenAI's Responses API
                    await client.responses.create(model=model, input=prompt, max_output_tokens=64)
                    outcomes["responses"] += 1
                elif api < 0.2 and claude is not None:  # Anthropic's Messages API, translated for these hosts
                    await claude.messages.create(
                        model=model, max_tokens=64, messages=[{"role": "user", "content": prompt}]
                    )
                    outcomes["messages"] += 1
                elif rng.random() < 0.5:
                    stream = await client.chat.completions.create(
                        model=model, messages=messages, stream=True, **options
                    )
                    async for _ in cast("AsyncStream[ChatCompletionChunk]", stream):
                        pass
                else:
                    await client.chat.completions.create(model=model, messages=messages, **options)
                if api >= 0.2 or claude is None:
                    outcomes["chat"] += 1
                outcomes["ok"] += 1
            except openai.APIError:
                outcomes["error"] += 1
            except Exception as error:  # the anthropic SDK's errors
                if anthropic is None or not isinstance(error, anthropic.APIError):
                    raise
                outcomes["error"] += 1

        async def worker() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await one()
                progress.advance(task)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    if claude is not None:
        await claude.close()
    return outcomes
