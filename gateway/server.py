"""``llmops gateway``: load and validate the config, then serve the app with uvicorn (uvloop + httptools)."""

from __future__ import annotations

import logging

import uvicorn

from gateway.app import Gateway
from llmops.config import load_config


def serve(config_path: str, host: str | None = None, port: int | None = None, log_level: str = "info") -> None:
    """Run one gateway process until interrupted. A bad config raises ``ConfigError`` before anything listens."""
    config = load_config(config_path)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gateway = Gateway(config)
    uvicorn.run(
        gateway.asgi,
        host=host or config.server.host,
        port=port or config.server.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=log_level,
        timeout_keep_alive=30,
        lifespan="on",
    )
