"""The simulator's toy tokenizer: token ids for the word tokens of :mod:`llmops.simulator.text`.

A token is a whitespace-separated word together with the whitespace before it (the last one also carries trailing
whitespace), exactly the pieces :func:`~llmops.simulator.text.split_tokens` streams, so token counts are word counts
everywhere. Each piece gets a stable id from a hash of its text (``3 <= id < VOCAB_SIZE``; the same piece has the same
id in every process); ``<unk>``, ``<s>`` and ``</s>`` are ids 0, 1 and 2. Decoding needs the id → piece table that
this process built while encoding (``/tokenize``, token-id prompts, echoed logprobs): ids it never produced decode to
their decimal digits (``[5, 7]`` → ``"5 7"``), so a prompt of arbitrary ids still reads as one word per id.

Round trip: ``decode(encode(text)) == text`` for any text with a word in it (Korean included); text with no word has
no token. The tokenizer adds no special tokens (``add_special_tokens`` changes nothing), and chat messages add no
template tokens: a conversation's tokens are its messages' tokens, in order.
"""

from __future__ import annotations

import hashlib
import threading

from llmops.simulator.text import split_tokens

VOCAB_SIZE = 1 << 31  # ids fit a signed 32-bit integer, and JSON numbers of every client
SPECIAL_TOKENS: dict[str, int] = {"<unk>": 0, "<s>": 1, "</s>": 2}
BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<s>", "</s>", "<unk>"
_FIRST_ID = 3
_MAX_REMEMBERED = 1_000_000  # pieces remembered for decoding; beyond that, new ids decode as their digits

#: A minimal chat template (Jinja), for clients that render prompts themselves from ``/tokenizer_info``.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }}{% if not loop.last %}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}\n{% endif %}"
)

_lock = threading.Lock()
_pieces: dict[int, str] = {token_id: piece for piece, token_id in SPECIAL_TOKENS.items()}
_ids: dict[str, int] = dict(SPECIAL_TOKENS)


def _hashed(piece: str) -> int:
    digest = hashlib.blake2b(piece.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return _FIRST_ID + int.from_bytes(digest, "big") % (VOCAB_SIZE - _FIRST_ID)


def token_id(piece: str) -> int:
    """The id of one piece (remembered for :func:`decode`); a collision takes the next free id."""
    known = _ids.get(piece)
    if known is not None:
        return known
    with _lock:
        candidate = _hashed(piece)
        while _pieces.get(candidate, piece) != piece:
            candidate = _FIRST_ID + (candidate + 1 - _FIRST_ID) % (VOCAB_SIZE - _FIRST_ID)
        if len(_ids) < _MAX_REMEMBERED:
            _ids[piece] = candidate
            _pieces[candidate] = piece
        return candidate


def encode(text: str) -> tuple[list[int], list[str]]:
    """The token ids of ``text`` and their pieces."""
    pieces = split_tokens(text)
    return [token_id(piece) for piece in pieces], pieces


def piece_of(token: int, position: int) -> str:
    """The text of one id at ``position`` in a sequence (unknown ids read as their digits, spaced as words)."""
    piece = _pieces.get(token)
    if piece is not None:
        return piece
    return str(token) if position == 0 else " " + str(token)


def decode_pieces(tokens: list[int]) -> list[str]:
    """The piece of each id."""
    return [piece_of(token, position) for position, token in enumerate(tokens)]


def decode(tokens: list[int]) -> str:
    """The text of a sequence of ids."""
    return "".join(decode_pieces(tokens))


def out_of_vocabulary(tokens: list[int]) -> int | None:
    """The first id outside ``0 <= id < VOCAB_SIZE``, or None."""
    return next((token for token in tokens if not 0 <= token < VOCAB_SIZE), None)


def tokenizer_info(max_model_len: int) -> dict[str, object]:
    """``GET /tokenizer_info``: the tokenizer's configuration, in the fields of a Hugging Face
    ``tokenizer_config.json`` as vLLM reports them, plus ``tokenizer_class``."""
    return {
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": UNK_TOKEN,
        "pad_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_model_len,
        "chat_template": CHAT_TEMPLATE,
        "tokenizer_class": "SimulatorWordTokenizer",
    }
