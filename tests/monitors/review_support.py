"""Helpers of the review tests: a config with reviewers and queues, chat samples, and a judge model faked at the wire
level (a real OpenAI-compatible HTTP server whose verdicts follow a marker in the answers)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis

from llmops.contract import SAMPLES_STREAM
from llmops.sample import Sample
from tests.support import ThreadServer, gateway_config

REVIEWER_KEYS = {"alice": "rk-alice-7f3c9e1d2b", "bob": "rk-bob-0a8d4c6e5f"}
BEST = "(best)"  # the fake judge prefers the answer holding this marker, and rates it 8 (else 3)


def reviewers() -> list[dict[str, str]]:
    return [{"name": n, "sha256": hashlib.sha256(k.encode()).hexdigest()} for n, k in REVIEWER_KEYS.items()]


def review_config(tmp_path: Path, redis_url: str, judge_url: str, **review: Any) -> Path:
    """Model ``app`` with variants alpha-7b and beta-70b (pair queue ``ab``), model ``chat`` without variants (single
    queue ``graded``); the LLM judges call ``judge_url`` (the fake judge) directly."""
    dead = "http://127.0.0.1:9/v1"
    models = [
        {
            "name": "app",
            "deployments": [{"name": n, "base_url": dead, "model": "m"} for n in ("a", "b")],
            "variants": [{"name": "alpha-7b", "deployments": ["a"]}, {"name": "beta-70b", "deployments": ["b"]}],
        },
        {"name": "chat", "deployments": [{"name": "c", "base_url": dead, "model": "m"}]},
        {"name": "judge", "deployments": [{"name": "j", "base_url": judge_url, "model": "judge"}]},
    ]
    settings: dict[str, Any] = {
        "enabled": True,
        "reviewers": reviewers(),
        "queues": [
            {"name": "ab", "mode": "pair", "models": ["app"]},
            {"name": "graded", "mode": "single", "models": ["chat"]},
        ],
        "max_reviewers_per_item": 2,
    }
    settings.update(review)
    return gateway_config(
        tmp_path / "config.yaml",
        models,
        redis={"url": redis_url},
        monitors={
            "gateway_url": judge_url,
            "judge_model": "judge",
            "judges": ["rules", "llm_single", "pairwise"],
            "claim_idle_seconds": 1,
            "concurrency": 1,
            "drift": {"enabled": False},
            "review": settings,
        },
    )


def chat_sample(
    request_id: str, messages: list[dict[str, Any]], answer: str, *, model: str = "app", variant: str | None = None
) -> Sample:
    return Sample(
        id=request_id,
        ts=time.time(),
        model=model,
        provider="openai_compatible",
        deployment="d",
        endpoint="chat",
        key="anonymous",
        request={"model": model, "messages": messages},
        response={"text": answer, "finish_reason": "stop", "logprobs": None},
        usage={"input": 10, "output": 10, "cached": 0},
        latency={"total": 0.1, "ttft": None, "per_output_token": None},
        cost_usd=0.0,
        status=200,
        variant=variant,
    )


def add_samples(url: str, samples: list[Sample]) -> None:
    client = redis.Redis.from_url(url)
    for sample in samples:
        client.xadd(SAMPLES_STREAM, {"id": sample.id, "sample": sample.to_json()})


def verdict_for(prompt: str) -> str:
    """The fake judge's reply: pairwise prompts prefer the answer marked BEST ([[C]] when neither or both are),
    single-answer prompts rate a marked answer 8, any other 3."""
    if "[The Start of Assistant A's Answer]" in prompt:
        a = prompt.split("[The Start of Assistant A's Answer]")[1].split("[The End of Assistant A's Answer]")[0]
        b = prompt.split("[The Start of Assistant B's Answer]")[1].split("[The End of Assistant B's Answer]")[0]
        choice = "C" if (BEST in a) == (BEST in b) else ("A" if BEST in a else "B")
        return f"Compared.\n[[{choice}]]"
    return "Graded.\nRating: [[8]]" if BEST in prompt else "Graded.\nRating: [[3]]"


class FakeJudge(ThreadServer):
    """An OpenAI-compatible chat completions server (aiohttp in a thread) answering with ``reply`` (the messages'
    text in, the reply out; default :func:`verdict_for`)."""

    def __init__(self, reply: Callable[[str], str] = verdict_for) -> None:
        super().__init__()
        self.reply = reply
        self.calls = 0

    def routes(self, app: Any) -> None:
        from aiohttp import web

        async def complete(request: web.Request) -> web.Response:
            body = orjson.loads(await request.read())
            self.calls += 1
            prompt = "\n".join(str(m.get("content")) for m in body["messages"])
            message = {"role": "assistant", "content": self.reply(prompt)}
            reply = {
                "id": f"cmpl-{self.calls}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "judge"),
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
            return web.json_response(reply)

        app.router.add_post("/v1/chat/completions", complete)

    def __enter__(self) -> FakeJudge:
        return super().__enter__()
