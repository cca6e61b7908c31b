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
    from gateway.providers.openai_compatible import carries_output as _carries_output

    assert not _carries_output(b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}')
    assert not _carries_output(b'{"choices":[],"usage":{"prompt_tokens":1}}')
    assert _carries_output(b'{"choices":[{"index":0,"delta":{"content":"Hi"}}]}')
    assert _carries_output(b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]}}]}')
    assert _carries_output(b'{"choices":[{"index":0,"text":"Hi","finish_reason":null}]}')  # completions


CRLF_STREAM = (
    b': keep-alive\r\n\r\ndata: {"a":1}\r\n\r\nevent: message\r\nid: 7\r\ndata: {"b":2}\r\n\r\ndata: [DONE]\r\n\r\n'
)
EXPECTED = [b": keep-alive", b'data: {"a":1}', b'event: message\nid: 7\ndata: {"b":2}', b"data: [DONE]"]


def test_crlf_stream_split_at_every_byte_gives_the_same_events() -> None:
    """A CRLF stream cut anywhere, a ``\\r`` ending one read and its ``\\n`` starting the next included."""
    for cut in range(1, len(CRLF_STREAM)):
        decoder = SSEDecoder()
        events = decoder.feed(CRLF_STREAM[:cut]) + decoder.feed(CRLF_STREAM[cut:])
        assert events == EXPECTED, f"cut at {cut}: {CRLF_STREAM[:cut]!r} | {CRLF_STREAM[cut:]!r}"
        assert decoder.flush() is None


def test_crlf_stream_fed_byte_by_byte() -> None:
    decoder = SSEDecoder()
    events = [event for i in range(len(CRLF_STREAM)) for event in decoder.feed(CRLF_STREAM[i : i + 1])]
    assert events == EXPECTED


def test_bare_cr_line_endings_and_a_trailing_cr() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r\r") == []  # the second \r may be the start of \r\n: held back
    assert decoder.feed(b"data: y\r") == [b"data: x"]
    assert decoder.flush() == b"data: y"
