"""Which Redis the demo uses: a private ``redis-server`` when the binary is installed, else the Redis answering on
127.0.0.1:6379, else an embedded in-process stand-in (fakeredis serving the Redis protocol from the demo's own
process), said loudly. Only the demo ever starts the embedded one; the gateway and the monitors always talk to the
Redis their config names.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from llmops.config import ConfigError
from llmops.demo.ports import free_port, port_open

MODES = ("auto", "server", "local", "embedded")


def redis_answers(port: int) -> bool:
    """Whether a Redis on 127.0.0.1:``port`` answers PING without a password (a protected one, or another server
    on that port, cannot hold the demo's data)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def _server(binary: str, workdir: Path, console: Console) -> Iterator[str]:
    port = free_port(16379)
    with (workdir / "redis.log").open("w") as log:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches the demo only: Redis stops last, after what uses it
        )
        try:
            deadline = time.monotonic() + 10
            while not port_open(port):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start; see {workdir / 'redis.log'}")
                time.sleep(0.05)
            console.print(f"Redis: a private redis-server on 127.0.0.1:{port}")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait()


@contextlib.contextmanager
def _embedded(console: Console) -> Iterator[str]:
    from fakeredis import TcpFakeServer

    port = free_port(16379)
    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="embedded-redis", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not port_open(port):
        if time.monotonic() > deadline:
            raise RuntimeError("the embedded Redis stand-in did not start")
        time.sleep(0.02)
    console.print(
        f"[bold yellow]Redis: none installed or running: the demo runs the same pipeline on an embedded in-process "
        f"stand-in (fakeredis on 127.0.0.1:{port}), for this demo only. Production always uses a real Redis.[/]"
    )
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def demo_redis(mode: str, workdir: Path, console: Console) -> Iterator[str]:
    """A Redis URL for the demo (see the module docstring); ``mode`` forces one kind."""
    if mode not in MODES:
        raise ValueError(f"--redis must be one of {', '.join(MODES)}")
    binary = shutil.which("redis-server")
    if mode == "server" or (mode == "auto" and binary is not None):
        if binary is None:
            raise ConfigError("--redis server: redis-server is not installed (apt-get install redis-server)")
        with _server(binary, workdir, console) as url:
            yield url
        return
    if mode == "local" or (mode == "auto" and redis_answers(6379)):
        if not redis_answers(6379):
            raise ConfigError("--redis local: no Redis answers PING (without a password) on 127.0.0.1:6379")
        console.print("Redis: using the Redis that answers on 127.0.0.1:6379 (database 15)")
        yield "redis://127.0.0.1:6379/15"
        return
    with _embedded(console) as url:
        yield url
