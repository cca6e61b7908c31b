"""Faithful pass-through: what the client sends reaches the upstream unchanged except `model` (and the usage we
always ask for on streams); what the upstream answers reaches the client with the public model name."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.support import ScriptedUpstream, gateway, gateway_config, metric, scrape, wait_for

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "upstream/model-x",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gw(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = gateway_config(
        tmp_path_factory.mktemp("gw") / "config.yaml",
        [
            {
                "name": "public-x",
                "deployments": [
                    {"name": "scripted", "base_url": upstream.url, "model": "upstream/model-x", "api_key": "sk-up-123"}
                ],
                "pricing": {"input_per_mtok": 1, "output_per_mtok": 1},
            }
        ],
    )
    with gateway(config) as url:
        yield url


def _json_reply(upstream: ScriptedUpstream, status: int, body: object, **headers: str) -> None:
    upstream.reply = (status, {"Content-Type": "application/json", **headers}, orjson.dumps(body))


def test_every_field_reaches_the_upstream_unchanged(gw: str, upstream: ScriptedUpstream) -> None:
    _json_reply(upstream, 200, COMPLETION)
    request = {
        "model": "public-x",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "안녕하세요"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "top_logprobs": 2,
        "n": 2,
        "seed": 42,
        "temperature": 0.3,
        "some_vendor_field": {"nested": [1, 2.5, None]},
    }
    metadata = {"reference": "ok", "contexts": ["c1"], "tags": {"team": "a"}}
    response = httpx.post(
        f"{gw}/v1/chat/completions",
        json={**request, "metadata": metadata},
        headers={"Authorization": "Bearer client-key"},
    )
    assert response.status_code == 200
    sent = upstream.received[-1]
    assert sent["path"] == "/v1/chat/completions"
    # everything but `model` unchanged; our `metadata` (kept for the monitors) never reaches the upstream
    assert sent["body"] == {**request, "model": "upstream/model-x"}
    # the gateway's own upstream key is used; the client's credentials are not forwarded
    assert sent["headers"]["authorization"] == "Bearer sk-up-123"
    assert sent["headers"]["x-request-id"] == response.headers["x-request-id"]
    body = response.json()
    assert body["model"] == "public-x"
    assert body["choices"] == COMPLETION["choices"]


def test_stream_asks_upstream_for_usage_but_keeps_client_options(gw: str, upstream: ScriptedUpstream) -> None:
    upstream.reply = [
        b'data: {"id":"c","object":"chat.completion.chunk","model":"upstream/model-x","choices":[]}\n\n',
        b"data: [DONE]\n\n",
    ]
    httpx.post(
        f"{gw}/v1/chat/completions",
        json={
            "model": "public-x",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "stream_options": {"continuous_usage_stats": True},
        },
    )
    options = upstream.received[-1]["body"]["stream_options"]
    assert options == {"continuous_usage_stats": True, "include_usage": True}


def test_spaced_json_from_upstream_still_gets_the_public_model(gw: str, upstream: ScriptedUpstream) -> None:
    upstream.reply = (200, {"Content-Type": "application/json"}, orjson.dumps(COMPLETION).replace(b'":', b'": '))
    body = httpx.post(
        f"{gw}/v1/chat/completions", json={"model": "public-x", "messages": [{"role": "user", "content": "x"}]}
    ).json()
    assert body["model"] == "public-x"


def test_sse_split_across_reads_and_spaced_json(gw: str, upstream: ScriptedUpstream) -> None:
    first = b'data: {"id": "c", "object": "chat.completion.chunk", "model": "upstream/model-x", '
    upstream.reply = [
        first,
        b'"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}]}\n\n',
        b'data: {"id":"c","object":"chat.completion.chunk","model":"upstream/model-x","choices":[],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\ndata: [DONE]\n\n',
    ]
    with httpx.stream(
        "POST",
        f"{gw}/v1/chat/completions",
        json={"model": "public-x", "messages": [{"role": "user", "content": "x"}], "stream": True},
    ) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    assert len(chunks) == 1, "the usage chunk must be dropped for a client that did not ask"
    assert chunks[0]["model"] == "public-x" and chunks[0]["choices"][0]["delta"]["content"] == "hi"


def test_upstream_4xx_reaches_client_with_status_and_message(gw: str, upstream: ScriptedUpstream) -> None:
    _json_reply(
        upstream,
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
    )
    response = httpx.post(
        f"{gw}/v1/chat/completions", json={"model": "public-x", "messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "BadRequestError",
            "param": None,
            "code": "400",
        }
    }


def test_upstream_429_keeps_retry_after(gw: str, upstream: ScriptedUpstream) -> None:
    _json_reply(
        upstream,
        429,
        {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
        **{"Retry-After": "7"},
    )
    response = httpx.post(
        f"{gw}/v1/chat/completions", json={"model": "public-x", "messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_upstream_auth_failure_is_the_gateways_problem(gw: str, upstream: ScriptedUpstream) -> None:
    _json_reply(
        upstream, 401, {"error": {"message": "Incorrect API key provided: sk-up-***123", "code": "invalid_api_key"}}
    )
    response = httpx.post(
        f"{gw}/v1/chat/completions", json={"model": "public-x", "messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_auth_error"
    assert "sk-up" not in error["message"]  # the upstream's echo of our key is not passed on


def test_non_json_upstream_body_is_502(gw: str, upstream: ScriptedUpstream) -> None:
    upstream.reply = (200, {"Content-Type": "text/html"}, b"<html>proxy error</html>")
    response = httpx.post(
        f"{gw}/v1/chat/completions", json={"model": "public-x", "messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_invalid_response"


def test_stream_cut_without_done_is_counted_as_error(gw: str, upstream: ScriptedUpstream) -> None:
    before = scrape(gw)
    upstream.reply = [
        b'data: {"id":"c","object":"chat.completion.chunk","model":"upstream/model-x",'
        b'"choices":[{"index":0,"delta":{"content":"par"}}]}\n\n'
    ]
    with httpx.stream(
        "POST",
        f"{gw}/v1/chat/completions",
        json={"model": "public-x", "messages": [{"role": "user", "content": "x"}], "stream": True},
    ) as response:
        assert response.status_code == 200
        list(response.iter_lines())
    after = scrape(gw)
    assert (
        metric(after, "llm_gateway_requests_total", status="502", stream="true")
        - metric(before, "llm_gateway_requests_total", status="502", stream="true")
        == 1
    )
    assert (
        metric(after, "llm_gateway_upstream_errors_total", deployment="scripted", reason="invalid_response")
        - metric(before, "llm_gateway_upstream_errors_total", deployment="scripted", reason="invalid_response")
        == 1
    )


def test_crlf_stream_split_between_cr_and_lf_with_event_lines(gw: str, upstream: ScriptedUpstream) -> None:
    """An upstream writing CRLF events, cut between ``\\r`` and ``\\n`` and with ``event:`` lines (as sse-starlette
    servers do): every chunk is rewritten to the public name, the usage chunk is taken and not forwarded unasked, and
    the stream counts as complete."""
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "upstream/model-x"}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]},
        {**chunk, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}},
    ]
    wire = (
        b"".join(b"event: message\r\ndata: " + orjson.dumps(e) + b"\r\n\r\n" for e in events) + b"data: [DONE]\r\n\r\n"
    )
    cuts = [i + 1 for i in range(len(wire)) if wire[i : i + 2] == b"\r\n"]  # after every \r
    upstream.reply = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    before = scrape(gw)
    body = {"model": "public-x", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", f"{gw}/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        text = b"".join(response.iter_bytes()).decode()
    data = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["Hel", "lo"]  # no usage chunk: not asked
    assert {c["model"] for c in chunks} == {"public-x"}
    assert "upstream/model-x" not in text
    after = scrape(gw)
    ok = {"model": "public-x", "status": "200", "stream": "true"}
    assert metric(after, "llm_gateway_requests_total", **ok) - metric(before, "llm_gateway_requests_total", **ok) == 1
    tokens = metric(after, "llm_gateway_tokens_total", model="public-x") - metric(
        before, "llm_gateway_tokens_total", model="public-x"
    )
    assert tokens == 7


def test_stream_without_usage_is_charged_an_estimate(gw: str, upstream: ScriptedUpstream) -> None:
    """A host that ignores stream_options.include_usage: the stream completes without a usage chunk. Its tokens are
    estimated (never 0): 13 characters of prompt -> 4 tokens + 4 of framing; 3 content chunks -> 3 output tokens."""
    chunk = {"id": "c2", "object": "chat.completion.chunk", "created": 1, "model": "upstream/model-x"}
    upstream.reply = [
        b"data: " + orjson.dumps({**chunk, "choices": [{"index": 0, "delta": {"content": word}}]}) + b"\n\n"
        for word in ("one", " two", " three")
    ] + [b"data: [DONE]\n\n"]
    before = scrape(gw)
    body = {"model": "public-x", "messages": [{"role": "user", "content": "how are you ?"}], "stream": True}
    with httpx.stream("POST", f"{gw}/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        b"".join(response.iter_bytes())

    def estimated() -> dict | None:  # recorded just after the last bytes left
        samples = scrape(gw)
        counted = metric(samples, "llm_gateway_usage_estimated_total")
        return samples if counted > metric(before, "llm_gateway_usage_estimated_total") else None

    after = wait_for(estimated, timeout=5)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("llm_gateway_usage_estimated_total", model="public-x") == 1
    assert delta("llm_gateway_tokens_total", model="public-x", type="input") == 4 + 4
    assert delta("llm_gateway_tokens_total", model="public-x", type="output") == 3
    assert delta("llm_gateway_cost_usd_total", model="public-x") == pytest.approx((8 + 3) / 1e6)


def test_trace_context_passes_through_when_tracing_is_off(gw: str, upstream: ScriptedUpstream) -> None:
    """Without telemetry the gateway makes no spans, but the caller's W3C trace context still reaches the upstream
    (vLLM's own traces then join the caller's); tracestate only with a traceparent."""
    _json_reply(upstream, 200, COMPLETION)
    body = {"model": "public-x", "messages": [{"role": "user", "content": "x"}]}
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    httpx.post(f"{gw}/v1/chat/completions", json=body, headers={"traceparent": parent, "tracestate": "congo=t61"})
    sent = upstream.received[-1]["headers"]
    assert sent["traceparent"] == parent and sent["tracestate"] == "congo=t61"
    httpx.post(f"{gw}/v1/chat/completions", json=body, headers={"tracestate": "congo=t61"})
    sent = upstream.received[-1]["headers"]
    assert "traceparent" not in sent and "tracestate" not in sent


def test_a_scoring_request_answered_without_prompt_logprobs_fails_clearly(gw: str, upstream: ScriptedUpstream) -> None:
    """An evaluation harness's echo + logprobs request to a host that ignores them would score every choice 0."""
    body = {
        "id": "cmpl-1",
        "object": "text_completion",
        "model": "upstream/model-x",
        "choices": [{"index": 0, "text": "Question? Answer: Paris", "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5},
    }
    upstream.reply = (200, {"Content-Type": "application/json"}, orjson.dumps(body))
    request = {"model": "public-x", "prompt": "Question? Answer: Paris", "echo": True, "logprobs": 1, "max_tokens": 0}
    refused = httpx.post(f"{gw}/v1/completions", json=request, timeout=10)
    assert refused.status_code == 502
    error = refused.json()["error"]
    assert error["code"] == "upstream_no_prompt_logprobs" and "prompt's logprobs" in error["message"]
    # the same answer to a plain completion is fine, and the deployment stays healthy
    plain = httpx.post(f"{gw}/v1/completions", json={"model": "public-x", "prompt": "hi"}, timeout=10)
    assert plain.status_code == 200
    assert metric(scrape(gw), "llm_gateway_deployment_healthy", model="public-x", deployment="scripted") == 1
