"""What the gateway does with clients that abuse HTTP itself, over raw sockets: huge or endless headers, slow
headers, idle connections, too many connections."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmops.testing.http_probes import closed_by_server, connect, response_status, send_huge_header
from tests.support import gateway, gateway_config, simulator

SERVER = {
    "max_header_bytes": 16384,
    "max_headers": 50,
    "header_timeout_seconds": 1.0,
    "keep_alive_seconds": 1.0,
    "max_connections": 20,
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with simulator("--echo", "--ttft-ms", "0", "--tokens-per-second", "0", "--model", "sim-model") as sim:
        config = gateway_config(
            tmp_path_factory.mktemp("http") / "config.yaml",
            [{"name": "echo", "deployments": [{"name": "sim", "base_url": f"{sim}/v1", "model": "sim-model"}]}],
            server=SERVER,
        )
        with gateway(config) as url:
            yield url


def test_a_huge_header_gets_431_without_stalling_other_clients(gw: str) -> None:
    seen = send_huge_header(gw)  # 64 MiB of one header, unless the gateway closes first
    assert seen.status == 431
    assert seen.answered_seconds < 1.0
    assert seen.sent_bytes < 8 * 1024 * 1024, f"the gateway took {seen.sent_bytes} bytes of headers before closing"
    assert seen.health_seconds and seen.health_failures == 0
    assert seen.worst_health_seconds < 0.5, f"health probes took up to {seen.worst_health_seconds:.2f} s"


def test_too_many_headers_get_431(gw: str) -> None:
    sock = connect(gw)
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(60))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n" + headers + b"\r\n")
    assert response_status(sock) == 431
    assert closed_by_server(sock)
    sock.close()


def test_slow_headers_get_408_and_the_connection_is_closed(gw: str) -> None:
    sock = connect(gw)
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n")
    for _ in range(10):  # a header line every 0.3 s, never the end of the headers, until the gateway answers
        if select.select([sock], [], [], 0.3)[0]:
            break
        sock.sendall(b"X-Slow: 1\r\n")
    assert response_status(sock) == 408
    assert time.monotonic() - started < 1.6  # header_timeout_seconds: 1
    sock.close()


def test_slow_headers_of_a_later_request_get_their_own_deadline(gw: str) -> None:
    """On a kept-alive connection the header time counts from the request's first byte: not from the connection's
    start (the one timer a connection keeps looks again when it fires early)."""
    sock = connect(gw)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"200"
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")).split(b":")[1]
    )
    while len(body) < length:
        body += sock.recv(65536)
    time.sleep(0.6)  # within keep_alive_seconds: 1; the connection's first timer is due in ~0.4 s
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n")
    for _ in range(10):
        if select.select([sock], [], [], 0.3)[0]:
            break
        sock.sendall(b"X-Slow: 1\r\n")
    assert response_status(sock) == 408
    assert 0.9 < time.monotonic() - started < 1.6  # header_timeout_seconds: 1, from this request's first byte
    sock.close()


def test_idle_connections_are_closed(gw: str) -> None:
    silent = connect(gw)  # never sends a byte
    kept = connect(gw)  # one request, then idle
    kept.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert response_status(kept) == 200
    started = time.monotonic()
    silent.settimeout(5)
    kept.settimeout(5)
    assert closed_by_server(silent)
    assert closed_by_server(kept)
    assert time.monotonic() - started < 3
    silent.close()
    kept.close()


def test_connections_past_the_limit_get_503(gw: str, tmp_path: Path) -> None:
    held = [connect(gw) for _ in range(SERVER["max_connections"])]
    try:
        time.sleep(0.2)
        extra = connect(gw)
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert response_status(extra) == 503
        extra.close()
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(f"{gw}/health").status_code == 200


def test_header_bytes_are_counted_up_to_the_end_of_the_headers() -> None:
    """Only the header part of a chunk counts against max_header_bytes, wherever the end of the headers falls."""
    from gateway.http_protocol import _header_part

    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n"
    assert _header_part(b"", head + b"x" * 300) == len(head)  # the body in the same chunk does not count
    assert _header_part(b"", b"X-Big: aaaa") == 11  # no end yet: all of it
    assert _header_part(b"w\r\n", b"\r\n{}") == 2  # the end split across two chunks
    assert _header_part(b"", b"GET / HTTP/1.1\nA: b\n\nbody") == 21  # bare line feeds
