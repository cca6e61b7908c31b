"""SSE splitting: events split across reads arrive whole; CRLF is normalised."""

from gateway.sse import SSEDecoder


def test_events_split_across_reads() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a":') == []
    assert decoder.feed(b'1}\n\ndata: {"b":2}\n') == [b'data: {"a":1}']
    assert decoder.feed(b"\ndata: [DONE]\n\n") == [b'data: {"b":2}', b"data: [DONE]"]
    assert decoder.flush() is None


def test_crlf_and_trailing_event_without_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": ping\r\n\r\ndata: x\r\n\r\ndata: tail") == [b": ping", b"data: x"]
    assert decoder.flush() == b"data: tail"


def test_time_to_first_token_ignores_role_only_chunks() -> None:
    from gateway.relay import carries_output as _carries_output

    assert not _carries_output(b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}')
    assert not _carries_output(b'{"choices":[],"usage":{"prompt_tokens":1}}')
    assert _carries_output(b'{"choices":[{"index":0,"delta":{"content":"Hi"}}]}')
    assert _carries_output(b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]}}]}')
    assert _carries_output(b'{"choices":[{"index":0,"text":"Hi","finish_reason":null}]}')  # completions
