"""One row of drift features per sample: cheap, deterministic, language-aware (Korean and English alike).

Lengths in characters and tokens (tokens from ``sample.usage``), latency, TTFT, cost, finish reason, the share of
non-letter characters, the dominant script (Hangul, Latin or other letters), a refusal flag, and the judge scores when
present.
Scripts are told apart by Unicode code point through a lookup table (Hangul syllables and all jamo blocks, Latin
blocks, any other letter), with a bytes fast path for ASCII text: about 10 µs per sample.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from llmops.sample import Sample, content_text
from monitors.drift import FEATURES, FINISH_REASONS, JUDGE_FEATURE_NAMES, LABEL_FEATURES, RETIRED, SCRIPTS
from monitors.judges.rules import REFUSAL_WINDOW, REFUSALS_EN, REFUSALS_KO

Row = dict[str, Any]

# ---- scripts -------------------------------------------------------------------------------------------------------
SPACE, HANGUL, LATIN, OTHER_LETTER, NON_LETTER = range(5)

_Ranges = tuple[tuple[int, int], ...]  # code point blocks, first and last inclusive
_HANGUL_RANGES: _Ranges = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7A3), (0xD7B0, 0xD7FF))
_HANGUL_RANGES += ((0xFFA0, 0xFFDC),)  # halfwidth jamo
_LATIN_RANGES: _Ranges = ((0x0041, 0x024F), (0x0250, 0x02AF), (0x0300, 0x036F), (0x1E00, 0x1EFF), (0x2C60, 0x2C7F))
_LATIN_RANGES += ((0xA720, 0xA7FF), (0xAB30, 0xAB6F), (0xFF21, 0xFF5A))


def _build_table() -> np.ndarray:
    """Class of every Basic Multilingual Plane code point: space, Hangul, Latin, other letter, non-letter."""
    table = np.full(0x10000, NON_LETTER, dtype=np.uint8)
    for cp in range(0x10000):
        ch = chr(cp)
        if ch.isspace():
            table[cp] = SPACE
        elif unicodedata.category(ch)[0] in "LM":  # letters and the marks that combine with them
            table[cp] = OTHER_LETTER
    for ranges, cls in ((_HANGUL_RANGES, HANGUL), (_LATIN_RANGES, LATIN)):
        for lo, hi in ranges:
            block = table[lo : hi + 1]
            block[block == OTHER_LETTER] = cls
    return table


_TABLE = _build_table()
_ASCII_SPACE = bytes(c for c in range(128) if chr(c).isspace())
_ASCII_LETTERS = bytes(c for c in range(128) if chr(c).isalpha())


def script_counts(text: str) -> tuple[int, int, int, int]:
    """``(hangul, latin, other_letters, non_letters)`` characters of ``text``; whitespace is not counted."""
    if text.isascii():
        raw = text.encode("ascii")
        spaces = len(raw) - len(raw.translate(None, _ASCII_SPACE))
        letters = len(raw) - len(raw.translate(None, _ASCII_LETTERS))
        return 0, letters, 0, len(raw) - spaces - letters
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    classes = _TABLE[np.minimum(codes, 0xFFFF)]
    if codes.max() > 0xFFFF:  # astral planes: CJK extensions are letters, the rest (emoji, ...) are not
        astral = codes > 0xFFFF
        classes[astral] = NON_LETTER
        classes[astral & (codes >= 0x20000) & (codes < 0x40000)] = OTHER_LETTER
    counts = np.bincount(classes, minlength=5)
    return int(counts[HANGUL]), int(counts[LATIN]), int(counts[OTHER_LETTER]), int(counts[NON_LETTER])


def dominant_script(hangul: float, latin: float, other: float) -> str | None:
    """The script most letters are in (``hangul``, ``latin`` or ``other``; a tie goes to Hangul, then Latin); None
    without letters. Counts or shares alike."""
    if hangul + latin + other <= 0:
        return None
    return SCRIPTS[max(range(3), key=lambda i: ((hangul, latin, other)[i], -i))]


def text_features(prefix: str, text: str) -> Row:
    """``<prefix>_chars``, ``_non_letter_share`` and ``_script`` (the dominant script; absent without letters)."""
    hangul, latin, other, non_letters = script_counts(text)
    row: Row = {f"{prefix}_chars": float(len(text))}
    letters = hangul + latin + other
    if letters + non_letters:
        row[f"{prefix}_non_letter_share"] = non_letters / (letters + non_letters)
    if letters:
        row[f"{prefix}_script"] = dominant_script(hangul, latin, other)
    return row


def _script_from_shares(row: Mapping[str, Any], prefix: str) -> str | None:
    """The dominant script of a row written before ``<prefix>_script`` existed (it held the three script shares)."""
    shares = [v for script in SCRIPTS if isinstance(v := row.get(f"{prefix}_{script}_share"), int | float)]
    if len(shares) < len(SCRIPTS):
        return None
    hangul, latin, other = shares
    return dominant_script(hangul, latin, other)


# ---- refusals (same phrases and normalisation as the rules judge, in one pass) --------------------------------------
_APOSTROPHES = ("\u2019", "\u2018", "\u02bc")


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("`", "'")
    if not text.isascii():  # str.replace is much faster than str.translate on non-ASCII text
        for apostrophe in _APOSTROPHES:
            text = text.replace(apostrophe, "'")
    return " ".join(text.casefold().split())


_EN_PHRASES = sorted((_normalise(p) for p in REFUSALS_EN), key=len, reverse=True)
# ``\b`` before a letter is the rules judge's ``(?<!\w)``; the look-ahead on first letters skips most positions.
_FIRST_LETTERS = "".join(sorted({p[0] for p in _EN_PHRASES}))
_REFUSAL_EN = re.compile(rf"\b(?=[{_FIRST_LETTERS}])(?:" + "|".join(map(re.escape, _EN_PHRASES)) + r")(?!\w)")
_REFUSAL_KO = tuple("".join(_normalise(p).split()) for p in REFUSALS_KO)


def is_refusal(answer: str) -> bool:
    """Whether the opening of ``answer`` holds a refusal phrase (``monitors.judges.rules.find_refusal``, faster)."""
    head = _normalise(answer[:REFUSAL_WINDOW])
    if _REFUSAL_EN.search(head):
        return True
    compact = head.replace(" ", "")
    return any(phrase in compact for phrase in _REFUSAL_KO)


# ---- one sample ------------------------------------------------------------------------------------------------------
def prompt_text(sample: Sample) -> str:
    """All the text the client sent: every message's text (chat), the prompt (completions) or the input (embeddings)."""
    request = sample.request
    messages = request.get("messages")
    if isinstance(messages, list):
        return "\n".join(content_text(m.get("content")) for m in messages if isinstance(m, dict))
    for name in ("prompt", "input"):
        value = request.get(name)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return "\n".join(v for v in value if isinstance(v, str))
    return ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def finish_category(reason: Any) -> str:
    """A bounded finish-reason category."""
    if reason is None:
        return "none"
    if reason == "function_call":
        return "tool_calls"
    return reason if reason in FINISH_REASONS else "other"


def extract(sample: Sample, scores: Mapping[str, float] | None = None) -> Row:
    """The feature row of one sample (plus ``ts``). Missing values are left out of the row."""
    row: Row = {"ts": float(sample.ts)}
    row.update(text_features("prompt", prompt_text(sample)))
    if sample.endpoint != "embeddings":
        answer = sample.answer
        row.update(text_features("response", answer))
        row["finish_reason"] = finish_category(sample.finish_reason)
        row["refusal"] = 1.0 if answer and is_refusal(answer) else 0.0
        row["response_tokens"] = _number(sample.usage.get("output"))
    row["prompt_tokens"] = _number(sample.usage.get("input"))
    row["latency_seconds"] = _number(sample.latency.get("total"))
    row["ttft_seconds"] = _number(sample.latency.get("ttft"))
    row["cost_usd"] = _number(sample.cost_usd)
    for name, score in (scores or {}).items():
        if name in JUDGE_FEATURE_NAMES and (value := _number(score)) is not None:
            row[name] = value
    return {k: v for k, v in row.items() if v is not None}


# ---- many rows -------------------------------------------------------------------------------------------------------
def to_columns(rows: Iterable[Row], names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Rows as one array per feature: float64 with NaN for the missing (numerical and binary), object arrays with
    None for the missing (categorical, e.g. ``finish_reason``)."""
    rows = rows if isinstance(rows, list) else list(rows)
    columns: dict[str, np.ndarray] = {}
    for name in names if names is not None else FEATURES:
        values = [r.get(name) for r in rows]
        if name.endswith("_script"):  # rows stored by an earlier version hold the script shares instead
            prefix = name.removesuffix("_script")
            values = [_script_from_shares(r, prefix) if v is None else v for v, r in zip(values, rows, strict=True)]
        columns[name] = np.array(values, dtype=object if name in LABEL_FEATURES else float)
    return columns


def check_row(row: Mapping[str, Any]) -> Row:
    """A feature row read from a file, validated: known feature names only, numbers where numbers belong. Columns of
    retired features are accepted: script shares become the dominant script, the rest is dropped.

    Raises ValueError naming the first problem."""
    out: Row = {}
    shares: dict[str, Row] = {}
    for name, value in row.items():
        if name == "ts" or value is None or value == "":
            if name == "ts" and value not in (None, ""):
                out["ts"] = float(value)
            continue
        spec = FEATURES.get(name)
        if spec is None and name not in RETIRED:
            raise ValueError(f"unknown feature column {name!r} (known: ts, {', '.join(FEATURES)})")
        if name == "finish_reason":
            out[name] = finish_category(str(value))
            continue
        if name in ("prompt_script", "response_script"):
            if value not in SCRIPTS:
                raise ValueError(f"feature {name!r}: {value!r} is not one of {', '.join(SCRIPTS)}")
            out[name] = value
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"feature {name!r}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"feature {name!r}: {value!r} is not a finite number")
        if name.endswith("_share") and name in RETIRED:
            prefix, _, script = name.removesuffix("_share").rpartition("_")
            shares.setdefault(prefix, {})[f"{prefix}_{script}_share"] = number
        elif name in FEATURES:
            out[name] = number
    for prefix, values in shares.items():
        if f"{prefix}_script" not in out and (dominant := _script_from_shares(values, prefix)) is not None:
            out[f"{prefix}_script"] = dominant
    return out
