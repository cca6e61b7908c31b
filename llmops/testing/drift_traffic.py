"""Seeded synthetic traffic for the drift tests and ``bench/drift.py``: English and Korean chat samples with usage,
latency, cost, finish reasons, refusals and judge scores, whose distributions a test can shift one at a time."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from llmops.sample import Sample

_EN = (
    "the model answer question data system request please explain how why what when where service latency token "
    "cost report window query database python function error server user account order price deliver weather city "
    "travel book music health policy review summary example code test deploy network cloud memory"
)
_KO = (
    "서울 날씨 질문 답변 설명 주문 배송 가격 계정 사용자 서비스 데이터 모델 요청 오류 서버 코드 예시 요약 정책 여행 "
    "음식 추천 병원 학교 회사 회의 일정 보고서 네트워크 메모리 시간 비용 문제 해결 방법 이유 결과 확인 부탁"
)
EN_WORDS, KO_WORDS = tuple(_EN.split()), tuple(_KO.split())
EN_REFUSAL = "I'm sorry, but I can't help with that request."
KO_REFUSAL = "죄송하지만 그 요청은 도와드릴 수 없습니다."


@dataclass(frozen=True)
class Traffic:
    """The knobs of one traffic regime (a test shifts one of them)."""

    korean: float = 0.2  # share of requests (and answers) in Korean
    prompt_words: float = 40.0  # median words per prompt
    response_words: float = 120.0  # median words per answer
    quality: float = 7.5  # mean LLM-judge rating, 1..10
    refusal_rate: float = 0.02
    other_script: float = 0.0  # share of requests (and answers) ending in a Japanese phrase
    empty_rate: float = 0.0  # share of empty answers
    max_tokens: int = 600
    model: str = "m"

    def shifted(self, **changes: Any) -> Traffic:
        return replace(self, **changes)


def _text(rng: np.random.Generator, words: tuple[str, ...] | list[str], median: float) -> tuple[str, int]:
    n = max(1, int(rng.lognormal(np.log(median), 0.45)))
    picks = rng.integers(0, len(words), n)
    text = " ".join(words[i] for i in picks)
    if rng.random() < 0.3:
        text += f" {int(rng.integers(1, 1000))}?"
    return text, n


def generate(traffic: Traffic, n: int, seed: int, start_ts: float | None = None) -> list[tuple[Sample, dict]]:
    """``n`` samples (with their judge scores) of ``traffic``, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    ts = time.time() if start_ts is None else start_ts
    out = []
    for i in range(n):
        korean = rng.random() < traffic.korean
        words, per_word = (KO_WORDS, 2.4) if korean else (EN_WORDS, 1.3)
        prompt, prompt_n = _text(rng, words, traffic.prompt_words)
        answer, answer_n = _text(rng, words, traffic.response_words)
        if traffic.other_script and rng.random() < traffic.other_script:
            prompt, answer = prompt + " 日本語でお願いします", answer + " 以上です"
        refused = rng.random() < traffic.refusal_rate
        if refused:
            answer, answer_n = (KO_REFUSAL if korean else EN_REFUSAL), 8
        empty = not refused and traffic.empty_rate and rng.random() < traffic.empty_rate
        if empty:
            answer, answer_n = "", 0
        input_tokens = int(prompt_n * per_word + rng.integers(5, 15))
        output_tokens = int(answer_n * per_word + rng.integers(0, 5))
        finish = "stop"
        if output_tokens > traffic.max_tokens:
            output_tokens, finish = traffic.max_tokens, "length"
        elif rng.random() < 0.03:
            finish = "tool_calls"
        ttft = float(rng.gamma(4.0, 0.05) + input_tokens * 0.0004)
        total = ttft + output_tokens * float(rng.lognormal(np.log(0.02), 0.2))
        rating = float(np.clip(np.rint(rng.normal(traffic.quality, 1.5)), 1, 10))
        scores = {
            "rules:empty_answer": 0.0 if empty else 1.0,
            "rules:refusal": 0.0 if refused else 1.0,
            "rules:truncated": 0.0 if finish == "length" else 1.0,
            "llm_single:overall": (rating - 1.0) / 9.0,
        }
        sample = Sample(
            id=f"req-{seed}-{i}",
            ts=ts + i * 0.01,
            model=traffic.model,
            provider="openai_compatible",
            deployment="d1",
            endpoint="chat",
            key="anonymous",
            request={"model": traffic.model, "messages": [{"role": "user", "content": prompt}]},
            response={"text": answer, "finish_reason": finish},
            usage={"input": input_tokens, "output": output_tokens, "cached": 0},
            latency={"total": total, "ttft": ttft, "per_output_token": None},
            cost_usd=(input_tokens * 0.1 + output_tokens * 0.4) / 1e6,
            status=200,
        )
        out.append((sample, scores))
    return out


async def feed(monitor: Any, samples: list[tuple[Sample, dict]], model: str = "m") -> list:
    """Observe ``samples`` one by one, letting each triggered run finish; returns the results of the runs."""
    results = []
    previous = monitor.last.get(model)
    for sample, scores in samples:
        await monitor.observe(sample, scores)
        await monitor.wait_idle()
        last = monitor.last.get(model)
        if last is not None and last is not previous:
            results.append(last)
            previous = last
    return results
