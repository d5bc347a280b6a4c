"""Events: how long-running work reports what it does.

Steps never print. They emit :class:`Event` objects to an :class:`EventBus`; the CLI draws them
as progress bars and lines, the state store records them for the dashboard's timelines. Every
message is masked (see :mod:`deployer.secrets`) before any subscriber sees it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from deployer import secrets


class EventKind(StrEnum):
    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    PROGRESS = "progress"
    LOG = "log"
    WARNING = "warning"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    message: str
    step: str | None = None
    #: For PROGRESS: units done and total (total None when unknown).
    completed: float | None = None
    total: float | None = None
    #: Small scalar facts worth keeping (status, action, pid, port, seconds); never secrets.
    data: dict[str, str | int | float | bool | None] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers, in emission order, thread-safe."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def emit(
        self,
        kind: EventKind,
        message: str,
        *,
        step: str | None = None,
        completed: float | None = None,
        total: float | None = None,
        **data: str | int | float | bool | None,
    ) -> None:
        safe_data = {k: secrets.mask(v) if isinstance(v, str) else v for k, v in data.items()}
        event = Event(
            kind=kind,
            message=secrets.mask(message),
            step=step,
            completed=completed,
            total=total,
            data=safe_data,
        )
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber(event)

    def log(self, message: str, *, step: str | None = None) -> None:
        self.emit(EventKind.LOG, message, step=step)

    def warn(self, message: str, *, step: str | None = None) -> None:
        self.emit(EventKind.WARNING, message, step=step)

    def progress(
        self, message: str, *, step: str | None, completed: float, total: float | None
    ) -> None:
        self.emit(EventKind.PROGRESS, message, step=step, completed=completed, total=total)
