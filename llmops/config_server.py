"""The configuration's server-side sections: how the gateway listens and protects itself (``server``), the Redis it
and the monitors share (``redis``), and who may rate answers (``feedback``).

Part of the kernel with :mod:`llmops.config`, which assembles the whole file from these sections: schema only,
importing nothing of the product.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Most gateway worker processes one host may run (``server.workers``, ``llmops gateway --workers``).
MAX_WORKERS = 256


def parse_workers(value: object) -> int | Literal["auto"]:
    """A worker count as written in the config or on the command line: a whole number 1..:data:`MAX_WORKERS`, or
    ``auto``; anything else raises ``ValueError`` with one line that says what is expected."""
    expected = f"expected a whole number of processes from 1 to {MAX_WORKERS}, or auto (one per available CPU)"
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if not text.isdigit():
            raise ValueError(f"{expected}, not {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"{expected}, not {value!r}")
    return value


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a container's or taskset's limit, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - no affinity outside Linux


class Strict(BaseModel):
    """A config section: unknown keys are errors, values are frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Strict):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="larger request bodies get 413")
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024, description="request line and headers; larger get 431"
    )
    max_headers: int = Field(default=100, ge=8, le=10_000, description="more request headers get 431")
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="a request's line and headers must arrive within this; else 408 and closed"
    )
    keep_alive_seconds: float = Field(default=30.0, gt=0, description="an idle keep-alive connection is closed after")
    max_connections: int = Field(
        default=1024, ge=1, description="open connections (or requests in progress) beyond which new requests get 503"
    )
    client_stall_seconds: float = Field(
        default=30.0, gt=0, description="a client that reads none of its response for this long is cut off (499)"
    )
    client_buffer_bytes: int = Field(
        default=256 * 1024, ge=4096, description="response bytes buffered for a client before the gateway waits for it"
    )
    drain_seconds: float = Field(
        default=20.0, ge=0, description="on SIGTERM, streams still running after this are ended with an error event"
    )
    upstream_error_messages: bool = Field(
        default=False, description="copy an upstream 5xx's own message into the client's 502 (else a generic one)"
    )
    workers: int | Literal["auto"] = Field(
        default=1,
        description="gateway processes serving the port (1: one process, as before); auto: one per available CPU",
    )
    pin_workers: bool = Field(
        default=False,
        description="several workers: each on one of the CPUs the gateway may run on (worker i on the i-th, in turn)",
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _worker_count(cls, value: object) -> int | Literal["auto"]:
        return parse_workers(value)

    def worker_count(self) -> int:
        """``workers`` as a number: ``auto`` is the CPUs this process may run on, capped at :data:`MAX_WORKERS`."""
        return resolve_workers(self.workers)


def resolve_workers(workers: int | Literal["auto"]) -> int:
    """A worker count (``auto``: :func:`available_cpus`, at most :data:`MAX_WORKERS`)."""
    if workers == "auto":
        return min(available_cpus(), MAX_WORKERS)
    return workers


class RedisConfig(Strict):
    url: str = "redis://127.0.0.1:6379/0"
    stream_maxlen: int = Field(
        default=100_000, ge=100, description="approximate cap of the samples stream (XADD MAXLEN ~)"
    )
    queue_size: int = Field(
        default=10_000, ge=1, description="samples waiting in the gateway's memory before they are dropped"
    )
    queue_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="bytes of samples waiting in the gateway's memory before they are dropped",
    )
    flush_seconds: float = Field(
        default=2.0, ge=0, description="at shutdown, how long queued samples may take to reach Redis"
    )
    limits_max_connections: int = Field(
        default=64, ge=1, le=10_000, description="connections of the limit checks; more concurrent checks wait"
    )
    limits_wait_seconds: float = Field(
        default=1.0, gt=0, description="how long a limit check waits for a connection before the request gets 503"
    )
    limits_timeout_seconds: float = Field(
        default=0.5, gt=0, description="socket timeout of a limit check: beyond it Redis counts as unreachable"
    )
    limits_retry_seconds: float = Field(
        default=2.0, gt=0, description="while Redis is unreachable, one request tries it again this often"
    )
    request_index_ttl_seconds: int = Field(
        default=86_400, ge=60, description="how long an answered request can be rated (one Redis key per request)"
    )


class FeedbackConfig(Strict):
    """Who may rate an answer (``POST /v1/feedback``), and how often."""

    policy: Literal["same_key", "any_key"] = Field(
        default="same_key", description="same_key: only the key that made the request may rate it"
    )
    rpm: int = Field(default=60, ge=1, description="feedback requests per minute and key (in Redis when configured)")
