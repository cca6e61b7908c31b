"""Scripted answers (``--script FILE``): fixed answers for prompts that match a regular expression.

The file is a YAML list; each entry has ``match`` (a Python regular expression, searched anywhere in the last user
message of a chat request, or in the prompt of a completion request), ``response`` (the answer text, sent as is) and
optionally ``finish_reason`` (``stop`` or ``length``; default ``stop``, or ``length`` when ``max_tokens`` cuts the
answer). The first matching entry wins; a prompt that matches none gets the simulator's usual answer. Example::

    - match: "(?i)rate the response"
      response: "The answer is accurate and helpful. Rating: [[8]]"
    - match: "(?i)which assistant"
      response: "[[A]]"
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from llmops.simulator.errors import SimulatorSettingsError


class ScriptRule(BaseModel):
    """One scripted answer: ``response`` for prompts where ``match`` is found."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: re.Pattern[str]
    response: str
    finish_reason: Literal["stop", "length"] | None = None


def find_rule(rules: tuple[ScriptRule, ...], text: str) -> ScriptRule | None:
    """The first rule whose ``match`` is found in ``text``, or None."""
    for rule in rules:
        if rule.match.search(text):
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
                f"--script {path}: entry {number} must be a mapping with `match` and `response`"
            )
        if isinstance(entry.get("match"), str):
            try:
                re.compile(entry["match"])
            except re.error as error:
                raise SimulatorSettingsError(
                    f"--script {path}: entry {number}: `match` is not a valid regular expression: {error}"
                ) from error
        try:
            rules.append(ScriptRule.model_validate(entry))
        except ValidationError as error:
            problems = "; ".join(
                f"`{'.'.join(str(part) for part in item['loc']) or 'entry'}`: {item['msg']}" for item in error.errors()
            )
            raise SimulatorSettingsError(f"--script {path}: entry {number}: {problems}") from error
    return tuple(rules)
