"""``llmops gateway``: load and validate the config, then serve the app with uvicorn (uvloop + httptools, with the
HTTP limits of :mod:`gateway.http_protocol`) until SIGINT or SIGTERM, then shut down within ``server.drain_seconds``
(:mod:`gateway.drain`)."""

from __future__ import annotations

import logging
import math
import socket

import uvicorn

from gateway.app import Gateway
from gateway.http_protocol import protocol_class
from llmops.config import load_config

#: What shutdown may take besides the drain: ending the streams cut at the deadline, then the lifespan's flushes.
_AFTER_DRAIN_SECONDS = 2


class GatewayServer(uvicorn.Server):
    """uvicorn's server that starts the gateway's drain deadline when shutdown begins."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gateway.drain.begin(self.gateway.config.server.drain_seconds)
        await super().shutdown(sockets)


def serve(config_path: str, host: str | None = None, port: int | None = None, log_level: str = "info") -> None:
    """Run one gateway process until interrupted. A bad config raises ``ConfigError`` before anything listens."""
    config = load_config(config_path)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gateway = Gateway(config)
    limits = config.server
    server_config = uvicorn.Config(
        gateway.asgi,
        host=host or limits.host,
        port=port or limits.port,
        loop="uvloop",
        http=protocol_class(limits),
        access_log=False,
        log_level=log_level,
        timeout_keep_alive=math.ceil(limits.keep_alive_seconds),
        limit_concurrency=limits.max_connections,
        timeout_graceful_shutdown=math.ceil(limits.drain_seconds) + _AFTER_DRAIN_SECONDS,
        lifespan="on",
    )
    GatewayServer(server_config, gateway).run()
