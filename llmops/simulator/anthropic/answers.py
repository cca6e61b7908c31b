"""What the simulated model answers: text (``simulate.response``, echo or lorem ipsum, cut at ``stop_sequences`` and
``max_tokens``) or one scripted tool call, after a thinking block when thinking is enabled; and the message body that
carries it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from llmops.simulator.anthropic.request import MessagesRequest
from llmops.simulator.anthropic.thinking import signature, thinking_words
from llmops.simulator.settings import AnthropicSimulatorSettings
from llmops.simulator.text import count_tokens, generate_tokens, split_tokens, text_digest


@dataclass(slots=True)
class Answer:
    """What the simulated model says: text tokens, or one tool call."""

    tokens: list[str]
    stop_reason: str
    stop_sequence: str | None = None
    tool_name: str | None = None
    tool_input: dict[str, Any] | None = None
    thinking: list[str] = field(default_factory=list)  # the thinking block's words (none without thinking)

    @property
    def output_tokens(self) -> int:
        """``usage.output_tokens``: the thinking words, then the answer's words or the words of a tool call's JSON
        input (at least 1)."""
        if self.tool_input is not None:
            return len(self.thinking) + max(count_tokens(orjson.dumps(self.tool_input).decode()), 1)
        return len(self.thinking) + len(self.tokens)

    @property
    def thinking_block(self) -> dict[str, Any] | None:
        """The ``thinking`` content block, or None."""
        if not self.thinking:
            return None
        text = "".join(self.thinking)
        return {"type": "thinking", "thinking": text, "signature": signature(text)}


def _scripted_tool(req: MessagesRequest) -> tuple[str, dict[str, Any]] | None:
    """The tool call that the last user text asks for (``call tool NAME {json}``), or that ``tool_choice`` forces."""
    choice = req.tool_choice or {"type": "auto"}
    if not req.tools or choice["type"] == "none":
        return None
    text = req.last_user_text
    at = text.lower().find("call tool ")
    if at >= 0:
        rest = text[at + len("call tool ") :].lstrip()
        name = rest.split(None, 1)[0].rstrip(".,;:!?") if rest.strip() else ""
        if name in req.tools:
            after = rest[len(name) :].lstrip()
            arguments: Any = {}
            if after.startswith("{"):
                try:
                    arguments, _ = json.JSONDecoder().raw_decode(after)
                except ValueError:
                    arguments = {}
            return name, arguments if isinstance(arguments, dict) else {}
    if choice["type"] == "any":
        return req.tools[0], {}
    if choice["type"] == "tool":
        return choice["name"], {}
    return None


def plan_answer(req: MessagesRequest, settings: AnthropicSimulatorSettings) -> Answer:
    """The answer to ``req`` (see the module docstring for the rules)."""
    seed = int.from_bytes(text_digest(str(settings.seed), previous=req.digest), "big")
    thinking = thinking_words(seed ^ 0x7468696E6B, req.thinking_budget) if req.thinking_budget else []
    answer = _plan_answer(req, settings, seed, req.max_tokens - len(thinking))
    answer.thinking = thinking
    return answer


def _plan_answer(req: MessagesRequest, settings: AnthropicSimulatorSettings, seed: int, room: int) -> Answer:
    simulate = req.simulate if isinstance(req.simulate, dict) else {}
    text = simulate.get("response")
    if not isinstance(text, str):
        tool = _scripted_tool(req)
        if tool is not None:
            return Answer([], "tool_use", tool_name=tool[0], tool_input=tool[1])
        text = req.last_user_text if settings.echo else "".join(generate_tokens(seed, settings.output_tokens))
    stop_reason, stop_sequence = "end_turn", None
    cut = min(((text.find(s), s) for s in req.stop_sequences if s and s in text), default=None)
    if cut is not None:
        text, stop_reason, stop_sequence = text[: cut[0]], "stop_sequence", cut[1]
    tokens = split_tokens(text)
    if len(tokens) > room:
        tokens, stop_reason, stop_sequence = tokens[: max(room, 0)], "max_tokens", None
    return Answer(tokens, stop_reason, stop_sequence)


def new_id(prefix: str) -> str:
    """A fresh id as Anthropic spells them: ``prefix`` and 24 hex digits."""
    return prefix + uuid.uuid4().hex[:24]


def message_body(req: MessagesRequest, answer: Answer, usage: dict[str, Any]) -> dict[str, Any]:
    """The Messages API response body of ``answer``."""
    if answer.tool_input is not None:
        content = [{"type": "tool_use", "id": new_id("toolu_"), "name": answer.tool_name, "input": answer.tool_input}]
    else:
        text = "".join(answer.tokens)
        content = [{"type": "text", "text": text}] if text else []
    if answer.thinking_block is not None:
        content.insert(0, answer.thinking_block)
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": content,
        "stop_reason": answer.stop_reason,
        "stop_sequence": answer.stop_sequence,
        "usage": usage,
    }
