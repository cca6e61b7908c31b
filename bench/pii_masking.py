#!/usr/bin/env python3
"""What masking personal data costs per sampled request, against what a sampled request already costs.

Not a test. For a sampled request the recorder builds the sample's content (``gateway/privacy.py``
``sample_content``), then the :class:`~llmops.sample.Sample` and its JSON (``Sample.to_json``, done by the writer
on ``offer``). This bench times that whole path for each of several requests, with masking off (``pii.mask: false``,
the baseline: the work of a sampled request before issue 20) and on (the default), alternately in rounds so that a
busy box slows both alike. Prints microseconds per sampled request (the median of the rounds), the added cost, and
the ratio to the baseline.

Requests (the prompt is the chat messages, the answer the text collected, metadata the gateway's extras):

- ``chat, en, clean``: a 3-message English chat (~0.8 KB) and a ~0.6 KB answer, no personal data;
- ``chat, ko, pii``: a Korean chat holding an e-mail address, a phone number, a resident registration number and a
  card number, echoed in the answer;
- ``rag, 8 KB``: a RAG prompt with 8 KB of contexts (also in ``metadata.contexts``) and a 1 KB answer;
- ``long, 32 KB``: a 32 KB document to summarise (digits and dates throughout, no personal data).

    .venv/bin/python bench/pii_masking.py [--requests 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from gateway.exchange import SampleDraft
from gateway.privacy import sample_content
from llmops.policies import PiiConfig
from llmops.sample import Sample

EN = (
    "Our quarterly report covers revenue, costs and the outlook for the next two quarters. Revenue grew by 12 "
    "percent on the year, driven by subscriptions; costs rose by 4 percent, mostly hosting. "
)
KO = "이번 분기 보고서는 매출, 비용, 그리고 다음 두 분기의 전망을 다룹니다. 매출은 전년 대비 12퍼센트 증가했습니다. "
PII_KO = (
    "고객 홍길동님의 이메일은 hong.gildong@example.co.kr 이고 휴대폰은 010-1234-5678, 주민등록번호는 "
    "900101-1234568, 카드번호는 4111 1111 1111 1111 입니다. 이 정보로 환불을 진행해 주세요."
)
NUMBERS = "In 2024-01-15 the index closed at 4,567.89 (up 1.2%), order 123456 shipped on 2024.02.03 at 12:30. "


def draft(messages: list[dict[str, Any]], answer: str, metadata: dict[str, Any] | None = None) -> SampleDraft:
    d = SampleDraft({"model": "m", "messages": messages, "temperature": 0}, metadata or {})
    d.text = [answer[i : i + 16] for i in range(0, len(answer), 16)]  # a stream's chunks
    d.finish_reason = "stop"
    return d


def requests() -> dict[str, SampleDraft]:
    contexts = [(EN * 6)[:1000] for _ in range(8)]
    return {
        "chat, en, clean": draft(
            [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": EN * 2},
                {"role": "user", "content": "Summarise it in three bullet points."},
            ],
            EN * 2,
        ),
        "chat, ko, pii": draft([{"role": "user", "content": KO + PII_KO}], "네, 확인했습니다. " + PII_KO),
        "rag, 8 KB": draft(
            [{"role": "user", "content": "Answer from the contexts.\n" + "\n".join(contexts) + "\nWhat grew?"}],
            EN * 5,
            {"contexts": contexts, "reference": "Revenue grew."},
        ),
        "long, 32 KB": draft([{"role": "user", "content": (EN + NUMBERS + KO) * 80}], EN * 4),
    }


def one_sampled_request(d: SampleDraft, pii: PiiConfig, counter: Counter) -> bytes:
    content = sample_content(d, pii, counter, "m")
    sample = Sample(
        id="req-1",
        ts=d.ts,
        model="m",
        provider="openai_compatible",
        deployment="d",
        variant=None,
        endpoint="chat",
        key="k",
        request=content.request,
        response={"text": content.text, "finish_reason": d.finish_reason, "logprobs": None},
        usage={"input": 100, "output": 50, "cached": 0},
        latency={"total": 0.5, "ttft": 0.1, "per_output_token": 0.01},
        cost_usd=0.0001,
        status=200,
        trace_id=None,
        metadata=content.metadata,
    )
    return sample.to_json()


def timed(run: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        run()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="sampled requests per setup and round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    counter = Counter("bench_pii_masked", "masks", ["model", "type"], registry=CollectorRegistry())
    off, on = PiiConfig(mask=False), PiiConfig()
    print(f"{args.requests} sampled requests x {args.rounds} rounds, alternated; µs per sampled request (median)")
    print(f"{'request':<18} {'size':>8} {'off':>9} {'on':>9} {'added':>9} {'ratio':>7}  masks")
    for name, d in requests().items():
        size = len(one_sampled_request(d, off, counter))
        times: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(args.rounds):
            times["off"].append(timed(lambda d=d: one_sampled_request(d, off, counter), args.requests))
            times["on"].append(timed(lambda d=d: one_sampled_request(d, on, counter), args.requests))
        base, masked = statistics.median(times["off"]), statistics.median(times["on"])
        from llmops.pii import Masker

        masker = Masker()
        masker.value(d.request)
        masker.text("".join(d.text))
        print(
            f"{name:<18} {size:>7}B {base:>8.1f} {masked:>8.1f} {masked - base:>8.1f} {masked / base:>6.2f}x"
            f"  {masker.total}"
        )


if __name__ == "__main__":
    main()
