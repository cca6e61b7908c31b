"""One evaluation run: every model through every task, with lm-evaluation-harness, through the gateway.

A run lives in its folder ``RUNS_DIR/RUN_ID/``: ``state.json`` (its options, and what a stopped run had spent),
``cache/`` (the harness's request cache, one SQLite file per model and API: every answer received is kept there as
it arrives, so a resumed run asks no item twice), and once complete ``results.json``, ``report.md`` and
``report.html``.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmops.eval.catalog import EvalError, TaskSpec, data_dir, harness_config, select
from llmops.eval.guard import RunGuard, RunStopped
from llmops.eval.meter import GatewayMeter
from llmops.eval.progress import Progress
from llmops.eval.results import ModelRun, RunResult, extract


@dataclass
class Options:
    """What a run was asked to do (kept in ``state.json``; a resumed run takes them from there)."""

    gateway: str
    models: list[str]
    tasks: list[str]
    data_dir: str | None = None
    limit: int | None = None
    num_fewshot: int | None = None
    max_concurrency: int = 4
    timeout_s: int = 300
    seed: int = 1234


@dataclass
class RunState:
    run_id: str
    options: Options
    #: per model: what stopped invocations of this run spent (cost_usd, requests, input/output tokens, duration_s)
    carried: dict[str, dict[str, float]] = field(default_factory=dict)
    status: str = "new"

    def save(self, folder: Path) -> None:
        (folder / "state.json").write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> RunState:
        path = folder / "state.json"
        if not path.is_file():
            raise EvalError(f"--resume: no run in {folder} (no state.json)")
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["run_id"], Options(**data["options"]), data.get("carried", {}), data.get("status", "new"))


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _gateway_models(gateway: str, key: str | None) -> dict[str, Any]:
    """The gateway's ``/v1/models`` entries, by id (empty when it does not answer)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        request = urllib.request.Request(gateway.rstrip("/") + "/v1/models", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return {entry["id"]: entry for entry in json.loads(response.read()).get("data", [])}
    except (OSError, ValueError, KeyError):
        return {}


def _by_api(specs: list[TaskSpec]) -> list[tuple[str, list[TaskSpec]]]:
    """The tasks per API: log-likelihood tasks through completions, generative ones through chat."""
    groups = [("completions", [s for s in specs if not s.generative]), ("chat", [s for s in specs if s.generative])]
    return [(api, chosen) for api, chosen in groups if chosen]


class Run:
    """One invocation of a run (a new one, or a resumed one)."""

    def __init__(
        self,
        state: RunState,
        folder: Path,
        key: str | None = None,
        budget_usd: float | None = None,
        model_config: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.state = state
        self.folder = folder
        self.key = key
        self.model_config = model_config or {}
        self.options = state.options
        self.meter = GatewayMeter(self.options.gateway, list(self.options.models))
        self.guard = RunGuard(self.meter, budget_usd=budget_usd, progress=progress)

    def _evaluate(self, model: str, specs: list[TaskSpec]) -> ModelRun:
        import lm_eval

        from llmops.eval import harness

        folder = data_dir(self.options.data_dir)
        out = ModelRun(model)
        for api, chosen in _by_api(specs):
            lm = harness.make_model(
                api,
                self.options.gateway,
                model,
                self.guard,
                self.key,
                self.options.max_concurrency,
                self.options.timeout_s,
            )
            cache = self.folder / "cache" / f"{model.replace('/', '_')}-{api}"
            output = lm_eval.simple_evaluate(
                model=lm,
                tasks=[harness_config(spec, folder) for spec in chosen],
                task_manager=harness.task_manager(),
                num_fewshot=self.options.num_fewshot,
                limit=self.options.limit,
                use_cache=str(cache),
                apply_chat_template=api == "chat",
                fewshot_as_multiturn=api == "chat" and bool(self.options.num_fewshot),
                bootstrap_iters=1000,
                random_seed=self.options.seed,
                fewshot_random_seed=self.options.seed,
                log_samples=True,
            )
            if output is None:
                raise EvalError("the harness returned no results")
            out.tasks.extend(extract(spec, model, output) for spec in chosen)
        return out

    def _carry(self, model: str, started: float) -> dict[str, float]:
        carried = self.state.carried.get(model, {})
        usage = self.guard.usage.get(model)
        cost, requests = self.meter.since_start().get(model, (0.0, 0.0))
        return {
            "cost_usd": cost + carried.get("cost_usd", 0.0),
            "requests": requests + carried.get("requests", 0.0),
            "input_tokens": (usage.input_tokens if usage else 0) + carried.get("input_tokens", 0.0),
            "output_tokens": (usage.output_tokens if usage else 0) + carried.get("output_tokens", 0.0),
            "duration_s": time.time() - started + carried.get("duration_s", 0.0),
        }

    def execute(self) -> RunResult:
        """Evaluate every model; raises :class:`RunStopped` (after saving what was spent) when stopped."""
        from llmops.eval import harness

        harness.quiet()
        specs = select(self.options.tasks, None)
        started = time.time()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state.status = "running"
        self.state.save(self.folder)
        self.meter.start()
        runs: list[ModelRun] = []
        for model in self.options.models:
            model_started = time.time()
            try:
                run = self._evaluate(model, specs)
            except RunStopped as stop:
                # what this invocation spent, per model, is kept for the resumed run's totals
                self.state.carried[model] = self._carry(model, model_started)
                self.state.status = stop.reason
                self.state.save(self.folder)
                raise
            totals = self._carry(model, model_started)
            run.cost_usd, run.duration_s = totals["cost_usd"], totals["duration_s"]
            run.requests = int(totals["requests"])
            run.input_tokens, run.output_tokens = int(totals["input_tokens"]), int(totals["output_tokens"])
            self.state.carried[model] = totals
            self.state.save(self.folder)
            runs.append(run)
        self.state.status = "complete"
        self.state.save(self.folder)
        info = _gateway_models(self.options.gateway, self.key)
        gateway_info = {m: {"gateway": info.get(m), "config": self.model_config.get(m)} for m in self.options.models}
        result = RunResult(
            run_id=self.state.run_id,
            status="complete",
            started=started,
            finished=time.time(),
            gateway=self.options.gateway,
            options=asdict(self.options),
            models=runs,
            gateway_info=gateway_info,
        )
        result.save(self.folder / "results.json")
        return result
