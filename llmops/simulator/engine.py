"""The simulated engine: admission like vLLM's scheduler, KV cache accounting, prefix cache, and token timing.

``--max-num-seqs`` sequences run at once; more wait in a first-in-first-out queue (``vllm:num_requests_waiting``,
``vllm:request_queue_time_seconds``). A running sequence holds its prompt and generated tokens in a KV cache of
``--kv-cache-tokens`` tokens (``vllm:kv_cache_usage_perc``); when the cache overflows, the sequences of the request
that overflowed it are preempted once: counted, and delayed by one more prefill (``--ttft-ms``).

Prefix cache: every leading run of messages of a chat prompt (and every whole completion prompt) is remembered; a
new prompt whose leading messages were seen before gets those messages' tokens as cached, counted as vLLM counts
them: whole KV blocks only (``--block-size``, 16 tokens by default), and never the prompt's last token, which vLLM
recomputes to get the first output's logits even when the whole prompt is cached.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from time import monotonic

from llmops.simulator.metrics import EngineMetrics
from llmops.simulator.protocol import Prompt
from llmops.simulator.settings import SimulatorSettings


class Scheduler:
    """First-in-first-out admission of up to ``capacity`` sequences at once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.running = 0
        self.waiting = 0
        self._queue: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, count: int) -> None:
        """Wait until ``count`` sequences may run (``count`` must not exceed ``capacity``)."""
        if not self._queue and self.running + count <= self.capacity:
            self.running += count
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (count, future)
        self._queue.append(entry)
        self.waiting += count
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(count)  # admitted, then cancelled before it ran
            else:
                try:
                    self._queue.remove(entry)
                    self.waiting -= count
                except ValueError:
                    pass
                self._wake()
            raise

    def release(self, count: int) -> None:
        """``count`` sequences finished."""
        self.running -= count
        self._wake()

    def _wake(self) -> None:
        queue = self._queue
        while queue and self.running + queue[0][0] <= self.capacity:
            count, future = queue.popleft()
            self.waiting -= count
            if future.cancelled():
                continue
            self.running += count
            future.set_result(None)


class PrefixCache:
    """Digests of prompt prefixes seen recently (least recently used ones are forgotten)."""

    def __init__(self, max_entries: int = 100_000, block_size: int = 16) -> None:
        self.max_entries = max_entries
        self.block_size = block_size
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def lookup(self, prompt: Prompt) -> int:
        """Tokens of ``prompt`` found in the cache (its longest seen leading run, cut to whole blocks and short of
        the last prompt token); then remember all its prefixes."""
        seen = self._seen
        digests = prompt.digests
        hit = 0
        for k in range(len(digests) - 1, -1, -1):
            if digests[k] in seen:
                hit = k + 1
                break
        for digest in digests:
            seen[digest] = None
            seen.move_to_end(digest)
        while len(seen) > self.max_entries:
            seen.popitem(last=False)
        cached = min(sum(prompt.segment_tokens[:hit]), prompt.tokens - 1)
        return max(0, cached - cached % self.block_size)


class Engine:
    """The state shared by all requests of one simulator."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.scheduler = Scheduler(settings.max_num_seqs)
        self.prefix_cache = PrefixCache(block_size=settings.block_size)
        self.kv_capacity = settings.kv_cache_tokens
        self.kv_used = 0
        self.metrics = EngineMetrics(
            settings.metrics_model_name,
            max_model_len=settings.max_model_len,
            legacy_names=settings.legacy_metric_names,
            running=lambda: self.scheduler.running,
            waiting=lambda: self.scheduler.waiting,
            kv_usage=self.kv_usage,
        )

    def kv_usage(self) -> float:
        """Share of the KV cache held by running sequences, 0..1."""
        return min(1.0, self.kv_used / self.kv_capacity)

    def run(self, prompts: list[Prompt], arrival: float, ttft_s: float, itl_s: float) -> Run:
        """A new run of one sequence per entry of ``prompts`` (a prompt appears once per choice)."""
        return Run(self, prompts, arrival, ttft_s, itl_s)


class Run:
    """The sequences of one HTTP request through the engine: admission, timing, metrics and release."""

    __slots__ = (
        "_admitted",
        "_closed",
        "_engine",
        "_first",
        "_last",
        "_penalty",
        "_preempted",
        "_slots",
        "arrival",
        "cached",
        "finished",
        "generated",
        "held",
        "itl_s",
        "prompts",
        "ttft_s",
    )

    def __init__(self, engine: Engine, prompts: list[Prompt], arrival: float, ttft_s: float, itl_s: float) -> None:
        self._engine = engine
        self.prompts = prompts
        self.arrival = arrival
        self.ttft_s = ttft_s
        self.itl_s = itl_s
        count = len(prompts)
        self.cached = [0] * count
        self.generated = [0] * count
        self.finished: list[str | None] = [None] * count
        self._first: list[float] = [0.0] * count
        self._last: list[float] = [0.0] * count
        self._admitted = 0.0
        self._penalty = 0.0
        self._preempted = False
        self._slots = 0
        self._closed = False
        self.held = 0

    async def admit(self, prefix_cache: bool = True) -> None:
        """Wait for a place in the running batch, then prefill: count prompt tokens and look up the prefix cache."""
        engine = self._engine
        slots = min(len(self.prompts), engine.scheduler.capacity)
        await engine.scheduler.acquire(slots)
        self._slots = slots
        now = monotonic()
        self._admitted = now
        metrics = engine.metrics
        queued = now - self.arrival
        for i, prompt in enumerate(self.prompts):
            metrics.queue.observe(queued)
            metrics.prompt_tokens.inc(prompt.tokens)
            metrics.request_prompt_tokens.observe(prompt.tokens)
            if prefix_cache:
                cached = engine.prefix_cache.lookup(prompt)
                self.cached[i] = cached
                metrics.prefix_queries.inc(prompt.tokens)
                if cached:
                    metrics.prefix_hits.inc(cached)
            self.held += prompt.tokens
        engine.kv_used += self.held

    def due(self, step: int) -> float:
        """When the token of ``step`` (0 = the first token) is due, on the monotonic clock."""
        return self._admitted + self.ttft_s + self._penalty + step * self.itl_s

    async def wait(self, step: int, before_sleep: Callable[[], Awaitable[None]] | None = None) -> None:
        """Sleep until the token of ``step`` is due; ``before_sleep`` runs first when there is a wait."""
        delay = self.due(step) - monotonic()
        if delay > 0:
            if before_sleep is not None:
                await before_sleep()
            await asyncio.sleep(delay)

    def token(self, seq: int) -> None:
        """Sequence ``seq`` produced a token now."""
        now = monotonic()
        engine = self._engine
        metrics = engine.metrics
        if self.generated[seq]:
            metrics.itl.observe(now - self._last[seq])
        else:
            self._first[seq] = now
            metrics.ttft.observe(now - self.arrival)
        self._last[seq] = now
        self.generated[seq] += 1
        metrics.generation_tokens.inc()
        self.held += 1
        engine.kv_used += 1
        if engine.kv_used > engine.kv_capacity and not self._preempted:
            self._preempted = True
            metrics.preemptions.inc(sum(1 for reason in self.finished if reason is None))
            self._penalty += self.ttft_s

    def finish(self, seq: int, reason: str) -> None:
        """Sequence ``seq`` ended with ``reason`` (``stop``, ``length``, ``abort`` or ``error``)."""
        if self.finished[seq] is not None:
            return
        self.finished[seq] = reason
        now = monotonic()
        metrics = self._engine.metrics
        metrics.success[reason].inc()
        metrics.e2e.observe(now - self.arrival)
        generated = self.generated[seq]
        metrics.request_generation_tokens.observe(generated)
        if self._admitted:
            metrics.inference.observe(now - self._admitted)
            first = self._first[seq] if generated else now
            metrics.prefill.observe(first - self._admitted)
            metrics.decode.observe(now - first)
            if generated > 1:
                metrics.tpot.observe((self._last[seq] - first) / (generated - 1))

    def close(self, unfinished: str = "abort") -> None:
        """Release the run's places and KV cache; sequences not finished yet end as ``unfinished``."""
        if self._closed:
            return
        self._closed = True
        for seq, reason in enumerate(self.finished):
            if reason is None:
                self.finish(seq, unfinished)
        engine = self._engine
        engine.kv_used -= self.held
        self.held = 0
        if self._slots:
            engine.scheduler.release(self._slots)
            self._slots = 0

    @property
    def usage_cached_tokens(self) -> int:
        """Cached prompt tokens for the usage object: those of the first sequence of each distinct prompt."""
        seen: set[int] = set()
        total = 0
        for prompt, cached in zip(self.prompts, self.cached, strict=True):
            if id(prompt) not in seen:
                seen.add(id(prompt))
                total += cached
        return total
