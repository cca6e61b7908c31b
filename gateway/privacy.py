"""Personal data kept out of what leaves the request path: a request's traffic sample and its traced content are
masked (``llmops.pii``: e-mail addresses, phone numbers, resident registration numbers, card numbers, secrets) before
the sample is offered to the writer or the content is put on a span, per the model's ``pii`` settings. Each mask is
counted by type in ``llm_gateway_pii_masked_total``; no value is ever logged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops.pii import Masker

if TYPE_CHECKING:
    from prometheus_client import Counter

    from gateway.exchange import SampleDraft
    from llmops.policies import PiiConfig


#: Samples with more characters of text than this are masked in a worker thread (``Recorder``), not on the loop.
INLINE_MASK_CHARS = 64 * 1024


def content_chars(draft: SampleDraft) -> int:
    """Characters of text a sample draft holds (request, answer, metadata): what masking it scans."""
    return _chars(draft.request) + sum(len(part) for part in draft.text) + _chars(draft.metadata)


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_chars(item) for item in value.values())
    if isinstance(value, list):
        return sum(_chars(item) for item in value)
    return 0


@dataclass(frozen=True, slots=True)
class Content:
    """What a request said and answered, as it may be kept: the request, the answer text, the gateway's extras."""

    request: dict[str, Any]
    text: str
    metadata: dict[str, Any]


def sample_content(draft: SampleDraft, pii: PiiConfig, masked: Counter, model: str) -> Content:
    """The draft's content with personal data masked (unless the model's ``pii.mask`` is off). One masker for the
    whole request, prompt first: a value the answer repeats from the prompt gets the prompt's mask."""
    text = "".join(draft.text)
    if not pii.mask or not pii.types:
        return Content(draft.request, text, draft.metadata)
    masker = Masker(pii.types)
    content = Content(masker.value(draft.request), masker.text(text), masker.value(draft.metadata))
    for kind, count in masker.counts.items():
        masked.labels(model, kind).inc(count)
    return content
