"""The traffic sample: one sampled request as the gateway builds it and the monitors read it.

The gateway writes it to the stream :data:`llmops.contract.SAMPLES_STREAM`; each entry has two fields: ``id`` (the
request id) and ``sample`` (this document as JSON, :meth:`Sample.to_json`). A plain dataclass: building one costs the
gateway's request path next to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import orjson


@dataclass(slots=True)
class Sample:
    """One sampled request and its outcome."""

    id: str
    ts: float
    model: str
    provider: str
    deployment: str
    endpoint: str  # chat, completions, embeddings
    key: str
    request: dict[str, Any]  # the client's body as sent (public model name, `metadata` removed)
    response: dict[str, Any]  # {"text": str, "finish_reason": str | None, "logprobs": [float] | None}
    usage: dict[str, int]  # {"input", "output", "cached"}, and "estimated": true when the gateway estimated it
    latency: dict[str, float | None]  # {"total", "ttft", "per_output_token"} in seconds
    cost_usd: float
    status: int
    variant: str | None = None
    trace_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. reference, contexts, tags

    # ---- convenient views -----------------------------------------------------------------------------------
    @property
    def answer(self) -> str:
        """The response text ('' when there is none)."""
        text = self.response.get("text")
        return text if isinstance(text, str) else ""

    @property
    def finish_reason(self) -> str | None:
        """The response's finish reason, as the gateway recorded it."""
        return cast("str | None", self.response.get("finish_reason"))

    @property
    def question(self) -> str:
        """The last user message's text (chat) or the prompt (completions)."""
        messages = self.request.get("messages")
        if isinstance(messages, list):
            for message in reversed(messages):
                if isinstance(message, dict) and message.get("role") == "user":
                    return content_text(message.get("content"))
            return ""
        prompt = self.request.get("prompt")
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            return prompt[0]
        return ""

    @property
    def reference(self) -> str | None:
        """The reference answer the client sent in ``metadata.reference`` (None when absent or empty)."""
        ref = self.metadata.get("reference")
        return ref if isinstance(ref, str) and ref else None

    @property
    def contexts(self) -> list[str]:
        """The retrieved contexts the client sent in ``metadata.contexts`` (a string or a list of strings)."""
        ctx = self.metadata.get("contexts")
        if isinstance(ctx, str):
            return [ctx]
        if isinstance(ctx, list):
            return [c for c in ctx if isinstance(c, str) and c]
        return []

    @property
    def wants_json(self) -> bool:
        """Whether the client asked for JSON output (response_format json_object / json_schema)."""
        fmt = self.request.get("response_format")
        return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")

    # ---- (de)serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The sample document: the stream entry's JSON, keys in this order."""
        return {
            "id": self.id,
            "ts": self.ts,
            "model": self.model,
            "provider": self.provider,
            "deployment": self.deployment,
            "variant": self.variant,
            "endpoint": self.endpoint,
            "key": self.key,
            "request": self.request,
            "response": self.response,
            "usage": self.usage,
            "latency": self.latency,
            "cost_usd": self.cost_usd,
            "status": self.status,
            "trace_id": self.trace_id,
            "metadata": self.metadata,
        }

    def to_json(self) -> bytes:
        """The sample document as JSON (raises ``orjson.JSONEncodeError`` for what orjson cannot write)."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        """A sample from its document; missing optional fields take their defaults."""
        return cls(
            id=str(data["id"]),
            ts=float(data["ts"]),
            model=str(data["model"]),
            provider=str(data.get("provider", "")),
            deployment=str(data.get("deployment", "")),
            endpoint=str(data.get("endpoint", "chat")),
            key=str(data.get("key", "anonymous")),
            request=dict(data.get("request") or {}),
            response=dict(data.get("response") or {}),
            usage=dict(data.get("usage") or {}),
            latency=dict(data.get("latency") or {}),
            cost_usd=float(data.get("cost_usd") or 0.0),
            status=int(data.get("status", 200)),
            variant=data.get("variant"),
            trace_id=data.get("trace_id"),
            metadata=dict(data.get("metadata") or {}),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Sample:
        """A sample from its JSON (a stream entry's ``sample`` field)."""
        return cls.from_dict(orjson.loads(raw))


def content_text(content: Any) -> str:
    """The text of a chat message's ``content`` (a string, or a list of parts whose text parts are joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""
