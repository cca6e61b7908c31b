#!/usr/bin/env python3
"""Gateway overhead benchmark: the same load sent straight to a near-zero-cost upstream and through one gateway
worker, side by side, in one run. Not part of the test suite.

    .venv/bin/python bench/gateway_overhead.py                    # all steps, ~4 min on a quiet box
    .venv/bin/python bench/gateway_overhead.py --json /tmp/overhead.json
    .venv/bin/python bench/gateway_overhead.py --soak 300         # RSS over a 5-minute run

What it does (everything on 127.0.0.1, every load step bounded: --duration, 15 s by default):
  * starts the fake upstream: gwbench's nginx (``$GWBENCH_DIR/upstream.sh``, canned chat completion and 20-event SSE
    stream) when GWBENCH_DIR names the harness and nginx is installed, else
    ``llmops simulate --ttft-ms 0 --tokens-per-second 0``;
    an upstream already answering on --upstream-port is reused (and left running);
  * starts one gateway process (``llmops gateway``, one uvicorn worker) pinned to CPU 0 (--gw-cpus);
  * pins itself, the load generators and the upstream to CPU 1 (--load-cpus);
  * for non-streaming and streaming requests, at fixed rates (--rates, open loop, our own generator: this file's
    ``_load`` subcommand, asyncio + httptools) and at maximum throughput (wrk, closed loop, --conns connections),
    measures direct-to-upstream and then through the gateway;
  * per step: p50/p99 latency (and time to first byte of the SSE body for streaming at fixed rates), the gateway's
    added latency and the ratio against the direct baseline of the same run, the gateway's CPU ms per request
    (utime+stime from /proc/<pid>/stat over the step / requests), its RSS, and the CPU used by *other* processes
    during the step (the box may be shared: a step with more than --noise-max cores of foreign CPU is re-run).

--soak SECONDS instead drives a fixed rate (--soak-rate, half of the requests streaming) through the gateway for that
long and samples its RSS every --soak-interval seconds: first/last/peak and the growth.

--baseline-ref GIT_REF (A/B) instead runs the gateway steps against this checkout's gateway and against one from
GIT_REF (checked out with git worktree into a temp folder), both on the gateway CPUs, alternated for --ab-rounds
rounds, and prints the gateway's CPU per request new/old.
"""

from __future__ import annotations

import sys

from overhead.cli import main  # the package beside this file (bench/overhead/)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], __doc__))
