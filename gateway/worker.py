"""One worker process of a gateway with several (``server.workers``): ``python -m gateway.worker``, started only by
the supervisor (:mod:`gateway.workers`).

The worker binds its own socket on the gateway's address with ``SO_REUSEPORT`` (the kernel spreads new connections
over the workers' sockets) and serves the app exactly as one process does (:func:`gateway.server.uvicorn_config`):
the same HTTP limits, connection limit, keep-alive and graceful shutdown with ``server.drain_seconds``. The socket
is bound before the app starts, so a taken port fails at once, and listens only once the app is ready, so no
connection waits on a worker that is still starting. Its series go to the supervisor's multiprocess directory
(``PROMETHEUS_MULTIPROC_DIR``, in the environment before prometheus_client is imported). When the supervisor is gone
(killed without the chance to stop its workers) the worker shuts down as on SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

import uvicorn

from gateway.app import Gateway
from gateway.metrics import GatewayMetrics
from gateway.metrics_workers import use_worker_values
from gateway.server import GatewayServer, uvicorn_config
from llmops.config import ConfigError, load_config

log = logging.getLogger("llmops.gateway")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"
#: A worker's exit status when it cannot bind its socket (the supervisor says so).
EXIT_CANNOT_LISTEN = 3


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (not yet listening); ``OSError`` when it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class WorkerServer(GatewayServer):
    """The gateway's server in a worker: it also shuts down when its supervisor is gone."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway, supervisor: int) -> None:
        super().__init__(config, gateway)
        self.supervisor = supervisor

    async def on_tick(self, counter: int) -> bool:
        if counter % 10 == 0 and not self.should_exit and os.getppid() != self.supervisor:
            log.warning("the supervisor (pid %d) is gone: shutting down", self.supervisor)
            self.should_exit = True
        return await super().on_tick(counter)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.worker", description="one worker of llmops gateway")
    parser.add_argument("--config", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--supervisor", type=int, required=True, help="the supervisor's pid")
    parser.add_argument("--announce", action="store_true", help="log the gateway's start messages")
    parser.add_argument("--replacement", action="store_true", help="this worker replaces one that died")
    parser.add_argument("--cpu", type=int, help="run on this CPU only (server.pin_workers)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        log.error("%s is not set: a worker is started by llmops gateway --workers N", MULTIPROC_ENV)
        return 2
    use_worker_values()  # before any series exists
    if args.cpu is not None:
        try:
            os.sched_setaffinity(0, {args.cpu})
        except OSError as error:
            log.error("cannot run on CPU %d (server.pin_workers): %s", args.cpu, error.strerror or error)
            return 2
    try:
        config = load_config(args.config)
    except ConfigError as error:
        log.error("%s", error)
        return 2
    try:
        sock = reuse_port_socket(args.host, args.port)
    except OSError as error:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, error.strerror or error)
        return EXIT_CANNOT_LISTEN
    metrics = GatewayMetrics(multiprocess_dir=directory)
    if args.replacement and metrics.workers is not None:
        metrics.workers.restarts.inc()
    gateway = Gateway(config, metrics)
    gateway.announce = args.announce
    server = WorkerServer(uvicorn_config(gateway, args.host, args.port, args.log_level), gateway, args.supervisor)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
