"""The judge model, called through the gateway itself (marked as judge traffic: metered, never sampled again).

Judge calls made for a sample carry a W3C ``traceparent`` in the sample's trace, so the judge's requests appear in
the trace of the request they judge: from a low score one reaches the request's trace, and back.
"""

from __future__ import annotations

import contextvars
import os

import openai

from llmops.contract import JUDGE_HEADER
from monitors.judges.base import JudgeError

#: The trace id of the sample being judged (set around each sample's judges, :meth:`monitors.judging.Judging.judge`).
judged_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("judged_trace", default=None)


def traceparent_for(trace_id: str | None) -> str | None:
    """A ``traceparent`` that puts a judge call in the judged request's trace (a fresh parent span id)."""
    if not trace_id or len(trace_id) != 32:
        return None
    return f"00-{trace_id}-{os.urandom(8).hex()}-01"


def is_unavailable(error: openai.APIError) -> bool:
    """Whether a failed judge call says the model was unavailable for now (worth trying again later): the gateway
    unreachable or too slow, a rate limit (429, but not a spent budget), or a server-side failure (5xx: the judge
    model's deployments down). A 4xx about the request itself (400, 401, 404, ...) would fail the same way again."""
    if isinstance(error, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if getattr(error, "code", None) == "insufficient_quota":  # a spent budget: not back within a few minutes
        return False
    status = getattr(error, "status_code", None)
    return isinstance(status, int) and (status == 429 or status == 408 or status >= 500)


def gateway_client(gateway_url: str, api_key: str | None, timeout: float) -> openai.AsyncOpenAI:
    """An OpenAI client for the monitors' calls through the gateway: marked as judge traffic (never sampled), two
    retries, ``timeout`` seconds per call."""
    return openai.AsyncOpenAI(
        base_url=gateway_url,
        api_key=api_key or "judge",
        max_retries=2,
        timeout=timeout,
        default_headers={JUDGE_HEADER: "1"},
    )


class GatewayJudgeLLM:
    """:class:`monitors.judges.base.JudgeLLM` over the gateway's OpenAI-compatible API, temperature 0."""

    def __init__(self, gateway_url: str, model: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        self.model = model
        self._client = gateway_client(gateway_url, api_key, timeout)
        self.trace_id: str | None = None

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int = 512) -> str:
        traceparent = traceparent_for(judged_trace.get())
        try:
            reply = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=0,
                max_tokens=max_tokens,
                extra_headers={"traceparent": traceparent} if traceparent else None,
            )
        except openai.APIError as error:
            raise JudgeError(
                "llm_error", f"judge model call failed: {error}", transient=is_unavailable(error)
            ) from None
        text = reply.choices[0].message.content if reply.choices else None
        if not text:
            raise JudgeError("llm_error", "the judge model answered with no text")
        return text

    async def close(self) -> None:
        await self._client.close()
