"""Response bodies and stream chunks in vLLM's shapes, for chat and (legacy) completions.

Logprobs are fake but deterministic (see :mod:`llmops.simulator.text`): each token is the most likely one of its
``top_logprobs``, so a perplexity computed from them is stable. Completions with ``echo`` and ``logprobs`` list the
prompt's tokens first (see :mod:`llmops.simulator.scoring`). A choice that calls tools carries ``tool_calls`` (streamed
as ``delta.tool_calls``: a call's index, id, type and name first, then pieces of its arguments).
"""

from __future__ import annotations

from typing import Any

from llmops.simulator.answers import Choice
from llmops.simulator.protocol import GenerationRequest, ToolCall
from llmops.simulator.scoring import prompt_logprobs
from llmops.simulator.script import ScriptRule
from llmops.simulator.skill import Skill
from llmops.simulator.text import token_logprob, top_alternatives


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None) -> dict[str, Any]:
    """vLLM's usage object; ``prompt_tokens_details`` only with ``--enable-prompt-tokens-details``."""
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": None if cached_tokens is None else {"cached_tokens": cached_tokens},
    }


def chunk_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The usage of a chunk with ``continuous_usage_stats``."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def final_usage_chunk(base: dict[str, Any], usage_object: dict[str, Any]) -> dict[str, Any]:
    """The extra last chunk of ``include_usage``: no choices, the usage (null fields left out, as vLLM does)."""
    return {**base, "choices": [], "usage": {k: v for k, v in usage_object.items() if v is not None}}


def _bytes(token: str) -> list[int]:
    return list(token.encode("utf-8", "surrogatepass"))


def chat_tool_call(call: ToolCall) -> dict[str, Any]:
    """A chat message's tool call, with vLLM's id (``chatcmpl-tool-...``)."""
    return {
        "id": f"chatcmpl-tool-{call.call_id}",
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _tool_delta(choice: Choice, step: int, text: str) -> dict[str, Any]:
    """``delta.tool_calls`` of one streamed piece of a choice that calls tools."""
    index, header = choice.tool_steps[step]
    call = choice.tool_calls[index]
    if header:
        return {
            "tool_calls": [{**chat_tool_call(call), "index": index, "function": {"name": call.name, "arguments": ""}}]
        }
    return {"tool_calls": [{"index": index, "function": {"arguments": text}}]}


class ChatFormat:
    """``chat.completion`` and ``chat.completion.chunk`` objects of one request."""

    def __init__(self, request_id: str, created: int, model: str, request: GenerationRequest) -> None:
        self.base = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self._request = request

    def opening(self, index: int, usage_now: dict | None) -> dict[str, Any] | None:
        """The first chunk of a choice: the role."""
        chunk = {
            **self.base,
            "choices": [
                {"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
            ],
        }
        if usage_now is not None:
            chunk["usage"] = usage_now
        return chunk

    def _entry(self, token: str, position: int) -> dict[str, Any]:
        top = self._request.top_logprobs
        return {
            "token": token,
            "logprob": token_logprob(token, position),
            "bytes": _bytes(token),
            "top_logprobs": [
                {"token": alt, "logprob": logprob, "bytes": _bytes(alt)}
                for alt, logprob in top_alternatives(token, position, top)
            ],
        }

    def chunk(self, choice: Choice, step: int, text: str, finish: bool, usage_now: dict | None) -> dict[str, Any]:
        """A chunk with one token (``text``) of ``choice``; the last one carries the finish reason."""
        logprobs = None
        if self._request.logprobs and step < len(choice.tokens) and not choice.tool_calls:
            logprobs = {"content": [self._entry(choice.tokens[step], step)]}
        delta = (
            _tool_delta(choice, step, text) if choice.tool_calls and step < len(choice.tokens) else {"content": text}
        )
        body: dict[str, Any] = {
            "index": choice.index,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": choice.finish_reason if finish else None,
        }
        if finish:
            body["stop_reason"] = choice.stop_reason
        chunk = {**self.base, "choices": [body]}
        if usage_now is not None:
            chunk["usage"] = usage_now
        return chunk

    def response(self, choices: list[Choice], usage_object: dict[str, Any]) -> dict[str, Any]:
        """The non-streamed ``chat.completion``."""
        logprobs = self._request.logprobs
        named = self._request.tooling is not None and self._request.tooling.choice in ("named", "required")
        return {
            "id": self.base["id"],
            "object": "chat.completion",
            "created": self.base["created"],
            "model": self.base["model"],
            "choices": [
                {
                    "index": choice.index,
                    "message": {
                        "role": "assistant",
                        "content": ("" if named else None) if choice.tool_calls else choice.text,
                        "refusal": None,
                        "annotations": None,
                        "audio": None,
                        "function_call": None,
                        "tool_calls": [chat_tool_call(call) for call in choice.tool_calls],
                        "reasoning_content": None,
                    },
                    "logprobs": (
                        {"content": [self._entry(token, i) for i, token in enumerate(choice.tokens)]}
                        if logprobs and not choice.tool_calls
                        else None
                    ),
                    "finish_reason": choice.finish_reason,
                    "stop_reason": choice.stop_reason,
                }
                for choice in choices
            ],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": usage_object,
            "prompt_logprobs": None,
            "kv_transfer_params": None,
        }


class CompletionFormat:
    """``text_completion`` objects (response and chunks) of one request; ``script`` scores the prompt tokens."""

    def __init__(
        self,
        request_id: str,
        created: int,
        model: str,
        request: GenerationRequest,
        script: tuple[ScriptRule, ...] = (),
        skill: Skill | None = None,
    ) -> None:
        self.base = {"id": request_id, "object": "text_completion", "created": created, "model": model}
        self._request = request
        self._script = script
        self._skill = skill

    def opening(self, index: int, usage_now: dict | None) -> dict[str, Any] | None:
        """Completions have no opening chunk."""
        return None

    def _logprobs(self, tokens: list[str], start: int, offset: int) -> dict[str, Any]:
        top = max(self._request.top_logprobs, 1)
        offsets, values, alternatives = [], [], []
        for i, token in enumerate(tokens, start):
            offsets.append(offset)
            offset += len(token)
            values.append(token_logprob(token, i))
            alternatives.append(dict(top_alternatives(token, i, top)))
        return {"text_offset": offsets, "token_logprobs": values, "tokens": list(tokens), "top_logprobs": alternatives}

    def _prompt_logprobs(self, choice: Choice) -> dict[str, Any]:
        """The echoed prompt's part of the logprobs (empty without ``echo``)."""
        if not self._request.echo_prompt:
            return {"text_offset": [], "token_logprobs": [], "tokens": [], "top_logprobs": []}
        prompt = self._request.prompts[choice.prompt_index]
        tokens, values, tops = prompt_logprobs(prompt, self._script, self._request.top_logprobs, self._skill)
        offsets, offset = [], 0
        for token in tokens:
            offsets.append(offset)
            offset += len(token)
        return {"text_offset": offsets, "token_logprobs": values, "tokens": tokens, "top_logprobs": tops}

    def _choice_logprobs(self, choice: Choice, start: int, count: int) -> dict[str, Any]:
        """Logprobs of the answer's tokens ``start`` to ``start + count`` (none with ``max_tokens: 0``), after the
        prompt's when ``start`` is 0 and the prompt is echoed."""
        tokens = [] if self._request.echo_only else choice.tokens[start : start + count]
        offset = len(choice.prefix) + sum(len(token) for token in choice.tokens[:start])
        own = self._logprobs(tokens, start, offset)
        if start:
            return own
        head = self._prompt_logprobs(choice)
        return {key: head[key] + own[key] for key in own}

    def chunk(self, choice: Choice, step: int, text: str, finish: bool, usage_now: dict | None) -> dict[str, Any]:
        """A chunk with one token of ``choice`` (the first also carries the echoed prompt)."""
        logprobs = None
        if self._request.logprobs and step < len(choice.tokens):
            logprobs = self._choice_logprobs(choice, step, 1)
        if self._request.echo_only:
            text = ""
        if step == 0 and choice.prefix:
            text = choice.prefix + text
        chunk = {
            **self.base,
            "choices": [
                {
                    "index": choice.index,
                    "text": text,
                    "logprobs": logprobs,
                    "finish_reason": choice.finish_reason if finish else None,
                    "stop_reason": choice.stop_reason if finish else None,
                }
            ],
        }
        if usage_now is not None:
            chunk["usage"] = usage_now
        return chunk

    def response(self, choices: list[Choice], usage_object: dict[str, Any]) -> dict[str, Any]:
        """The non-streamed ``text_completion``."""
        logprobs = self._request.logprobs
        return {
            **self.base,
            "choices": [
                {
                    "index": choice.index,
                    "text": choice.prefix if self._request.echo_only else choice.text,
                    "logprobs": self._choice_logprobs(choice, 0, len(choice.tokens)) if logprobs else None,
                    "finish_reason": choice.finish_reason,
                    "stop_reason": choice.stop_reason,
                    "prompt_logprobs": None,
                }
                for choice in choices
            ],
            "usage": usage_object,
            "system_fingerprint": None,
            "kv_transfer_params": None,
        }
