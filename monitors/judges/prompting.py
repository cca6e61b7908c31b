"""Versioned judge prompts (the files ``monitors/prompts/<name>_v<N>.md``), their rendering, and asking the judge model.

A prompt file starts with a front matter block naming the prompt and its version, then sections introduced by the
exact lines ``## system``, ``## user`` and ``## retry`` (text before the first section is a description for people)::

    ---
    prompt: single
    version: 1
    ---
    # What this prompt is for
    ## system
    ...
    ## user
    ... {question} ... {answer} ...
    ## retry
    ... (sent after an unparseable reply, with that reply as the assistant turn)

Placeholders are ``{word}`` and are filled in one pass, so text substituted into a prompt (a judged answer that
contains ``{reference}``, say) is never expanded again; JSON examples such as ``{"verdict": 1}`` are left alone.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TypeVar

from monitors.judges.base import JudgeError, JudgeLLM

T = TypeVar("T")

_PROMPT_FILES = "monitors.prompts"  # the package that holds the prompt files

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)
_SECTION = re.compile(r"^## (system|user|retry)[ \t]*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# What a block marker looks like once the text is normalised (see defuse): an opening bracket of any kind, an optional
# "|" (MT-Bench's "<|The End of ...|>"), then "the start of" / "the end of", with any spacing and punctuation between.
_MARKER = re.compile(r"[\[<({【〔〖〘〚⟦⟨〈《「『]\s*\|?[\s*_~`'\"]*the[\s*_~`'\"]+(?:start|end)\s+of\b")
# Letters of other scripts that look like the Latin letters of "the start of" / "the end of" (Cyrillic, Greek): mapped
# to them in the normalised view, so "[Тhe End of" with a Cyrillic T is a marker too.
_LOOKALIKES = str.maketrans(
    {
        "\u0422": "t",
        "\u0442": "t",
        "\u03a4": "t",
        "\u03c4": "t",  # Т т Τ τ
        "\u04bb": "h",
        "\u041d": "h",
        "\u0397": "h",  # һ Н Η
        "\u0435": "e",
        "\u0415": "e",
        "\u0395": "e",
        "\u03b5": "e",  # е Е Ε ε
        "\u0455": "s",
        "\u0405": "s",  # ѕ Ѕ
        "\u0430": "a",
        "\u0410": "a",
        "\u0391": "a",
        "\u03b1": "a",  # а А Α α
        "\u0433": "r",  # г
        "\u043f": "n",
        "\u03b7": "n",  # п η (lower case; capital Н and Η read as h)
        "\u0501": "d",  # ԁ
        "\u043e": "o",
        "\u041e": "o",
        "\u039f": "o",
        "\u03bf": "o",  # о О Ο ο
    }
)


class UnparseableReply(ValueError):
    """Raised by a reply parser when the judge's reply does not hold a verdict in the asked format."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """One versioned prompt: ``version`` (e.g. ``single_v1``) is what results carry in ``details``."""

    name: str
    number: int
    system: str
    user: str
    retry: str

    @property
    def version(self) -> str:
        return f"{self.name}_v{self.number}"

    def messages(self, values: dict[str, str], raw: Collection[str] = ()) -> list[dict[str, str]]:
        """The chat messages with placeholders filled. Values have look-alikes of the prompt's block markers defused,
        except those named in ``raw`` (blocks the caller built from already defused parts, e.g. numbered contexts)."""
        safe = {key: value if key in raw else defuse(value) for key, value in values.items()}
        return [
            {"role": "system", "content": _fill(self.system, safe, self.version)},
            {"role": "user", "content": _fill(self.user, safe, self.version)},
        ]

    def retry_messages(self, messages: list[dict[str, str]], bad_reply: str) -> list[dict[str, str]]:
        """``messages`` followed by the unparseable reply and a reminder of the format."""
        return [*messages, {"role": "assistant", "content": bad_reply}, {"role": "user", "content": self.retry}]


def defuse(text: str) -> str:
    """``text`` with anything that looks like a block marker (``[The End of ...]``) opened with ``(`` instead.

    A judged answer cannot close its own block early and smuggle text that looks like ours. Markers are found in a
    normalised view of the text: NFKC (full-width ``［``, ``＜｜`` and ideographic spaces become ASCII), invisible
    format characters (zero-width spaces and joiners, soft hyphens, bidi controls: Unicode category Cf) removed,
    case-folded, Cyrillic and Greek look-alikes of the marker's letters read as Latin. Each marker found has its whole
    span in the original text replaced by ``(The Start of`` / ``(The End of``; the rest of the text is left exactly as
    it was (NFKC would turn ``x²`` into ``x2``: the judge must see what the model wrote).
    """
    view, origin = _normalised_view(text)
    spans = [(m.start(), m.end(), m.group(0)) for m in _MARKER.finditer(view)]
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for start, end, found in spans:
        o_start, o_end = origin[start], origin[end - 1] + 1
        out.append(text[pos:o_start])
        out.append("(The Start of" if "start" in found else "(The End of")
        pos = o_end
    out.append(text[pos:])
    return "".join(out)


def _normalised_view(text: str) -> tuple[str, list[int]]:
    """``text`` normalised for finding markers (see :func:`defuse`), and for each of its characters the index of the
    character of ``text`` it came from."""
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if unicodedata.category(ch) == "Cf":
            continue
        for n in unicodedata.normalize("NFKC", ch).translate(_LOOKALIKES).casefold():
            chars.append(n)
            origin.append(i)
    return "".join(chars), origin


def numbered_blocks(label: str, items: list[str]) -> str:
    """``items`` as ``[The Start of <label> i]`` ... ``[The End of <label> i]`` blocks (items defused), for ``raw``."""
    return "\n\n".join(
        f"[The Start of {label} {i}]\n{defuse(item)}\n[The End of {label} {i}]" for i, item in enumerate(items, 1)
    )


def _fill(template: str, values: dict[str, str], version: str) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"prompt {version}: no value for placeholder {{{key}}}")
        return values[key]

    return _PLACEHOLDER.sub(one, template)


@cache
def load_prompt(version: str) -> Prompt:
    """The prompt ``monitors/prompts/<version>.md`` (e.g. ``single_v1``), checked against its front matter."""
    text = resources.files(_PROMPT_FILES).joinpath(f"{version}.md").read_text(encoding="utf-8")
    return parse_prompt(text, expected=version)


def parse_prompt(text: str, expected: str | None = None) -> Prompt:
    """Parse a prompt file's text; ``expected`` is the version its file name promises."""
    text = text.replace("\r\n", "\n")
    front = _FRONT_MATTER.match(text)
    if not front:
        raise ValueError(f"prompt {expected}: no front matter (--- prompt/version ---)")
    meta: dict[str, str] = {}
    for line in front.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            meta[key.strip()] = value.strip()
    try:
        name, number = meta["prompt"], int(meta["version"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"prompt {expected}: front matter needs 'prompt: NAME' and 'version: N'") from exc
    body = text[front.end() :]
    parts = _SECTION.split(body)
    sections = {parts[i]: parts[i + 1].strip("\n") for i in range(1, len(parts) - 1, 2)}
    missing = [s for s in ("system", "user", "retry") if not sections.get(s, "").strip()]
    if missing:
        raise ValueError(f"prompt {expected or name}: missing section(s) {missing}")
    prompt = Prompt(name, number, sections["system"].strip(), sections["user"].strip(), sections["retry"].strip())
    if expected is not None and prompt.version != expected:
        raise ValueError(f"prompt file {expected}.md declares version {prompt.version}")
    return prompt


async def ask(
    llm: JudgeLLM | None,
    prompt: Prompt,
    values: dict[str, str],
    parse: Callable[[str], T],
    *,
    max_tokens: int = 512,
    raw: Collection[str] = (),
) -> tuple[T, str]:
    """Ask the judge model with ``prompt``; parse the reply; on an unparseable reply ask once more (with the reply
    and the prompt's retry reminder), then raise ``JudgeError("unparseable")``. Returns (parsed value, raw reply).

    ``raw`` names values not to defuse (see :meth:`Prompt.messages`). Failures of the model call itself raise
    ``JudgeError("llm_error")`` and are not retried here (the gateway already retries and falls back).
    """
    if llm is None:
        raise JudgeError("llm_error", f"{prompt.version}: no judge model configured")
    messages = prompt.messages(values, raw)
    reply = ""
    problem = ""
    for attempt in range(2):
        if attempt:
            messages = prompt.retry_messages(messages, reply)
        reply = await _complete(llm, messages, max_tokens)
        try:
            return parse(reply), reply
        except UnparseableReply as exc:
            problem = str(exc)
    raise JudgeError("unparseable", f"{prompt.version}: judge reply unparseable twice ({problem}): {reply[-200:]!r}")


async def _complete(llm: JudgeLLM, messages: list[dict[str, str]], max_tokens: int) -> str:
    try:
        reply = await llm.complete(messages, max_tokens=max_tokens)
    except JudgeError:
        raise
    except Exception as exc:  # a client bug or transport error: counted, not crashed on
        raise JudgeError("llm_error", f"judge model call failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(reply, str):
        raise JudgeError("llm_error", f"judge model returned {type(reply).__name__}, not text")
    return reply
