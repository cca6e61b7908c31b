"""Tokens, generated text, fake logprobs and embeddings of the simulator.

The simulator's tokenizer is deliberately trivial, so that tests can count tokens by hand: **a token is a
whitespace-separated word**. ``count_tokens("Hello,  big world")`` is 3. A streamed token is the word together with
the whitespace before it (the last one also carries trailing whitespace), so concatenating the streamed pieces
gives the exact text back.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import zlib
from functools import lru_cache

_PIECE = re.compile(r"\s*\S+")
_WORD_CHARS = re.compile(r"\w+")

#: Vocabulary of generated answers (lorem ipsum, lower case).
_LOREM = """lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore
    magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex ea commodo consequat
    duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur excepteur sint occaecat
    cupidatat non proident sunt culpa qui officia deserunt mollit anim id est laborum"""
VOCABULARY: tuple[str, ...] = tuple(_LOREM.split())


def count_tokens(text: str) -> int:
    """Number of tokens of ``text``: its whitespace-separated words."""
    return len(text.split())


def split_tokens(text: str) -> list[str]:
    """``text`` cut into tokens as they are streamed: ``"".join(split_tokens(t)) == t`` whenever ``t`` has a word.

    Text without any word has no token (and streams as nothing).
    """
    pieces = _PIECE.findall(text)
    if pieces:
        used = sum(len(piece) for piece in pieces)
        if used < len(text):
            pieces[-1] += text[used:]
    return pieces


def generate_tokens(seed: int, count: int) -> list[str]:
    """``count`` deterministic lorem-ipsum tokens, as sentences: capitalised, ending with a full stop."""
    if count <= 0:
        return []
    rng = random.Random(seed)
    words = rng.choices(VOCABULARY, k=count)
    tokens: list[str] = []
    capital = True
    for i, word in enumerate(words):
        if capital:
            word = word.capitalize()
            capital = False
        if i == count - 1 or rng.random() < 0.1:
            word += "."
            capital = True
        tokens.append(word if i == 0 else " " + word)
    return tokens


def text_digest(*parts: str, previous: bytes = b"") -> bytes:
    """A stable 8-byte digest of ``parts`` chained onto ``previous`` (the prefix cache and seeds use it)."""
    digest = hashlib.blake2b(previous, digest_size=8)
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.digest()


def token_logprob(token: str, position: int) -> float:
    """The deterministic fake log-probability of ``token`` at ``position`` (between -0.05 and -2.55)."""
    code = zlib.crc32(token.encode("utf-8", "surrogatepass"), position & 0xFFFFFFFF)
    return -round(0.05 + (code % 1000) / 400.0, 4)


_HALF = -0.6931  # ln(1/2): a token less likely than this is not its position's most likely one


def top_alternatives(token: str, position: int, count: int, logprob: float | None = None) -> list[tuple[str, float]]:
    """``count`` entries of (token, logprob), most likely first: ``token`` itself, then other vocabulary words.

    ``logprob`` overrides the token's own; when it is below ln(1/2), another word comes first (with the rest of the
    probability) and the token second (listed even when ``count`` is 1, as vLLM lists the sampled token)."""
    if count <= 0:
        return []
    if logprob is not None and logprob < _HALF:
        rest = top_alternatives(token, position, count + 1)[1:]
        first = round(math.log1p(-math.exp(logprob)), 4)
        others = [(alt, min(value, logprob - 0.1 * (i + 1))) for i, (alt, value) in enumerate(rest[1:])]
        return [(rest[0][0], first), (token, logprob), *others][: max(count, 2)]  # the token itself stays listed
    logprob = token_logprob(token, position) if logprob is None else logprob
    out = [(token, logprob)]
    code = zlib.crc32(token.encode("utf-8", "surrogatepass"), (position * 7919) & 0xFFFFFFFF)
    prefix = " " if token[:1].isspace() else ""
    seen = {token}
    size = len(VOCABULARY)
    stride = next(s for s in (29, 23, 19, 17, 13, 11, 7, 5, 3, 1) if math.gcd(s, size) == 1)  # visits every word
    for step in range(size):  # one bounded pass: never more words than the vocabulary has
        if len(out) >= count:
            break
        candidate = prefix + VOCABULARY[(code + stride * step) % size]
        if candidate in seen:
            continue
        seen.add(candidate)
        out.append((candidate, round(logprob - 0.75 * len(out) - (code % 7) / 10.0, 4)))
    return out


@lru_cache(maxsize=65536)
def _word_vector(word: str, dimensions: int, seed: int) -> tuple[float, ...]:
    rng = random.Random(f"{seed}\x00{word}")
    return tuple(rng.gauss(0.0, 1.0) for _ in range(dimensions))


def embed(text: str, dimensions: int, seed: int = 0) -> list[float]:
    """A deterministic unit vector for ``text``: the normalised sum of one pseudo-random vector per word.

    The same text always gives the same vector, and texts that share words get similar vectors (cosine > 0), so
    similarity-based metrics compute something meaningful. A text without words gets a fixed vector.
    """
    words = _WORD_CHARS.findall(text.lower()) or [""]
    total = [0.0] * dimensions
    for word in words:
        for i, value in enumerate(_word_vector(word, dimensions, seed)):
            total[i] += value
    norm = math.sqrt(sum(value * value for value in total)) or 1.0
    return [value / norm for value in total]
