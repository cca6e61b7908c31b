#!/usr/bin/env python3
"""Summarise a py-spy profile of the gateway (``py-spy record --format raw``: folded stacks) by where the CPU goes.

    py-spy record -p PID -d 20 -r 200 --format raw -o /tmp/gw.txt   # while the gateway is under load
    .venv/bin/python bench/pyspy_summary.py /tmp/gw.txt

Prints three views:
  * by layer: each sample goes to the innermost frame that belongs to a known layer (uvicorn, starlette/fastapi,
    gateway code, aiohttp, prometheus_client, asyncio, ...), so C calls made from a layer (orjson, httptools,
    uvloop transports) count for that layer;
  * inclusive time of the request path's main functions (from the gateway's entry to the upstream call, metrics...);
  * the top "self" lines (innermost Python frame).
With ``--native`` profiles (py-spy --native), C frames are shown too and the leaf rules below match their names.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

# (layer, regex on "function (file:line)") — the first match from the innermost frame outwards wins.
LAYERS: list[tuple[str, str]] = [
    ("gc (cyclic garbage collector)", r"^(gc_collect|collect|_PyGC|gc_collect_main|deduce_unreachable|subtract_refs)"),
    ("prometheus_client (metrics)", r"prometheus_client/"),
    ("redis-py (limits, charges, samples, feedback index)", r"redis/"),
    ("aiohttp client (upstream call)", r"(aiohttp/|yarl/|multidict/|aiohappyeyeballs/|propcache/|attr/)"),
    ("gateway: request_id middleware", r"gateway/request_id\.py"),
    ("gateway: proxy/upstream/sse code", r"gateway/"),
    ("fastapi middleware/routing", r"fastapi/"),
    ("starlette (middleware, routing, Request, Response)", r"starlette/"),
    ("uvicorn (httptools protocol, ASGI cycle)", r"uvicorn/"),
    ("asyncio (tasks, futures, events)", r"(asyncio/|uvloop/|contextvars|contextlib\.py|anyio/)"),
    ("python stdlib (other)", r"python3\.\d+/"),
]

FUNCS: list[tuple[str, str | None]] = [  # None: a heading
    ("uvicorn RequestResponseCycle.run_asgi (whole ASGI app per request)", r"^RequestResponseCycle\.run_asgi "),
    ("uvicorn HttpToolsProtocol.data_received (parse request)", r"^HttpToolsProtocol\.data_received "),
    ("uvicorn RequestResponseCycle.send (write response)", r"^RequestResponseCycle\.send "),
    ("RequestIdMiddleware.__call__", r"^RequestIdMiddleware\.__call__ "),
    ("FastAPI/Starlette app (below RequestIdMiddleware)", r"^FastAPI\.__call__ "),
    ("FastAPI NativeTelemetry.enabled (per-request OpenTelemetry check)", r"^NativeTelemetry\.enabled "),
    ("Starlette Router.__call__ (routing and below)", r"^Router\.__call__ "),
    ("Starlette Request.__init__", r"^Request\.__init__ "),
    ("Proxy.handle (our handler)", r"^Proxy\.handle "),
    ("Proxy._read_payload (request body + orjson.loads)", r"^Proxy\._read_payload "),
    ("Proxy._prepare (validate, route, orjson.dumps)", r"^Proxy\._prepare "),
    ("Proxy._unary (upstream call + response)", r"^Proxy\._unary "),
    ("UpstreamClient.post (aiohttp request until headers)", r"^UpstreamClient\.post "),
    ("  aiohttp ClientRequest.__init__", r"^ClientRequest\.__init__ "),
    ("  aiohttp ClientRequest.send", r"^ClientRequest\.send "),
    ("  aiohttp ClientResponse.start", r"^ClientResponse\.start "),
    ("  aiohttp timeouts (TimeoutHandle, TimerContext)", r"^(TimeoutHandle|TimerContext)\."),
    ("UpstreamClient.read (aiohttp body)", r"^UpstreamClient\.read "),
    ("Proxy._finish (prometheus updates, index, sampling)", r"^Proxy\._finish "),
    ("  prometheus labels()", r"^MetricWrapperBase\.labels "),
    ("  RequestIndex.remember (feedback index)", r"^RequestIndex\.remember "),
    ("new_request_id (os.urandom)", r"^new_request_id "),
    ("StreamRelay.__call__ (streaming response)", r"^StreamRelay\.__call__ "),
    ("StreamRelay._pump (relay loop)", r"^StreamRelay\._pump "),
    ("  StreamRelay._relay_event", r"^StreamRelay\._relay_event "),
    ("Response.__call__ (starlette response send)", r"^Response\.__call__ "),
    ("Keys, limits, budgets (production config):", None),
    ("  AccessControl.authenticate (sha256 of the bearer key)", r"^AccessControl\.authenticate "),
    ("  AccessControl.admit (the limit check, on the request path)", r"^AccessControl\.admit "),
    ("  Admission rounds (reservations in Redis)", r"^Admission\.(_round|_reserve) "),
    ("  AccessControl._charge (before: one pipeline per request)", r"^AccessControl\._charge "),
    ("  ChargeBatcher (after: charges in batches)", r"^ChargeBatcher\.(flush|_run) "),
    ("  RedisGuard.call (pool slot, circuit breaker)", r"^RedisGuard\.call "),
    ("  redis-py, all of it", r"redis/"),
    ("Sampling and the feedback index:", None),
    ("  sample content (PII masking)", r"^sample_content "),
    ("  SampleWriter._drain (XADD pipelines)", r"^SampleWriter\._drain "),
    ("  RequestIndex._flush (feedback index in Redis)", r"^RequestIndex\._flush"),
]


def load(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, n = line.rpartition(" ")
            stacks.append((stack.split(";"), int(n)))
    return stacks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("raw", help="py-spy --format raw output")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    stacks = load(a.raw)
    total = sum(n for _, n in stacks)
    layers = [(name, re.compile(rx)) for name, rx in LAYERS]
    by_layer: Counter[str] = Counter()
    for frames, n in stacks:
        for fr in reversed(frames):
            hit = next((name for name, rx in layers if rx.search(fr)), None)
            if hit:
                by_layer[hit] += n
                break
        else:
            by_layer["other / event loop (C)"] += n
    print(f"samples: {total}\n\nBy layer (innermost known frame):")
    for name, n in by_layer.most_common():
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("\nInclusive time of request-path functions:")
    for name, rx in FUNCS:
        if rx is None:
            print(f"  {name}")
            continue
        r = re.compile(rx)
        n = sum(c for frames, c in stacks if any(r.search(f) for f in frames))
        print(f"  {100 * n / total:5.1f}%  {name}")
    selfs: Counter[str] = Counter()
    for frames, n in stacks:
        selfs[frames[-1]] += n
    print(f"\nTop {a.top} self frames:")
    for fr, n in selfs.most_common(a.top):
        print(f"  {100 * n / total:5.1f}%  {fr}")


if __name__ == "__main__":
    main()
