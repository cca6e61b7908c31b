"""Scripted answers (``--script FILE``): fixed answers, tool calls and prompt logprobs for prompts that match a regular
expression.

The file is a YAML list; each entry has ``match`` (a Python regular expression, searched anywhere in the last user
message of a chat or Responses request, or in the prompt of a completion request) and at least one of:

- ``response``: the answer text, sent as is; optionally ``finish_reason`` (``stop`` or ``length``; default ``stop``,
  or ``length`` when ``max_tokens`` cuts the answer);
- ``tool_calls``: a list of ``{name: TOOL, arguments: {...}}`` that the model calls when the request offers those
  tools and its last message is the user's (``arguments`` left out: a small valid instance of the tool's parameter
  schema); a request without the tools gets the entry's ``response`` instead, or the next matching entry;
- ``logprob``: a log-probability (<= 0) for every prompt token that overlaps a match, in the prompt logprobs of
  ``/v1/completions`` with ``echo`` and ``logprobs`` (what evaluation harnesses score). A token with a logprob above
  ln(1/2) is its position's most likely token (greedy); below, another token is. Every matching entry applies; where
  entries overlap the first wins.

For answers and tool calls the first matching entry that has one wins; a prompt that matches none gets the
simulator's usual answer. Example::

    - match: "(?i)rate the response"
      response: "The answer is accurate and helpful. Rating: [[8]]"
    - match: "(?i)weather in (Paris|Seoul)"
      tool_calls: [{name: get_weather, arguments: {city: Paris}}]
    - match: "Answer: Paris$"       # make the right multiple-choice continuation the likely one
      logprob: -0.01
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmops.simulator.errors import SimulatorSettingsError


class ScriptToolCall(BaseModel):
    """One scripted tool call: the tool's name and its arguments (None: made up from the tool's schema)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    arguments: dict[str, Any] | None = None


class ScriptRule(BaseModel):
    """One scripted entry: for prompts where ``match`` is found, the answer ``response``, the ``tool_calls``, and the
    ``logprob`` of the matched prompt tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: re.Pattern[str]
    response: str | None = None
    finish_reason: Literal["stop", "length"] | None = None
    tool_calls: tuple[ScriptToolCall, ...] = ()
    logprob: float | None = Field(None, le=0)

    @model_validator(mode="after")
    def _does_something(self) -> Self:
        if self.response is None and not self.tool_calls and self.logprob is None:
            raise ValueError("an entry needs `response`, `tool_calls` or `logprob`")
        return self


def find_rule(rules: tuple[ScriptRule, ...], text: str) -> ScriptRule | None:
    """The first rule with a ``response`` whose ``match`` is found in ``text``, or None."""
    for rule in rules:
        if rule.response is not None and rule.match.search(text):
            return rule
    return None


def find_tool_rule(rules: tuple[ScriptRule, ...], text: str, tools: set[str]) -> ScriptRule | None:
    """The first rule whose ``match`` is found in ``text`` and that calls one of ``tools``, or None."""
    for rule in rules:
        if any(call.name in tools for call in rule.tool_calls) and rule.match.search(text):
            return rule
    return None


def load_script(path: str | Path) -> tuple[ScriptRule, ...]:
    """Read and validate a script file; raises :class:`SimulatorSettingsError` naming the entry and field that are
    wrong."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SimulatorSettingsError(f"--script {path}: cannot read the file: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise SimulatorSettingsError(f"--script {path}: not valid YAML: {error}") from error
    if data is None:
        return ()
    if not isinstance(data, list):
        raise SimulatorSettingsError(
            f"--script {path}: must be a YAML list of {{match: <regex>, response: <text>}} entries, "
            f"not a {type(data).__name__}"
        )
    rules: list[ScriptRule] = []
    for number, entry in enumerate(data, start=1):
        if not isinstance(entry, dict):
            raise SimulatorSettingsError(
                f"--script {path}: entry {number} must be a mapping with `match` and `response`, `tool_calls` or "
                "`logprob`"
            )
        if isinstance(entry.get("match"), str):
            try:
                re.compile(entry["match"])
            except re.error as error:
                raise SimulatorSettingsError(
                    f"--script {path}: entry {number}: `match` is not a valid regular expression: {error}"
                ) from error
        if not {"response", "tool_calls", "logprob"} & set(entry):
            raise SimulatorSettingsError(
                f"--script {path}: entry {number}: `response`: Field required (or give `tool_calls` or `logprob`)"
            )
        try:
            rules.append(ScriptRule.model_validate(entry))
        except ValidationError as error:
            problems = "; ".join(
                f"`{'.'.join(str(part) for part in item['loc']) or 'entry'}`: {item['msg']}" for item in error.errors()
            )
            raise SimulatorSettingsError(f"--script {path}: entry {number}: {problems}") from error
    return tuple(rules)
