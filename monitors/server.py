"""Running a monitors worker: its HTTP endpoint (``/metrics``, ``/health``), signals, and ``monitors show``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from llmops.config import Config, ConfigError
from monitors.checks import load_monitors_config
from monitors.embedder import build_embedder
from monitors.judge_llm import GatewayJudgeLLM
from monitors.metrics import MonitorMetrics
from monitors.store import SampleStore, fetch_results, redis_address, redis_client
from monitors.worker import Worker, consumer_name

log = logging.getLogger("llmops.monitors")


def build_http_app(metrics: MonitorMetrics, drift: Any = None, review: Any = None) -> web.Application:
    """The worker's own HTTP endpoint: ``/metrics``, ``/health``, ``/reports/<model>`` (the latest Evidently
    drift report of a model, which alerts link to), and with ``review`` (a :class:`monitors.review.site.ReviewSite`)
    the review page under ``/review``."""

    async def render_metrics(request: web.Request) -> web.Response:
        body, content_type = metrics.exposition(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/metrics", render_metrics)
    app.router.add_get("/health", health)
    if drift is not None:

        async def drift_report(request: web.Request) -> web.StreamResponse:
            path = await drift.report(request.match_info["model"])
            if path is None:
                raise web.HTTPNotFound(text="no drift report for this model yet (no reference or no run so far)")
            return web.FileResponse(path, headers={"Content-Type": "text/html; charset=utf-8"})

        app.router.add_get("/reports/{model:.+}", drift_report)  # model names may contain "/"
    if review is not None:
        review.add_routes(app)
    return app


#: The loggers through which the openai SDK's HTTP client logs every request at INFO: ``httpx2`` (the SDK's own fork
#: of httpx, openai >= 3.x) and ``httpx`` (older SDKs).
HTTP_CLIENT_LOGGERS = ("httpx2", "httpx")


def quiet_http_client_logs() -> None:
    """Keep the judge model's HTTP calls out of the log (one INFO line each) unless the log level is debug."""
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _redis_url(config: Config) -> str:
    if config.redis is None:
        raise ConfigError("the monitors read samples from Redis: set redis.url in the config")
    return config.redis.url


async def run_worker(config: Config, metrics_host: str | None = None, metrics_port: int | None = None) -> None:
    """Run one worker with its HTTP endpoint until SIGINT/SIGTERM."""
    metrics = MonitorMetrics()
    store = SampleStore.connect(_redis_url(config), config.monitors.consumer_group, consumer_name())
    llm = None
    if config.monitors.judge_model:
        llm = GatewayJudgeLLM(config.monitors.gateway_url, config.monitors.judge_model, config.monitors.judge_api_key)
    settings = config.monitors
    embedder = build_embedder(
        settings.embedding_model, settings.gateway_url, settings.judge_api_key, settings.drift.embeddings.model_path
    )
    drift = None
    if config.monitors.drift.enabled:
        from monitors.drift.monitor import DriftMonitor

        drift = DriftMonitor(store.redis, config.monitors.drift, metrics.registry)
        warm_up = asyncio.create_task(drift.warm_up())  # Evidently's import takes seconds: do it in the background
    worker = Worker(config, store, metrics=metrics, llm=llm, embedder=embedder, drift=drift)
    site = None
    if settings.review.enabled:
        from monitors.review.site import ReviewSite

        site = ReviewSite(
            settings.review, worker.review_store, metrics, ratings=worker.ratings, scoreboard=worker.scoreboard
        )
    runner = web.AppRunner(build_http_app(metrics, drift, site), access_log=None)
    await runner.setup()
    port = metrics_port or config.monitors.metrics_port
    metrics_host = metrics_host or config.monitors.metrics_host
    await web.TCPSite(runner, metrics_host, port).start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    judges = ", ".join(f"{s.name}@{s.rate:g}" for s in config.monitors.judge_specs)
    log.info("monitors worker metrics on http://%s:%d/metrics; judges: %s", metrics_host, port, judges)
    if site is not None:
        log.info("review page on http://%s:%d/review", metrics_host, port)
    try:
        await worker.run()
    finally:
        await runner.cleanup()
        if llm is not None:
            await llm.close()
        if embedder is not None:
            await embedder.close()
        if drift is not None:
            warm_up.cancel()
            await drift.close()
        await store.close()


def serve(
    config_path: str, metrics_port: int | None = None, log_level: str = "info", metrics_host: str | None = None
) -> None:
    """``llmops monitors --config FILE``."""
    config = load_monitors_config(config_path)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level.lower() != "debug":
        quiet_http_client_logs()
    _redis_url(config)
    try:
        import uvloop

        uvloop.run(run_worker(config, metrics_host=metrics_host, metrics_port=metrics_port))
    except ImportError:
        asyncio.run(run_worker(config, metrics_host=metrics_host, metrics_port=metrics_port))


def show(request_id: str, redis_url: str, source: str = "the default") -> int:
    """``llmops monitors show REQUEST_ID``: every judge result kept for one sampled request. An unreachable Redis is
    said in one line that names it and where its URL came from (``source``)."""
    from rich.console import Console
    from rich.table import Table

    async def load() -> tuple[dict | None, dict]:
        from monitors.review.store import ReviewStore

        client = redis_client(redis_url, reply_timeout=10.0, connect_timeout=5.0)
        try:
            return await fetch_results(client, request_id), await ReviewStore(client).votes_of_request(request_id)
        finally:
            await client.aclose()

    console = Console()
    try:
        results, votes = asyncio.run(load())
    except (RedisError, OSError) as error:
        print(
            f"llmops monitors show: cannot reach Redis at {redis_address(redis_url)} ({source}): "
            f"{type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 1
    if results is None and not votes:
        console.print(f"no judge results kept for request {request_id} (not sampled, not processed yet, or expired)")
        return 1
    results = results or {}
    meta = results.pop("_meta", {})
    console.print(
        f"[bold]request {request_id}[/bold]  model {meta.get('model')}  variant {meta.get('variant')}  "
        f"trace {meta.get('trace_id')}  judged by {meta.get('worker')}"
    )
    if meta.get("question"):
        console.print(f"[dim]question:[/dim] {meta['question']}")
    if meta.get("answer"):
        console.print(f"[dim]answer:[/dim] {meta['answer']}")
    table = Table("judge:criterion", "score / verdict", "explanation")
    for name in sorted(results):
        value = results[name]
        if "score" in value:
            verdict = f"{value['score']:.3f}"
        elif "winner" in value:
            verdict = f"winner: {value['winner']}"
        else:
            verdict = f"error: {value.get('reason')}"
        table.add_row(name, verdict, str(value.get("explanation") or value.get("message") or ""))
    console.print(table)
    if votes:
        console.print(_votes_table(votes))
    return 0


def _votes_table(votes: dict[str, Any]) -> Any:
    """Reviewers' votes on the request's answers (the review page, docs/review.md)."""
    from rich.table import Table

    table = Table("reviewer", "item (queue)", "vote", "comment", title="reviewer votes")
    for key in sorted(votes, key=lambda k: votes[k].get("ts", 0)):
        vote = votes[key]
        if vote.get("kind") == "pair":
            shown = f"{vote.get('a')} vs {vote.get('b')}: {vote.get('winner')}"
        else:
            shown = f"{vote.get('grade')}/10 ({vote.get('contestant')})"
        item = f"{vote.get('item')} ({vote.get('queue')})"
        table.add_row(str(vote.get("reviewer")), item, shown, str(vote.get("comment") or ""))
    return table
