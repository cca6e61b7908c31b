"""What the gateway and the monitors agree on: Redis stream and key names, header names, tally formats, and which
requests are sampled.

Both services import this module and neither imports the other. Constants and tiny pure functions only: it imports
nothing of the product, so either side can be deployed (and tested) alone.
"""

from __future__ import annotations

import hashlib
import os

# ---- traffic samples (gateway -> monitors) --------------------------------------------------------------------------
#: The stream the gateway writes sampled requests to (``XADD ... MAXLEN ~``) and the monitors' consumer group reads.
SAMPLES_STREAM = "llmops:samples"
#: The fields of one samples-stream entry: the request id, and the sample document (:class:`llmops.sample.Sample`).
SAMPLE_ID_FIELD = "id"
SAMPLE_FIELD = "sample"

# ---- user feedback (gateway -> monitors) ----------------------------------------------------------------------------
#: The stream of user feedback (``request_id, model, variant, rating, key, ts[, comment]``), read by drift detection.
FEEDBACK_STREAM = "llmops:feedback"
#: Per-model hash of feedback counts (``FEEDBACK_TALLY_PREFIX + model``), read for the variants' ratings; its fields are
#: :func:`feedback_tally_field`.
FEEDBACK_TALLY_PREFIX = "llmops:feedback_tally:"
#: The ratings a user may give.
FEEDBACK_RATINGS = ("positive", "negative")

# ---- traffic kinds (callers -> gateway) -----------------------------------------------------------------------------
#: Header the monitors' judge calls carry: the gateway meters such requests but never samples them again.
JUDGE_HEADER = "x-llmops-judge"
#: Header that names the kind of a request the stack itself makes (``TRAFFIC_KINDS``); absent: ``user``.
TRAFFIC_HEADER = "x-llmops-traffic"
#: ``user``: applications' traffic, the only kind sampled for the monitors; ``judge``: the monitors' judge calls;
#: ``eval``: offline benchmark runs (``llmops eval``); ``shadow``: the monitors' shadow comparisons. Every kind is
#: metered and costed; ``llm_gateway_traffic_requests_total`` and ``..._cost_usd_total`` count them apart.
TRAFFIC_KINDS = ("user", "judge", "eval", "shadow")
#: Header that pins a request to one A/B variant of its model (the value: the variant's name), so that a shadow
#: comparison can ask a variant served by the model's own deployments. The gateway honours it on ``PINNING_KINDS``
#: traffic only, and where keys are configured only from a key with ``variant_pin: true``; on any other traffic it is
#: ignored, so applications stay in the A/B split. Responses carry the same header: the variant that served.
VARIANT_HEADER = "x-llmops-variant"
#: The traffic kinds whose variant pin the gateway honours.
PINNING_KINDS = ("shadow",)


def traffic_kind(header: str | None, judge_header: str | None = None) -> str:
    """The kind of a request from its headers (an unknown value counts as ``user``: labels stay bounded)."""
    if judge_header is not None:
        return "judge"
    return header if header in TRAFFIC_KINDS else "user"


_SCALE = float(1 << 64)


def feedback_tally_field(variant: str, rating: str) -> str:
    """The field of a feedback tally that counts ``rating`` for ``variant`` (``""`` for a model without variants)."""
    return f"{variant}|{rating}"


def parse_feedback_tally_field(field: str) -> tuple[str, str]:
    """``(variant, rating)`` from a feedback tally field (the inverse of :func:`feedback_tally_field`)."""
    variant, _, rating = field.rpartition("|")
    return variant, rating


def sampling_key(secret: str | None) -> bytes:
    """The key of the sampling hash: derived from the configured ``sampling_secret``, so that every process given
    the same secret decides alike; without one, random (this process's decisions are its own)."""
    if not secret:
        return os.urandom(32)
    return hashlib.blake2b(secret.encode(), digest_size=32, person=b"llmops-sampling").digest()


def sampled(request_id: str, rate: float, key: bytes) -> bool:
    """Whether the request with this id is in the ``rate`` share of sampled traffic.

    A keyed hash of the id (:func:`sampling_key`): deterministic for whoever holds the key, unpredictable for a
    client that sets its own ``x-request-id``, so it cannot pick ids that are never, or always, sampled."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(request_id.encode(), digest_size=8, key=key).digest()
    return int.from_bytes(digest, "big") / _SCALE < rate
