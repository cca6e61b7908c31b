"""Ports of the demo's parts: each picked once, the documented one when it is free."""

from __future__ import annotations

import socket


def port_open(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def free_port(preferred: int, taken: set[int] | None = None) -> int:
    """``preferred`` when it is free (and not in ``taken``, ports already picked for something else), else a free
    port; the result is added to ``taken``."""
    taken = taken if taken is not None else set()
    candidates = [preferred] if preferred not in taken else []
    for candidate in candidates:
        with socket.socket() as sock:
            # as the servers themselves bind: a port whose last connections linger in TIME_WAIT (a demo stopped a
            # moment ago) is free, only a listener makes it taken
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            taken.add(candidate)
            return candidate
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port
