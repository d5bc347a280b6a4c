"""Drawing events and results in the terminal: progress while work runs, tables after."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from deployer.events import Event, EventBus, EventKind

_MARKS = {"done": "[green]✓[/]", "skipped": "[dim]-[/]", "failed": "[red]✗[/]"}


class EventRenderer:
    """Subscribes to an :class:`EventBus` and draws steps, logs and progress.

    On a terminal the running step shows a spinner, elapsed time and its latest progress
    message; elsewhere (CI, pipes) each finished step is one plain line.
    """

    def __init__(self, console: Console, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[detail]}"),
            console=console,
            transient=True,
        )
        self._tasks: dict[str | None, TaskID] = {}
        self._started: dict[str | None, float] = {}

    def __call__(self, event: Event) -> None:
        if event.kind == EventKind.STEP_STARTED:
            self._started[event.step] = time.monotonic()
            self._tasks[event.step] = self.progress.add_task(
                escape(event.message), total=None, detail=""
            )
        elif event.kind == EventKind.STEP_FINISHED:
            task = self._tasks.pop(event.step, None)
            if task is not None:
                self.progress.remove_task(task)
            mark = _MARKS.get(str(event.data.get("status")), "•")
            self.progress.console.print(f"  {mark} {escape(event.message)}")
        elif event.kind == EventKind.PROGRESS:
            task = self._tasks.get(event.step)
            if task is not None:
                self.progress.update(
                    task,
                    completed=event.completed or 0,
                    total=event.total,
                    detail=escape(event.message[:80]),
                )
        elif event.kind == EventKind.WARNING:
            self.progress.console.print(f"  [yellow]![/] {escape(event.message)}")
        elif event.kind == EventKind.LOG and (self.verbose or event.step == "smoke"):
            self.progress.console.print(f"    [dim]{escape(event.message)}[/]")


@contextmanager
def rendering(console: Console, *, verbose: bool = False) -> Iterator[EventBus]:
    """An event bus whose events are drawn on ``console`` while the block runs."""
    bus = EventBus()
    renderer = EventRenderer(console, verbose=verbose)
    bus.subscribe(renderer)
    with renderer.progress:
        yield bus


def liveness(healthy: bool, running: bool, stopped: str = "stopped") -> str:
    """The word ``status`` shows for what a target observed: healthy, running, or ``stopped``
    (a replica's is ``"down"``)."""
    return "healthy" if healthy else ("running" if running else stopped)


def print_json(console: Console, data: Any) -> None:
    console.print_json(json.dumps(data, default=str, sort_keys=True))
