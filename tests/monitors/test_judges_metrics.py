"""Reference metrics comparable across languages (issue 18, item 4) and perplexity at the edges (item 5)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from llmops.sample import Sample
from monitors.judges.base import JudgeError
from monitors.judges.perplexity import PerplexityJudge
from monitors.judges.reference import (
    ReferenceJudge,
    bleu,
    bleu_tokenize_for,
    chrf,
    is_korean,
    ko_mecab_available,
    plain_punctuation,
    rouge_l,
)
from tests.monitors.test_judges import by_criterion, make_sample

needs_mecab = pytest.mark.skipif(not ko_mecab_available(), reason="sacrebleu[ko] (mecab-ko) is not installed")

# ---- reference metrics -----------------------------------------------------------------------------------------------


async def criteria(answer: str, reference: str) -> dict[str, float]:
    results = await ReferenceJudge().evaluate(make_sample(answer, reference=reference), None)
    return {r.criterion: r.score for r in results}


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("The cat sat on the mat.", {"chrf", "bleu_13a", "rouge_l"}),
        ("He said “yes” – twice… Café!", {"chrf", "bleu_13a", "rouge_l"}),  # typography never switches tokenizers
        ("Кошка сидела на коврике.", {"chrf", "bleu_intl", "rouge_l"}),
        ("東京は日本の首都です。", {"chrf", "bleu_char", "rouge_l"}),
        ("서울은 한국의 수도이다", {"chrf", "bleu_char", "bleu_ko_mecab", "rouge_l"}),
        ("Python의 list comprehension은 편리하다", {"chrf", "bleu_char", "bleu_ko_mecab", "rouge_l"}),
    ],
)
async def test_bleu_is_exported_per_tokenizer(reference: str, expected: set[str]) -> None:
    if not ko_mecab_available():
        expected = expected - {"bleu_ko_mecab"}
    assert set(await criteria(reference, reference)) == expected  # never one "bleu" series mixing scales
    assert all(score == pytest.approx(1.0) for score in (await criteria(reference, reference)).values())


def test_typographic_punctuation_does_not_switch_the_tokenizer() -> None:
    reference = "He said “yes” – twice."
    assert bleu_tokenize_for(reference) == "13a"  # its letters are all Latin (it was "intl": not ASCII)
    assert bleu_tokenize_for("Café au lait, s’il vous plaît") == "13a"
    assert plain_punctuation(reference) == 'He said "yes" - twice.'
    # the same words with ASCII punctuation match exactly: BLEU 1 (with curly quotes glued to words under 13a and
    # no mapping, "“yes”" and '"yes"' were different tokens and BLEU fell to 0.16)
    assert bleu('He said "yes" - twice.', reference) == (pytest.approx(1.0), "13a")
    assert chrf('He said "yes" - twice.', reference) == pytest.approx(1.0)


@needs_mecab
def test_ko_mecab_bleu_hand_computed() -> None:
    """MeCab-ko morphemes: hypothesis 서울/은/한국/의/수도/입니다 (6), reference 서울/은/한국/의/수도/이/다 (7).
    n-gram precisions 5/6, 4/5, 3/4, 2/3 (product 1/3); brevity penalty exp(1 - 7/6)."""
    expected = math.exp(1 - 7 / 6) * (1 / 3) ** 0.25
    assert bleu("서울은 한국의 수도입니다", "서울은 한국의 수도이다", "ko-mecab") == (
        pytest.approx(expected),
        "ko-mecab",
    )
    assert is_korean("서울은 한국의 수도이다") and not is_korean("東京は日本の首都です。") and not is_korean("Seoul")


async def test_chrf_is_the_primary_score_and_one_scale_for_english_and_korean() -> None:
    english = await criteria("The capital of France is Paris.", "Paris is the capital of France.")
    english_unrelated = await criteria("Quantum chromodynamics describes the strong force.", "The cat sat on the mat.")
    korean = await criteria("서울은 한국의 수도입니다", "서울은 한국의 수도이다")
    korean_unrelated = await criteria("오늘 날씨가 맑습니다", "서울은 한국의 수도이다")
    # a correct paraphrase scores well in both languages; unrelated text scores low in both
    assert english["chrf"] > 0.6 and korean["chrf"] > 0.6
    assert english_unrelated["chrf"] < 0.2 and korean_unrelated["chrf"] < 0.2
    # while word BLEU of the English paraphrase (0.29) and character BLEU of the Korean one are on other scales
    assert english["bleu_13a"] < 0.35 < korean["bleu_char"]
    assert chrf("", "서울") == 0.0


def test_rouge_l_floor_on_unrelated_korean_is_documented() -> None:
    """Syllable-level ROUGE-L does not reach 0 on unrelated Korean: particles and endings recur (docs/judges.md)."""
    pairs = [
        (
            "저는 어제 친구와 함께 영화를 보러 갔는데 정말 재미있었습니다.",
            "이 제품은 배송이 빠르고 가격도 저렴해서 만족스럽습니다.",
        ),
        (
            "회의는 다음 주 월요일 오전 열 시에 시작할 예정입니다.",
            "고양이는 하루에 열두 시간 이상 잠을 자는 동물입니다.",
        ),
    ]
    floors = [rouge_l(a, r) for a, r in pairs]
    assert all(0.1 < f < 0.3 for f in floors), floors
    assert all(chrf(a, r) < 0.15 for a, r in pairs)  # chrF stays near 0 on the same pairs


# ---- perplexity ------------------------------------------------------------------------------------------------------

HALF = math.log(0.5)


def with_logprobs(logprobs: list[float], output: int | None, *, estimated: bool = False, **request: Any) -> Sample:
    sample = make_sample(logprobs=logprobs)
    sample.usage = {"input": 5, "cached": 0}
    if output is not None:
        sample.usage["output"] = output
    if estimated:
        sample.usage["estimated"] = True  # type: ignore[assignment]
    sample.request.update(request)
    return sample


async def test_perplexity_records_coverage_and_skips_below_95_percent() -> None:
    [result] = await PerplexityJudge().evaluate(with_logprobs([HALF] * 19, 20), None)
    assert result.details["perplexity"] == pytest.approx(2.0)
    assert (result.details["tokens_with_logprobs"], result.details["output_tokens"]) == (19, 20)
    assert result.details["coverage"] == pytest.approx(0.95)
    with pytest.raises(JudgeError) as info:
        await PerplexityJudge().evaluate(with_logprobs([HALF] * 18, 20), None)  # 90%: the mean of a subset
    assert info.value.reason == "low_coverage" and "18 of 20" in str(info.value)
    # the output count only estimated by the gateway: coverage cannot be checked, the sample is scored
    [estimated] = await PerplexityJudge().evaluate(with_logprobs([HALF] * 5, 20, estimated=True), None)
    assert estimated.details["coverage"] is None and estimated.details["perplexity"] == pytest.approx(2.0)


async def test_perplexity_drops_and_counts_vllm_neg_inf_standins() -> None:
    [result] = await PerplexityJudge().evaluate(with_logprobs([HALF] * 19 + [-9999.0], 20), None)
    # without dropping it the mean logprob would be (19 ln 0.5 - 9999) / 20 and perplexity e^500
    assert result.details["perplexity"] == pytest.approx(2.0) and result.details["dropped_neg_inf"] == 1
    assert result.details["coverage"] == pytest.approx(0.95)
    with pytest.raises(JudgeError) as info:  # two stand-ins: 18 of 20 usable
        await PerplexityJudge().evaluate(with_logprobs([HALF] * 18 + [-9999.0] * 2, 20), None)
    assert info.value.reason == "low_coverage"


async def test_perplexity_never_mixes_echoed_prompt_tokens() -> None:
    # echo: five prompt tokens (the first has no logprob, so four values), then the answer's two tokens
    echoed = [-7.0, -7.0, -7.0, -7.0, HALF, HALF]
    [result] = await PerplexityJudge().evaluate(with_logprobs(echoed, 2, echo=True), None)
    assert result.details["perplexity"] == pytest.approx(2.0) and result.details["echoed_prompt_logprobs"] == 4
    with pytest.raises(JudgeError) as unknown:  # echo without a trustworthy output count
        await PerplexityJudge().evaluate(with_logprobs(echoed, 2, estimated=True, echo=True), None)
    assert unknown.value.reason == "misaligned"
    with pytest.raises(JudgeError) as surplus:  # more logprobs than output tokens, and no echo asked
        await PerplexityJudge().evaluate(with_logprobs(echoed, 2), None)
    assert surplus.value.reason == "misaligned"


async def test_perplexity_records_the_sampling_settings() -> None:
    [result] = await PerplexityJudge().evaluate(
        with_logprobs([HALF] * 4, 4, temperature=0.7, top_p=0.9, seed=3, stream=True), None
    )
    assert result.details["sampling"] == {"temperature": 0.7, "top_p": 0.9}
    assert "temperature" in result.explanation
    [default] = await PerplexityJudge().evaluate(with_logprobs([HALF] * 4, 4), None)
    assert default.details["sampling"] == {} and "server defaults" in default.explanation


async def test_reference_criteria_on_a_korean_sample_end_to_end() -> None:
    results = by_criterion(
        await ReferenceJudge().evaluate(
            make_sample("서울은 한국의 수도입니다", reference="서울은 한국의 수도이다"), None
        )
    )
    assert results["bleu_char"].details["tokenize"] == "char"
    assert results["chrf"].explanation.startswith("sentence chrF")
