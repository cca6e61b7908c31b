"""The judge model, called through the gateway itself (marked as judge traffic: metered, never sampled again)."""

from __future__ import annotations

import openai

from monitors.judges.base import JudgeError

JUDGE_HEADER = "x-llmops-judge"


class GatewayJudgeLLM:
    """:class:`monitors.judges.base.JudgeLLM` over the gateway's OpenAI-compatible API, temperature 0."""

    def __init__(self, gateway_url: str, model: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        self.model = model
        self._client = openai.AsyncOpenAI(
            base_url=gateway_url,
            api_key=api_key or "judge",
            max_retries=2,
            timeout=timeout,
            default_headers={JUDGE_HEADER: "1"},
        )
        self.trace_id: str | None = None

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int = 512) -> str:
        try:
            reply = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                temperature=0,
                max_tokens=max_tokens,  # type: ignore[arg-type]
            )
        except openai.APIError as error:
            raise JudgeError("llm_error", f"judge model call failed: {error}") from None
        text = reply.choices[0].message.content if reply.choices else None
        if not text:
            raise JudgeError("llm_error", "the judge model answered with no text")
        return text

    async def close(self) -> None:
        await self._client.close()
