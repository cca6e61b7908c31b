"""Prompt logprobs: what ``/v1/completions`` returns for the prompt's tokens with ``echo`` and ``logprobs``, as vLLM
returns its ``prompt_logprobs`` (what evaluation harnesses sum to score a continuation).

The first prompt token has no logprob (``null``, and ``null`` top logprobs). Every other token has the deterministic
fake logprob of :func:`llmops.simulator.text.token_logprob` (between -2.55 and -0.05, and the most likely token of its
position), unless ``--skill`` scores it (:mod:`llmops.simulator.skill`), or a ``--script`` entry with ``logprob``
matches text that the token overlaps: then that logprob (see :mod:`llmops.simulator.script`). So a script can make
one multiple-choice continuation the likely, greedy one.
"""

from __future__ import annotations

from llmops.simulator.protocol import Prompt
from llmops.simulator.script import ScriptRule
from llmops.simulator.skill import Skill
from llmops.simulator.text import split_tokens, token_logprob, top_alternatives


def prompt_pieces(prompt: Prompt) -> list[str]:
    """The prompt's token pieces (those of its token ids, or of its text)."""
    return prompt.pieces if prompt.pieces is not None else split_tokens(prompt.text)


def scripted(rules: tuple[ScriptRule, ...], pieces: list[str]) -> list[float | None]:
    """Per piece, the ``logprob`` of the first script entry whose match overlaps it (None where none does)."""
    out: list[float | None] = [None] * len(pieces)
    if not any(rule.logprob is not None for rule in rules):
        return out
    text = "".join(pieces)
    spans = []
    start = 0
    for piece in pieces:
        spans.append((start, start + len(piece)))
        start += len(piece)
    for rule in rules:
        if rule.logprob is None:
            continue
        for found in rule.match.finditer(text):
            low, high = found.span()
            if low == high:
                continue
            for k, (begin, end) in enumerate(spans):
                if begin < high and end > low and out[k] is None:
                    out[k] = rule.logprob
    return out


def prompt_logprobs(
    prompt: Prompt, rules: tuple[ScriptRule, ...], top: int, skill: Skill | None = None
) -> tuple[list[str], list[float | None], list[dict[str, float] | None]]:
    """(tokens, logprobs, top logprobs) of the prompt, in the completions API's lists (``top`` alternatives each, the
    token itself included). ``skill`` (``--skill``) sets the continuation's logprobs of answer-key items first."""
    pieces = prompt_pieces(prompt)
    overrides = scripted(rules, pieces)
    if skill is not None:
        known = skill.choice_logprobs(pieces)
        overrides = [mine if mine is not None else theirs for mine, theirs in zip(known, overrides, strict=True)]
    logprobs: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    for position, piece in enumerate(pieces):
        if position == 0:
            logprobs.append(None)
            tops.append(None)
            continue
        override = overrides[position]
        logprobs.append(token_logprob(piece, position) if override is None else override)
        tops.append(dict(top_alternatives(piece, position, max(top, 1), override)))
    return pieces, logprobs, tops
