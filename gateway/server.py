"""``llmops gateway`` in one process: load and validate the config, then serve the app with uvicorn (uvloop +
httptools, with the HTTP limits of :mod:`gateway.http_protocol`) until SIGINT or SIGTERM, then shut down within
``server.drain_seconds`` (:mod:`gateway.drain`). With ``server.workers`` above 1, :mod:`gateway.workers` runs
several such processes (:mod:`gateway.worker`) with the same uvicorn options."""

from __future__ import annotations

import logging
import math
import socket

import uvicorn

from gateway.app import Gateway
from gateway.http_protocol import protocol_class
from llmops.config import Config, load_config

#: What shutdown may take besides the drain: ending the streams cut at the deadline, then the lifespan's flushes.
AFTER_DRAIN_SECONDS = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class GatewayServer(uvicorn.Server):
    """uvicorn's server that starts the gateway's drain deadline when shutdown begins."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gateway.drain.begin(self.gateway.config.server.drain_seconds)
        await super().shutdown(sockets)


def uvicorn_config(gateway: Gateway, host: str, port: int, log_level: str) -> uvicorn.Config:
    """uvicorn's options for the gateway (the same in one process and in each worker)."""
    limits = gateway.config.server
    return uvicorn.Config(
        gateway.asgi,
        host=host,
        port=port,
        loop="uvloop",
        http=protocol_class(limits),
        access_log=False,
        log_level=log_level,
        timeout_keep_alive=math.ceil(limits.keep_alive_seconds),
        limit_concurrency=limits.max_connections,
        timeout_graceful_shutdown=math.ceil(limits.drain_seconds) + AFTER_DRAIN_SECONDS,
        lifespan="on",
    )


def serve(config_path: str, host: str | None = None, port: int | None = None, log_level: str = "info") -> None:
    """Run one gateway process until interrupted. A bad config raises ``ConfigError`` before anything listens."""
    serve_config(load_config(config_path), host, port, log_level)


def serve_config(config: Config, host: str | None = None, port: int | None = None, log_level: str = "info") -> None:
    """Run one gateway process with an already loaded ``config`` until interrupted."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    gateway = Gateway(config)
    GatewayServer(
        uvicorn_config(gateway, host or config.server.host, port or config.server.port, log_level), gateway
    ).run()
