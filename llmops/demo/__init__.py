"""``llmops demo``: the stack on one machine with embedded defaults, real processes and real metrics.

Starts a private Redis (:mod:`~llmops.demo.redis_choice`), the simulator (a vLLM-like upstream serving two models), a
second simulator as the judge model (scripted verdicts), the gateway and a monitors worker as child processes
(:mod:`~llmops.demo.stack`, :mod:`~llmops.demo.processes`, :mod:`~llmops.demo.ports`); sends traffic through the
gateway with the official openai SDK (:mod:`~llmops.demo.traffic`: streaming and not, English and Korean prompts, some
with a reference answer); waits for the monitors (:mod:`~llmops.demo.waiting`); then reads the gateway's and the
worker's ``/metrics`` back and prints what they measured (:mod:`~llmops.demo.report`, with
:mod:`~llmops.demo.promquery`).
"""

from __future__ import annotations

from llmops.demo.run import run_demo

__all__ = ["run_demo"]
