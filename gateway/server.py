"""``llmops gateway``: load and validate the config, then serve the app with uvicorn (uvloop + httptools, with the
HTTP limits of :mod:`gateway.http_protocol`)."""

from __future__ import annotations

import logging
import math

import uvicorn

from gateway.app import Gateway
from gateway.http_protocol import protocol_class
from llmops.config import load_config


def serve(config_path: str, host: str | None = None, port: int | None = None, log_level: str = "info") -> None:
    """Run one gateway process until interrupted. A bad config raises ``ConfigError`` before anything listens."""
    config = load_config(config_path)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gateway = Gateway(config)
    limits = config.server
    uvicorn.run(
        gateway.asgi,
        host=host or limits.host,
        port=port or limits.port,
        loop="uvloop",
        http=protocol_class(limits),
        access_log=False,
        log_level=log_level,
        timeout_keep_alive=math.ceil(limits.keep_alive_seconds),
        limit_concurrency=limits.max_connections,
        lifespan="on",
    )
