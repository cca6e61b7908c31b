"""Raw-socket probes of an HTTP server's limits, shared by the gateway's tests (tests/gateway/test_http_limits.py)
and the ASGI server comparison (bench/asgi_probes.py): one connection speaking HTTP/1.1 by hand, and a client
sending a header without end while another one checks that the server still answers."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field


def connect(base: str, timeout: float = 10) -> socket.socket:
    """A TCP connection to ``base`` (``http://host:port``)."""
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def response_status(sock: socket.socket) -> int | None:
    """The status of the response on ``sock``; None when the server closed (or reset, or timed out) without one."""
    data = b""
    while b"\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return None
        if not chunk:
            return None
        data += chunk
    return int(data.split(b" ", 2)[1])


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` (what it still sends is read and ignored) before the socket's timeout."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


@dataclass
class HugeHeader:
    """What :func:`send_huge_header` saw."""

    status: int | None  # the server's answer to the header (None: it closed without one)
    answered_seconds: float  # from the first byte sent to the answer
    sent_bytes: int  # header bytes the server took before it closed
    health_seconds: list[float] = field(default_factory=list)  # each GET /health meanwhile, from another client
    health_failures: int = 0  # of those, the ones that did not answer 200

    @property
    def worst_health_seconds(self) -> float:
        return max(self.health_seconds, default=float("nan"))


def send_huge_header(base: str, mebibytes: int = 64) -> HugeHeader:
    """Send one request whose single header runs on for ``mebibytes`` (unless the server closes first), while
    another client asks ``/health`` every 10 ms."""
    seen = HugeHeader(None, float("nan"), 0)
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
                    ok = response.status == 200
            except OSError:
                ok = False
            seen.health_seconds.append(time.monotonic() - started)
            seen.health_failures += not ok
            time.sleep(0.01)

    def send() -> None:
        try:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Big: ")
            chunk = b"a" * 65536
            for _ in range(mebibytes * 16):
                sock.sendall(chunk)
                seen.sent_bytes += len(chunk)
        except OSError:
            pass

    prober = threading.Thread(target=probe)
    prober.start()
    sock = connect(base)
    sender = threading.Thread(target=send)
    started = time.monotonic()
    sender.start()
    try:
        seen.status = response_status(sock)
        seen.answered_seconds = time.monotonic() - started
        sender.join(15)
    finally:
        sock.close()
        stop.set()
        prober.join()
    return seen
