"""The exporter's HTTP side: the WSGI app (``/metrics``, ``/health``), its server, and ``serve``."""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from llmops.gpu_exporter.collector import GpuCollector
from llmops.gpu_exporter.nvml import NvmlModule

log = logging.getLogger("llmops.gpu_exporter")

DEFAULT_PORT = 9835


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("llmops gpu-exporter: %s %s", self.address_string(), format % args)


def _make_app(registry: CollectorRegistry, collector: GpuCollector) -> Callable[..., Iterable[bytes]]:
    metrics_app: Callable[..., Iterable[bytes]] = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Allow", "GET, HEAD")])
            return [b"method not allowed\n"]
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/health":
            collector.ensure_initialized(wait=False)  # bounded by the retry interval; never waits for a scrape
            body = json.dumps(
                {
                    "status": "ok",
                    "nvml": collector.up,
                    "gpus": collector.gpu_count,
                    "reason": collector.unavailable_reason,
                }
            ).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]
        if path == "/":
            body = b"llmops gpu-exporter: metrics at /metrics, health at /health\n"
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def make_exporter_server(
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    *,
    collector: GpuCollector | None = None,
) -> tuple[WSGIServer, GpuCollector]:
    """Bind the exporter's HTTP server (port 0 picks a free one) without serving yet.

    Call ``server.serve_forever()`` (in a thread if needed), then ``server.shutdown()`` and
    ``collector.close()``.
    """
    collector = collector if collector is not None else GpuCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server_class: type[_ThreadingServer] = _ThreadingServer
    if ":" in host:  # an IPv6 address such as "::"
        server_class = type("_ThreadingServer6", (_ThreadingServer,), {"address_family": socket.AF_INET6})
    server = make_server(host, port, _make_app(registry, collector), server_class, _QuietHandler)
    return server, collector


def serve(host: str = "0.0.0.0", port: int = DEFAULT_PORT, *, nvml: NvmlModule | None = None) -> None:
    """Run the exporter until interrupted (Ctrl-C or SIGTERM). Blocks."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server, collector = make_exporter_server(host, port, collector=GpuCollector(nvml))
    except OSError as error:
        raise SystemExit(f"llmops gpu-exporter: cannot listen on {host}:{port}: {error}") from error
    collector.ensure_initialized()  # say at start whether there are GPUs, not at the first scrape

    def _stop(signum: int, _frame: Any) -> None:
        log.info("llmops gpu-exporter: signal %d, stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    bound_host, bound_port = server.server_address[:2]
    log.info("llmops gpu-exporter: serving http://%s:%d/metrics", bound_host, bound_port)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        collector.close()
