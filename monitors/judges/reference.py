"""Reference metrics: sentence chrF and BLEU (sacrebleu) and ROUGE-L F-measure (rouge-score), sound for non-Latin text.

Criteria (scores in 0..1, sacrebleu's 0..100 divided by 100):

* ``chrf`` (the primary reference score): sentence chrF (Popović, 2015; sacrebleu's defaults: character n-grams up
  to 6, β = 2, whitespace ignored). It needs no tokenizer, so scores of English, Korean and any other language are
  on one scale and one series; it also gives partial credit for Korean particles and endings ("서울은" / "서울의").
* ``bleu_13a`` / ``bleu_intl`` / ``bleu_char``: sentence BLEU (exponential smoothing, effective order), exported under
  the name of the tokenizer used, chosen from the *reference* (the target language, so the answer cannot change the
  rules) by its **letters** only: ``char`` when at least 10% of them belong to the scripts written without spaces
  between words or whose space-separated units glue particles onto the stem (Hangul, CJK, kana, Thai, ... the
  standard choice for them without a morphological analyser); ``13a`` (the WMT standard) when all are Latin script;
  ``intl`` (Unicode punctuation splitting) for other space-delimited scripts (Cyrillic, Greek, Arabic, Devanagari...).
  BLEU on different tokenizations is on different scales (character BLEU of the same answer runs far higher than
  word BLEU), so each tokenizer is a series of its own: never one ``bleu`` series mixing them. Punctuation never
  decides the tokenizer: typographic quotes, dashes and ellipses are mapped to ASCII in both texts first
  (:func:`plain_punctuation`), so ``“Paris” – France`` and ``"Paris" - France`` tokenise alike.
* ``bleu_ko_mecab``: also for Korean references (Hangul at least half of their character-script letters) when
  sacrebleu's ``ko-mecab`` tokenizer is installed (``sacrebleu[ko]``: mecab-ko and its dictionary, from pip, nothing
  downloaded at run time): BLEU over MeCab-ko morphemes, as Korean MT results are usually quoted.
* ``rouge_l``: ROUGE-L F-measure with :class:`UnicodeTokenizer` for every language instead of rouge-score's default,
  which keeps only ``[a-z0-9]`` and so turns every Korean text into zero tokens (score 0 whatever the answer). Text is
  NFKC-normalised and case-folded; letters of the character scripts above become one token per character (Hangul
  per syllable); every other run of letters, digits and combining marks is one word token; punctuation is dropped.
  No stemming (a Porter stemmer is English-only). Its floor on unrelated text is not 0: Korean sentences share many
  syllables (particles, endings: 는, 을, 습니다), so unrelated Korean sentences of 15–25 syllables score about
  0.10–0.27 (English: shared function words, about 0.15–0.3). Morpheme-level ROUGE-L (MeCab-ko) was measured and does
  not lower that floor (particles and endings are shared morphemes too), so it is not exported; chrF is the score to
  compare across languages (docs/judges.md).
"""

from __future__ import annotations

import unicodedata
from functools import cache

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
#: Share of Hangul among those letters from which a reference is Korean (``bleu_ko_mecab``).
HANGUL_SHARE = 0.5

#: Typographic punctuation read as its ASCII form before BLEU and chrF (quotes, dashes, ellipsis, primes).
_PUNCTUATION = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
        "\u2026": "...",
    }
)  # fmt: skip


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


def plain_punctuation(text: str) -> str:
    """``text`` NFKC-normalised with typographic quotes, dashes and the ellipsis in their ASCII forms."""
    return unicodedata.normalize("NFKC", text).translate(_PUNCTUATION)


def _is_hangul(ch: str) -> bool:
    cp = ord(ch)
    return 0xAC00 <= cp <= 0xD7A3 or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F or 0xA960 <= cp <= 0xA97F


def bleu_tokenize_for(reference: str) -> str:
    """The sacrebleu tokenizer for a reference text, from its letters only: ``char``, ``13a`` or ``intl`` (see the
    module docstring)."""
    letters = [ch for ch in unicodedata.normalize("NFKC", reference) if unicodedata.category(ch)[0] == "L"]
    if letters and sum(is_char_script(ch) for ch in letters) / len(letters) >= CHAR_SHARE:
        return "char"
    return "13a" if all("LATIN" in unicodedata.name(ch, "") for ch in letters) else "intl"


def is_korean(reference: str) -> bool:
    """Whether ``reference`` is Korean for BLEU: character-tokenised, and Hangul at least half of those letters."""
    if bleu_tokenize_for(reference) != "char":
        return False
    scripts = [ch for ch in reference if is_char_script(ch) and unicodedata.category(ch)[0] == "L"]
    return bool(scripts) and sum(_is_hangul(ch) for ch in scripts) / len(scripts) >= HANGUL_SHARE


@cache
def ko_mecab_available() -> bool:
    """Whether sacrebleu's ``ko-mecab`` tokenizer works here (``pip install "sacrebleu[ko]"``)."""
    try:
        return bool(sacrebleu.sentence_bleu("서울", ["서울"], tokenize="ko-mecab").score)
    except Exception:  # mecab-ko or its dictionary missing
        return False


_ROUGE = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeTokenizer())


def _clamp(score: float) -> float:
    return min(1.0, max(0.0, score))


def bleu(answer: str, reference: str, tokenize: str | None = None) -> tuple[float, str]:
    """Sentence BLEU in 0..1 and the sacrebleu tokenizer used (``tokenize``, or the reference's)."""
    tokenize = tokenize or bleu_tokenize_for(reference)
    score = sacrebleu.sentence_bleu(plain_punctuation(answer), [plain_punctuation(reference)], tokenize=tokenize)
    return _clamp(score.score / 100.0), tokenize


def chrf(answer: str, reference: str) -> float:
    """Sentence chrF in 0..1 (sacrebleu's defaults: chrF2, character n-grams up to 6, no word n-grams)."""
    return _clamp(sacrebleu.sentence_chrf(plain_punctuation(answer), [plain_punctuation(reference)]).score / 100.0)


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure in 0..1 with :class:`UnicodeTokenizer`."""
    return _clamp(_ROUGE.score(reference, answer)["rougeL"].fmeasure)


class ReferenceJudge:
    """``chrf``, ``bleu_<tokenizer>`` (and ``bleu_ko_mecab`` for Korean) and ``rouge_l`` of the answer against
    ``metadata.reference``. The conversation before the last user message plays no part: these compare two texts."""

    name = "reference"
    needs_llm = False

    def applies(self, sample: Sample) -> bool:
        return sample.reference is not None

    async def evaluate(self, sample: Sample, llm: JudgeLLM | None = None) -> list[JudgeResult]:
        reference = sample.reference or ""
        answer = sample.answer
        chrf_score = chrf(answer, reference)
        results = [
            JudgeResult(
                self.name,
                "chrf",
                chrf_score,
                f"sentence chrF {chrf_score * 100:.1f}/100 against the reference (sacrebleu chrF2, no tokenizer)",
                {"chrf": chrf_score * 100},
            )
        ]
        tokenizers = [bleu_tokenize_for(reference)]
        if is_korean(reference) and ko_mecab_available():
            tokenizers.append("ko-mecab")
        for tokenize in tokenizers:
            score, _ = bleu(answer, reference, tokenize)
            results.append(
                JudgeResult(
                    self.name,
                    "bleu_" + tokenize.replace("-", "_"),
                    score,
                    f"sentence BLEU {score * 100:.1f}/100 against the reference (sacrebleu, tokenize={tokenize}; "
                    "compare only with BLEU of the same tokenizer)",
                    {"tokenize": tokenize, "bleu": score * 100},
                )
            )
        rouge_score = rouge_l(answer, reference)
        results.append(
            JudgeResult(
                self.name,
                "rouge_l",
                rouge_score,
                f"ROUGE-L F-measure {rouge_score:.3f} against the reference (Unicode tokens, CJK/Hangul per character)",
                {"tokenizer": "unicode_v1"},
            )
        )
        return results
