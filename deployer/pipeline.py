"""Runs the steps of an operation: records each one, emits events, retries what may pass.

A step is a named callable with the action the plan chose for it. The pipeline writes a
:class:`~deployer.state.StepRecord` before and after it, emits ``step_started`` and
``step_finished`` events (which the CLI draws and the state store keeps), retries
:class:`~deployer.errors.TemporaryError` a few times, and lets every other error through after
recording it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from deployer.errors import DeployerError, TemporaryError
from deployer.events import Event, EventBus, EventKind
from deployer.planner import StepAction
from deployer.state import StepStatus

if TYPE_CHECKING:
    from deployer.state import StateStore

T = TypeVar("T")

MAX_ATTEMPTS = 3
#: Progress events are frequent; the state store keeps one every this many seconds per step.
PROGRESS_RECORD_INTERVAL = 5.0


class Pipeline:
    def __init__(self, store: StateStore, run_id: int, events: EventBus) -> None:
        self.store = store
        self.run_id = run_id
        self.events = events
        self._last_progress: dict[str | None, float] = {}
        events.subscribe(self._record)

    def _record(self, event: Event) -> None:
        if event.kind == EventKind.PROGRESS:
            last = self._last_progress.get(event.step, 0.0)
            if event.ts - last < PROGRESS_RECORD_INTERVAL:
                return
            self._last_progress[event.step] = event.ts
        self.store.record_event(self.run_id, event)

    def step(self, name: str, action: StepAction, reason: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` as step ``name``; its return value is returned, its errors re-raised."""
        record = self.store.start_step(self.run_id, name, action.value)
        self.events.emit(
            EventKind.STEP_STARTED, f"{name}: {reason}", step=name, action=action.value
        )
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                result = fn()
                break
            except TemporaryError as exc:
                if attempt >= MAX_ATTEMPTS:
                    self._failed(record.id, name, exc, started)
                    raise
                self.events.warn(f"{exc.message}; retrying in {exc.delay:.0f}s", step=name)
                time.sleep(exc.delay)
                attempt += 1
            except DeployerError as exc:
                self._failed(record.id, name, exc, started)
                raise
            except BaseException as exc:
                self._failed(record.id, name, exc, started)
                raise
        seconds = time.monotonic() - started
        self.store.finish_step(record.id, StepStatus.DONE, reason)
        self.events.emit(
            EventKind.STEP_FINISHED,
            f"{name}: {action.value}: {reason} ({seconds:.1f}s)",
            step=name,
            status="done",
            action=action.value,
            seconds=round(seconds, 3),
        )
        return result

    def skip(self, name: str, reason: str) -> None:
        """Record step ``name`` as skipped, with the reason a user will read."""
        record = self.store.start_step(self.run_id, name, StepAction.SKIP.value)
        self.store.finish_step(record.id, StepStatus.SKIPPED, reason)
        self.events.emit(
            EventKind.STEP_FINISHED,
            f"{name}: skip: {reason}",
            step=name,
            status="skipped",
            action=StepAction.SKIP.value,
            seconds=0.0,
        )

    def _failed(self, step_id: int, name: str, exc: BaseException, started: float) -> None:
        message = str(exc) if isinstance(exc, DeployerError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted"
        self.store.finish_step(step_id, StepStatus.FAILED, message)
        self.events.emit(
            EventKind.STEP_FINISHED,
            f"{name}: failed: {message}",
            step=name,
            status="failed",
            seconds=round(time.monotonic() - started, 3),
        )
