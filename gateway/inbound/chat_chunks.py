"""Reading a chat completion stream (SSE bytes, as a provider relays them) chunk by chunk: the part every translation
of it into another API's events shares. Subclasses say what each chunk becomes."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.sse import SSEDecoder


class ChatChunkReader:
    """Decodes chat chunks and hands their parts to the hooks: ``_start`` (every chunk, first), ``_delta`` and
    ``_finish_reason`` (choice 0), ``_end`` (the usage chunk, or ``[DONE]`` with ``None``), ``_error`` (an error
    event inside the stream). With ``stop_when_finished``, nothing after the end is read."""

    stop_when_finished = False

    def __init__(self) -> None:
        self.decoder = SSEDecoder()
        self.finished = False

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._handle(event) for event in self.decoder.feed(chunk))

    def flush(self) -> bytes:
        tail = self.decoder.flush()
        return self._handle(tail) if tail is not None else b""

    def _handle(self, event: bytes) -> bytes:
        data = event[6:] if event.startswith(b"data: ") else event[5:] if event.startswith(b"data:") else b""
        if not data or (self.stop_when_finished and self.finished):
            return b""
        if data == b"[DONE]":
            return self._end(None)
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(chunk, dict):
            return b""
        if "error" in chunk and "choices" not in chunk:
            return self._error(chunk["error"])
        out = [self._start(chunk)]
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out.append(self._delta(choice.get("delta") or {}))
                if choice.get("finish_reason"):
                    self._finish_reason(choice["finish_reason"])
        if isinstance(chunk.get("usage"), dict) and not chunk.get("choices"):
            out.append(self._end(chunk["usage"]))
        return b"".join(out)

    def _start(self, chunk: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _delta(self, delta: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _finish_reason(self, reason: Any) -> None:
        raise NotImplementedError

    def _end(self, usage: dict[str, Any] | None) -> bytes:
        raise NotImplementedError

    def _error(self, error: Any) -> bytes:
        raise NotImplementedError
