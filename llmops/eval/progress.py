"""The progress of a run on the terminal (rich): one bar per phase (a model's log-likelihood or generation requests),
with the spend when a budget is set. Requests answered from the run's cache are not counted: a resumed run's bars
show what is left."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._bars = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[spend]}"),
            console=self.console,
            transient=False,
        )
        self._current: TaskID | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def phase(self, description: str, total: int) -> None:
        with self._lock:
            self._current = self._bars.add_task(description, total=total, spend="")

    def advance(self, count: int, spent_usd: float | None) -> None:
        with self._lock:
            if self._current is None:
                return
            spend = f"${spent_usd:.4f} spent" if spent_usd is not None else ""
            self._bars.update(self._current, advance=count, spend=spend)

    def log(self, message: str) -> None:
        self.console.print(message)
