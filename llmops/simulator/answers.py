"""What the simulator answers: the tokens and finish reason of each choice.

The text of a choice comes from the first of: the request's ``simulate.response``; with ``--skill``, the answer to a
generative answer-key item (:mod:`llmops.simulator.skill`); the first ``--script`` rule that
matches the last user message (or the prompt); the last user message itself with ``--echo``; otherwise
deterministic lorem-ipsum words (seeded by the prompt, ``--seed``, the request's ``seed`` and the choice index).

Tool calls and structured output (``tools``, ``response_format``, ``text.format``) follow
:mod:`llmops.simulator.tools`: a choice either calls tools or answers text.

Lengths: generated text is ``max_tokens`` (or ``max_completion_tokens``) words long and ends with finish reason
``length``, as if the model ran into the limit; without ``max_tokens`` it is ``--output-tokens`` words long and ends
with ``stop`` (``length`` if the context, ``--max-model-len`` minus the prompt, is shorter). Fixed texts (script,
echo, ``simulate.response``) are cut at ``max_tokens`` words (finish ``length``). Any text is cut at the first
``stop`` string (finish ``stop``, ``stop_reason`` = that string).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmops.simulator.protocol import GenerationRequest, Prompt, RequestError, ToolCall
from llmops.simulator.script import find_rule
from llmops.simulator.settings import SimulatorSettings
from llmops.simulator.text import generate_tokens, split_tokens
from llmops.simulator.tools import cut_calls, decide_calls, make_calls, structured_text, tool_tokens
from llmops.simulator.tools import finish_reason as tool_finish_reason

_MASK = (1 << 64) - 1


@dataclass(slots=True)
class Choice:
    """One choice of an answer."""

    index: int
    prompt_index: int
    tokens: list[str]
    finish_reason: str
    stop_reason: str | None = None
    prefix: str = ""  # completions with echo=true: the prompt, sent before the first token
    tool_calls: list[ToolCall] = field(default_factory=list)  # a choice that calls tools: its calls
    tool_steps: list[tuple[int, bool]] = field(default_factory=list)  # per token: (call index, is the call's header)

    @property
    def engine_finish(self) -> str:
        """The engine's finish reason (``vllm:request_success_total``): a tool call ends as ``stop``."""
        return "stop" if self.finish_reason == "tool_calls" else self.finish_reason

    @property
    def text(self) -> str:
        """The whole answer text (empty for a choice that calls tools)."""
        if self.tool_calls:
            return self.prefix
        return self.prefix + "".join(self.tokens)


def check_context(settings: SimulatorSettings, request: GenerationRequest, param: str) -> None:
    """400 when a prompt leaves no room in the context, or ``max_tokens`` does not fit, as vLLM says it."""
    limit = settings.max_model_len
    for prompt in request.prompts:
        if prompt.tokens >= limit:
            raise RequestError(
                f"This model's maximum context length is {limit} tokens. However, your request has "
                f"{prompt.tokens} input tokens. Please reduce the length of the input messages.",
                param=param,
            )
        if request.max_tokens is not None and prompt.tokens + request.max_tokens > limit:
            raise RequestError(
                f"'max_tokens' or 'max_completion_tokens' is too large: {request.max_tokens}. This model's maximum "
                f"context length is {limit} tokens and your request has {prompt.tokens} input tokens "
                f"({request.max_tokens} > {limit} - {prompt.tokens}).",
                param="max_tokens",
            )


def _fixed_text(
    settings: SimulatorSettings, prompt: Prompt, response: str | None, finish: str | None
) -> tuple[str | None, str | None]:
    if response is not None:
        return response, finish
    skill = settings.skill_model
    if skill is not None:
        answer = skill.answer(prompt.text)
        if answer is not None:
            return answer, None
    if settings.script:
        rule = find_rule(settings.script, prompt.text)
        if rule is not None:
            return rule.response, rule.finish_reason
    if settings.echo:
        return prompt.text, None
    return None, None


def _cut_at_stop(tokens: list[str], stops: tuple[str, ...]) -> tuple[list[str], str | None]:
    text = "".join(tokens)
    found = min(((text.find(stop), stop) for stop in stops if stop in text), default=None)
    if found is None:
        return tokens, None
    return split_tokens(text[: found[0]]), found[1]


def _tool_choice(
    request: GenerationRequest, calls: list[tuple[str, Any]], index: int, prompt: int, limit: int
) -> Choice:
    tooling = request.tooling
    assert tooling is not None
    made = make_calls(tooling, calls)
    tokens, steps = tool_tokens(made)
    finish = tool_finish_reason(tooling)
    if len(tokens) > limit:
        tokens, steps, finish = tokens[:limit], steps[:limit], "length"
        made = cut_calls(made, steps, tokens)
    return Choice(index, prompt, tokens, finish, tool_calls=made, tool_steps=steps)


def plan_choices(
    settings: SimulatorSettings,
    request: GenerationRequest,
    response: str | None = None,
    finish_reason: str | None = None,
    tool_calls: list[tuple[str, Any]] | None = None,
) -> list[Choice]:
    """The choices of a request: ``n`` per prompt, indexed ``prompt_index * n + i`` as vLLM does; ``tool_calls`` are
    the request's ``simulate.tool_calls``."""
    choices: list[Choice] = []
    tooling = request.tooling
    output_format = tooling.output_format if tooling is not None else None
    for p, prompt in enumerate(request.prompts):
        fixed, fixed_finish = _fixed_text(settings, prompt, response, finish_reason)
        limit = request.max_tokens if request.max_tokens is not None else settings.max_model_len - prompt.tokens
        calls = decide_calls(tooling, prompt.text, request.fresh_turn, settings.script, tool_calls)
        for i in range(request.n):
            if calls:
                choices.append(_tool_choice(request, calls, p * request.n + i, p, limit))
                continue
            finish = fixed_finish or "stop"
            if fixed is not None:
                tokens = split_tokens(fixed)
            else:
                free = request.max_tokens is None or output_format is not None  # JSON wraps its own length
                length = max(settings.output_tokens if free else request.max_tokens or 0, request.min_tokens)
                seed = (prompt.seed + 1_000_003 * settings.seed + 998_244_353 * (request.seed or 0) + 7919 * i) & _MASK
                tokens = generate_tokens(seed, min(length, limit))
                if length >= limit and output_format is None:
                    finish = "length"
            if output_format is not None:
                tokens = split_tokens(structured_text(output_format, fixed if fixed is not None else "".join(tokens)))
            stop_reason = None
            if request.stop:
                tokens, stop_reason = _cut_at_stop(tokens, request.stop)
                if stop_reason is not None:
                    finish = "stop"
            if len(tokens) > limit:
                tokens = tokens[:limit]
                finish, stop_reason = "length", None
            choice = Choice(p * request.n + i, p, tokens, finish, stop_reason)
            if request.echo_prompt:
                choice.prefix = prompt.text
            choices.append(choice)
    return choices
