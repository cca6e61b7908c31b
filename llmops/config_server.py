"""The configuration's server-side sections: how the gateway listens and protects itself (``server``), the Redis it
and the monitors share (``redis``), and who may rate answers (``feedback``).

Part of the kernel with :mod:`llmops.config`, which assembles the whole file from these sections: schema only,
importing nothing of the product.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
