"""Personal data in text: find it, and mask it in a document so that equal values keep equal masks.

Shared by the gateway (which masks traffic samples and traced content before they leave the request) and the monitors
(whose rules judge flags answers that contain personal data the prompt did not). Pure and dependency-free (``re``,
``datetime``): part of the kernel, importing nothing of the product.

Types (:data:`PII_TYPES`), each with its mask ``[TYPE_n]``:

- ``email``: ``name@domain.tld`` (ASCII; Korean text right before or after does not hide it).
- ``phone``: Korean mobile numbers (``010-1234-5678``, ``01012345678``, ``010 1234 5678``), Korean landlines with
  separators (``02-123-4567``, ``031-123-4567``), international numbers with ``+`` and a country code (8 to 15 digits,
  ``+82 10-1234-5678``, ``+1 (415) 555-0132``), North American ``(415) 555-0132`` / ``415-555-0132``.
- ``rrn``: Korean resident registration numbers (주민등록번호) ``YYMMDD-GNNNNNN``: a real birth date and a gender digit
  1–8. Written bare (13 digits in a row) the number must also pass the checksum, or any 13-digit number with a date-like
  start would be masked. Written with its hyphen (or a space) the date is enough: numbers issued since October 2020
  end in random digits and fail the checksum.
- ``card``: payment card numbers, 13 to 19 digits (bare, or in groups of 4 separated by one space or hyphen, or Amex's
  4-6-5), not starting with 0, passing the Luhn check.
- ``secret``: API-key-like secrets: OpenAI/Anthropic ``sk-...``, GitHub ``ghp_...``/``github_pat_...``, AWS ``AKIA...``,
  Google ``AIza...``, Slack ``xox?-...``, GitLab ``glpat-...``, Hugging Face ``hf_...``, JWTs, PEM private keys,
  ``Bearer`` tokens, and the value of ``api_key=`` / ``password:`` / ``token=``-style assignments.

A match that overlaps an earlier one (in the text) is dropped; at the same start the type listed first in
:data:`PII_TYPES` wins. Nothing here logs or keeps a value beyond the :class:`Masker` of one document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

PII_TYPES: tuple[str, ...] = ("secret", "email", "rrn", "card", "phone")

#: A mask written by :class:`Masker`: ``[EMAIL_1]``, ``[PHONE_2]``, ...
MASK_PATTERN = re.compile(r"\[(SECRET|EMAIL|RRN|CARD|PHONE)_(\d{1,6})\]")

# Speed: Python's regex engine skips ahead in C only to a pattern's first literal or character class, so every pattern
# here starts with one (a lookbehind first would be tried at every position of the text); a lookbehind comes after it,
# looking back over it. Secrets are only looked for when their prefix is in the text, numbers only inside runs of
# digits and separators (``_NUMBER_RUN``), e-mail addresses only around an ``@``.
_NOT_ALNUM_AFTER = r"(?![A-Za-z0-9_-])"


def _prefixed(prefix: str, rest: str) -> re.Pattern[str]:
    """``prefix`` (a literal) not preceded by a letter, digit, ``_`` or ``-``, then ``rest``."""
    literal = re.escape(prefix)
    return re.compile(rf"{literal}(?<![A-Za-z0-9_-]{literal}){rest}")


#: (gate, pattern, group): the pattern runs only when the gate (a substring, lower case for the case-insensitive
#: ones) is in the text; ``group`` names the part that is masked (None: the whole match).
_SECRETS: tuple[tuple[str, re.Pattern[str], str | None], ...] = (
    ("sk-", _prefixed("sk-", r"(?:proj-|ant-(?:api\d\d-)?|svcacct-)?[A-Za-z0-9_-]{20,}" + _NOT_ALNUM_AFTER), None),
    ("gh", re.compile(r"gh[pousr]_(?<![A-Za-z0-9_-]gh[pousr]_)[A-Za-z0-9]{36,}" + _NOT_ALNUM_AFTER), None),
    ("github_pat_", _prefixed("github_pat_", r"[A-Za-z0-9_]{22,}" + _NOT_ALNUM_AFTER), None),
    ("AKIA", _prefixed("AKIA", r"[0-9A-Z]{16}" + _NOT_ALNUM_AFTER), None),
    ("ASIA", _prefixed("ASIA", r"[0-9A-Z]{16}" + _NOT_ALNUM_AFTER), None),
    ("AIza", _prefixed("AIza", r"[0-9A-Za-z_-]{35}" + _NOT_ALNUM_AFTER), None),
    ("xox", re.compile(r"xox[abposr]-(?<![A-Za-z0-9_-]xox[abposr]-)[A-Za-z0-9-]{10,}" + _NOT_ALNUM_AFTER), None),
    ("glpat-", _prefixed("glpat-", r"[A-Za-z0-9_-]{20,}" + _NOT_ALNUM_AFTER), None),
    ("hf_", _prefixed("hf_", r"[A-Za-z0-9]{30,}" + _NOT_ALNUM_AFTER), None),
    ("eyJ", _prefixed("eyJ", r"[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), None),
    (
        "-----BEGIN",
        re.compile(r"-----BEGIN[A-Z ]{0,20} PRIVATE KEY-----[\s\S]{0,8192}?-----END[A-Z ]{0,20} PRIVATE KEY-----"),
        None,
    ),
)
#: Case-insensitive ones, matched in the lower-cased text: ``Bearer <token>`` and ``api_key=...``,
#: ``password: ...`` (the value is masked). Gates: these words.
_LOWER_GATES = ("bearer", "key", "secret", "token", "password", "passwd", "pwd")
_LOWER_SECRETS = re.compile(
    r"(?:bearer\s+|(?:api[_-]?key|secret[_-]?key|client[_-]?secret|access[_-]?token|auth[_-]?token|password|passwd"
    r"|pwd|token)[\"']?\s*[:=]\s*[\"']?)(?P<v>[^\s\"',;]{8,})"
)
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,64}\Z")
_EMAIL_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_EMAIL_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
#: Where numbers can be: a digit, then at least 5 digits or separators, then a digit.
_NUMBER_RUN = re.compile(r"\d[\d ().-]{5,}\d")
_RRN = re.compile(r"\d(?<![\d.-]\d)\d{5}([- ]?)[1-8]\d{6}(?![\d-]|\.\d)")
_CARD = re.compile(
    r"[1-9](?<![\d.-][1-9])(?:\d{12,18}"  # bare
    r"|\d{3}([ -])\d{4}\1\d{4}\1\d{1,7}"  # groups of 4 (the last 1 to 7 digits)
    r"|(?<=3)\d{3}([ -])\d{6}\2\d{5})"  # Amex 4-6-5
    r"(?![\d-]|\.\d)"
)
_PHONE = re.compile(
    r"[\d+(](?<![\d+][\d+(])(?:"
    r"(?<=0)1[016789][-. ]?\d{3,4}[-. ]?\d{4}"  # Korean mobile
    r"|(?<=0)(?:2|[3-6][1-5]|70)[-. )]\d{3,4}[-. ]\d{4}"  # Korean landline / VoIP, separators required
    r"|(?<=\+)\d{1,3}(?:[-. ]?\(?\d{1,4}\)?){1,5}[-. ]?\d{2,4}"  # international
    r"|(?<=\()\d{3}\) ?\d{3}[-. ]\d{4}|(?<=\d)\d{2}[-.]\d{3}[-.]\d{4}"  # North American
    r")(?![\d-])"
)

_RRN_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
_CENTURY = {"1": 1900, "2": 1900, "5": 1900, "6": 1900, "3": 2000, "4": 2000, "7": 2000, "8": 2000}


def rrn_checksum_ok(digits: str) -> bool:
    """The check digit (the 13th) of a resident registration number's 13 digits."""
    if len(digits) != 13 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits, _RRN_WEIGHTS, strict=False))
    return (11 - total % 11) % 10 == int(digits[12])


def _rrn_date_ok(birth: str, gender: str) -> bool:
    try:
        date(_CENTURY[gender] + int(birth[:2]), int(birth[2:4]), int(birth[4:6]))
    except (KeyError, ValueError):
        return False
    return True


def luhn_ok(digits: str) -> bool:
    """The Luhn check of a card number's digits."""
    if not digits.isdigit():
        return False
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(frozen=True, slots=True)
class Found:
    """One piece of personal data: its type and where it is (``text[start:end]``)."""

    type: str
    start: int
    end: int


def _secrets(text: str) -> Iterable[Found]:
    for gate, pattern, group in _SECRETS:
        if gate in text:
            for m in pattern.finditer(text):
                yield Found("secret", *m.span(group or 0))
    lower = text.lower()
    if len(lower) == len(text) and any(gate in lower for gate in _LOWER_GATES):  # same length: same indices
        for m in _LOWER_SECRETS.finditer(lower):
            start = m.start()
            if start and lower[start - 1].isalnum():  # "mytoken=...": not a word of its own
                continue
            value = m.group("v")
            if m.group().startswith("bearer") and len(value.rstrip("=")) < 20:
                continue
            yield Found("secret", *m.span("v"))


def _emails(text: str) -> Iterable[Found]:
    at = text.find("@")
    while at > 0:
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1) if local else None
        if local and domain and not (local.start() and text[local.start() - 1] in _EMAIL_LOCAL_CHARS):
            yield Found("email", local.start(), domain.end())
        at = text.find("@", at + 1)


def _number_windows(text: str) -> list[tuple[int, int]]:
    """Stretches of ``text`` that may hold a number of interest: each run of digits and separators, with the two
    characters either side (a ``+`` or ``(`` before, what the lookarounds check)."""
    n = len(text)
    return [(max(0, m.start() - 2), min(n, m.end() + 2)) for m in _NUMBER_RUN.finditer(text)]


def _rrns(text: str, windows: list[tuple[int, int]]) -> Iterable[Found]:
    for lo, hi in windows:
        for m in _RRN.finditer(text, lo, hi):
            value = m.group()
            digits = value.replace("-", "").replace(" ", "")
            if _rrn_date_ok(digits[:6], digits[6]) and (m.group(1) or rrn_checksum_ok(digits)):
                yield Found("rrn", *m.span())


def _cards(text: str, windows: list[tuple[int, int]]) -> Iterable[Found]:
    for lo, hi in windows:
        for m in _CARD.finditer(text, lo, hi):
            digits = m.group().replace(" ", "").replace("-", "")
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                yield Found("card", *m.span())


def _phones(text: str, windows: list[tuple[int, int]]) -> Iterable[Found]:
    for lo, hi in windows:
        for m in _PHONE.finditer(text, lo, hi):
            value = m.group()
            if value.startswith("+") and not 8 <= sum(c.isdigit() for c in value) <= 15:
                continue
            yield Found("phone", *m.span())


_NUMBERS = {"rrn": _rrns, "card": _cards, "phone": _phones}
_NEEDS_DIGIT = frozenset(_NUMBERS)


def find_pii(text: str, types: Iterable[str] = PII_TYPES) -> list[Found]:
    """The personal data in ``text``, in order, without overlaps (see the module docstring)."""
    if len(text) < 6:  # the shortest: an e-mail address a@b.co
        return []
    chosen = types if isinstance(types, frozenset) else frozenset(types)
    found: list[Found] = []
    if "secret" in chosen:
        found.extend(_secrets(text))
    if "email" in chosen and "@" in text:
        found.extend(_emails(text))
    if _NEEDS_DIGIT.intersection(chosen):
        windows = _number_windows(text)
        if windows:
            for kind in ("rrn", "card", "phone"):
                if kind in chosen:
                    found.extend(_NUMBERS[kind](text, windows))
    if len(found) < 2:
        return found
    rank = {kind: i for i, kind in enumerate(PII_TYPES)}
    found = sorted(set(found), key=lambda f: (f.start, rank[f.type], -f.end))
    kept: list[Found] = []
    for f in found:
        if kept and f.start < kept[-1].end:
            continue
        kept.append(f)
    return kept


def normalise(kind: str, value: str) -> str:
    """The form two writings of one value share: digits only for numbers, lower case for e-mail addresses."""
    if kind in _NEEDS_DIGIT:
        return "".join(c for c in value if c.isdigit())
    if kind == "email":
        return value.lower()
    return value


class Masker:
    """Masks the personal data of one document (a traffic sample: prompt, answer, metadata). Equal values get equal
    masks throughout the document (``[EMAIL_1]`` in the prompt and in the answer is the same address), so a reader
    can tell an answer that repeats the user's own data from one that brings new data, without seeing any of it.
    ``counts`` holds the masks written, by type."""

    __slots__ = ("_distinct", "_ids", "counts", "types")

    def __init__(self, types: Iterable[str] = PII_TYPES) -> None:
        chosen = set(types)
        self.types = frozenset(t for t in PII_TYPES if t in chosen)
        self._ids: dict[tuple[str, str], int] = {}
        self._distinct: dict[str, int] = {}  # distinct values seen, by type
        self.counts: dict[str, int] = {}

    def mask(self, kind: str, value: str) -> str:
        """The mask of one value of type ``kind`` (numbered per type, in order of first sight)."""
        key = (kind, normalise(kind, value))
        number = self._ids.get(key)
        if number is None:
            number = self._ids[key] = self._distinct.get(kind, 0) + 1
            self._distinct[kind] = number
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return f"[{kind.upper()}_{number}]"

    def text(self, text: str) -> str:
        """``text`` with every piece of personal data replaced by its mask."""
        if not self.types:
            return text
        found = find_pii(text, self.types)
        if not found:
            return text
        out: list[str] = []
        at = 0
        for f in found:
            out.append(text[at : f.start])
            out.append(self.mask(f.type, text[f.start : f.end]))
            at = f.end
        out.append(text[at:])
        return "".join(out)

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string masked (dict keys are left as they are). Containers are copied only
        where something changed; the value given is never modified."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            out_d = {k: self.value(v) for k, v in value.items()}
            return value if all(out_d[k] is v for k, v in value.items()) else out_d
        if isinstance(value, list):
            out_l = [self.value(v) for v in value]
            return value if all(a is b for a, b in zip(out_l, value, strict=True)) else out_l
        return value

    @property
    def total(self) -> int:
        return sum(self.counts.values())
