"""Incremental splitting of a Server-Sent Events byte stream into events."""

from __future__ import annotations


class SSEDecoder:
    """Feed raw bytes as they arrive; get back each complete event (without its terminating blank line).

    Events end at a blank line (``\\n\\n``; ``\\r\\n`` and ``\\r`` line endings are normalised). Bytes of an unfinished
    event are kept until the rest arrives, so an event split across TCP reads is forwarded whole; a ``\\r`` that ends
    one read is kept back too, since the ``\\n`` of its ``\\r\\n`` may start the next.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data if self._buffer else data
        held = b""
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n\n" not in buffer:
            self._buffer = buffer + held
            return []
        parts = buffer.split(b"\n\n")
        self._buffer = parts.pop() + held
        return [stripped for part in parts if (stripped := part.strip(b"\n"))]

    def flush(self) -> bytes | None:
        """The last event when the stream ended without a blank line after it."""
        rest = self._buffer.replace(b"\r", b"\n").strip(b"\n")
        self._buffer = b""
        return rest or None
