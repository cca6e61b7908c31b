"""Reference metrics: sentence BLEU (sacrebleu) and ROUGE-L F-measure (rouge-score), correct for non-Latin text.

Tokenisation, the part that decides whether Korean (or Chinese, Japanese, Thai...) scores mean anything:

* **ROUGE-L** uses :class:`UnicodeTokenizer` for every language instead of rouge-score's default, which keeps only
  ``[a-z0-9]`` and so turns every Korean text into zero tokens (score 0 whatever the answer). Text is NFKC-normalised
  and case-folded; letters of scripts written without spaces between words *or* whose space-separated units glue
  particles and endings onto the stem — Hangul, CJK ideographs, Hiragana/Katakana, Thai, Lao, Khmer, Myanmar, Tibetan —
  become one token per character (Korean "서울은" / "서울의" then share "서울", as a morphological tokenizer would let
  them); every other run of letters, digits and combining marks is one word token (so Cyrillic, Greek, Arabic,
  Devanagari work too); punctuation is dropped. No stemming (a Porter stemmer is English-only).
* **BLEU** uses one sacrebleu tokenizer per sample, chosen from the *reference* (the target language, so the answer
  cannot change the rules): ``"char"`` when at least 10% of the reference's letters belong to the scripts above (the
  standard choice for Chinese/Japanese/Korean without a morphological analyser; ``ko-mecab`` needs an extra package),
  ``"13a"`` (the WMT standard) when the reference is plain ASCII, ``"intl"`` (Unicode punctuation splitting) for other
  space-delimited scripts. The tokenizer used is in ``details["tokenize"]``: scores from different tokenizers are not
  comparable, so compare a model's BLEU across samples of the same language.

Scores are in 0..1: BLEU is sacrebleu's 0..100 divided by 100 (sentence BLEU, exponential smoothing, effective order).
"""

from __future__ import annotations

import unicodedata

import sacrebleu
from rouge_score import rouge_scorer

from llmops.sample import Sample
from monitors.judges.base import JudgeLLM, JudgeResult

#: Code point ranges tokenised one character per token (scripts without spaces between words, and Hangul).
_CHAR_SCRIPTS: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x312F),  # Bopomofo
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFFDC),  # half-width Katakana and Hangul
    (0x20000, 0x3FFFF),  # CJK extensions B..
)

#: Share of the reference's letters in character-tokenised scripts from which BLEU uses ``tokenize="char"``.
CHAR_SHARE = 0.10


def is_char_script(ch: str) -> bool:
    """Whether ``ch`` belongs to a script tokenised one character per token."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CHAR_SCRIPTS)


class UnicodeTokenizer:
    """A rouge-score tokenizer (``tokenize(text) -> list[str]``) for any script; see the module docstring."""

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        word: list[str] = []
        for ch in unicodedata.normalize("NFKC", text).casefold():
            if is_char_script(ch) and unicodedata.category(ch)[0] in "LN":
                if word:
                    tokens.append("".join(word))
                    word = []
                tokens.append(ch)
            elif unicodedata.category(ch)[0] in "LNM":
                word.append(ch)
            elif word:
                tokens.append("".join(word))
                word = []
        if word:
            tokens.append("".join(word))
        return tokens


def bleu_tokenize_for(reference: str) -> str:
    """The sacrebleu tokenizer for a reference text: ``char``, ``13a`` or ``intl`` (see the module docstring)."""
    letters = [ch for ch in reference if unicodedata.category(ch)[0] == "L"]
    if letters and sum(is_char_script(ch) for ch in letters) / len(letters) >= CHAR_SHARE:
        return "char"
    return "13a" if reference.isascii() else "intl"


_ROUGE = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeTokenizer())


def bleu(answer: str, reference: str) -> tuple[float, str]:
    """Sentence BLEU in 0..1 and the sacrebleu tokenizer used."""
    tokenize = bleu_tokenize_for(reference)
    score = sacrebleu.sentence_bleu(answer, [reference], tokenize=tokenize).score / 100.0
    return min(1.0, max(0.0, score)), tokenize


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure in 0..1 with :class:`UnicodeTokenizer`."""
    return min(1.0, max(0.0, _ROUGE.score(reference, answer)["rougeL"].fmeasure))


class ReferenceJudge:
    """``bleu`` and ``rouge_l`` of the answer against ``metadata.reference``."""

    name = "reference"
    needs_llm = False

    def applies(self, sample: Sample) -> bool:
        return sample.reference is not None

    async def evaluate(self, sample: Sample, llm: JudgeLLM | None = None) -> list[JudgeResult]:
        reference = sample.reference or ""
        answer = sample.answer
        bleu_score, tokenize = bleu(answer, reference)
        rouge_score = rouge_l(answer, reference)
        return [
            JudgeResult(
                self.name,
                "bleu",
                bleu_score,
                f"sentence BLEU {bleu_score * 100:.1f}/100 against the reference (sacrebleu, tokenize={tokenize})",
                {"tokenize": tokenize, "bleu": bleu_score * 100},
            ),
            JudgeResult(
                self.name,
                "rouge_l",
                rouge_score,
                f"ROUGE-L F-measure {rouge_score:.3f} against the reference (Unicode tokens, CJK/Hangul per character)",
                {"tokenizer": "unicode_v1"},
            ),
        ]
