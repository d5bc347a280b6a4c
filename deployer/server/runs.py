"""Mutating requests as background runs: the request returns the run's id as soon as the run is
recorded, the work goes on in a thread, and the run's events are read back from the state store.

A run that cannot start (a second run on the same deployment, an unknown name) fails the
request itself, so the client gets 409 or 404 instead of a run id. The state store refuses a
run beside another process's; beside one of the server's own (same process), :class:`Runs`
refuses it. The run is recorded with the
server's pid: if the server dies mid-run, the run reads as interrupted, never as running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from deployer.errors import ConcurrentRunError, RunStartTimeout
from deployer.events import Event, EventBus, EventKind
from deployer.state import StateStore

#: Seconds a request waits for its run to be recorded before it gives up.
START_TIMEOUT = 60.0


@dataclass
class _Start:
    recorded: threading.Event = field(default_factory=threading.Event)
    run_id: int | None = None
    error: BaseException | None = None


class Runs:
    """The server's runs in progress, one per deployment at most."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, int | None] = {}

    def start(
        self,
        deployment: str,
        work: Callable[[EventBus], object],
        on_done: Callable[[BaseException | None], None],
    ) -> int:
        """Run ``work`` in a thread with its own event bus; return the id of the run it records.

        Raises :class:`ConcurrentRunError` while the server runs another on ``deployment``, the
        error ``work`` raised before recording its run (the run never existed), or
        :class:`RunStartTimeout`. ``on_done`` is told how the work ended, in the thread.
        """
        with self._lock:
            if deployment in self._active:
                running = self._active[deployment]
                raise ConcurrentRunError(
                    f"deployment {deployment!r} is being changed by run {running} of this server",
                    hint=f"follow it at /api/v1/runs/{running}/events, then try again",
                )
            self._active[deployment] = None
        state = _Start()
        events = EventBus()

        def seen(event: Event) -> None:
            if event.kind == EventKind.RUN_STARTED and state.run_id is None:
                state.run_id = int(str(event.data["run_id"]))
                with self._lock:
                    self._active[deployment] = state.run_id
                state.recorded.set()

        events.subscribe(seen)

        def body() -> None:
            error: BaseException | None = None
            try:
                work(events)
            except BaseException as exc:  # recorded in the run; the thread must not die loudly
                error = exc
            finally:
                with self._lock:
                    self._active.pop(deployment, None)
                if state.run_id is None:
                    state.error = error
                    state.recorded.set()
                on_done(error)

        threading.Thread(target=body, name=f"run-{deployment}", daemon=True).start()
        if not state.recorded.wait(START_TIMEOUT):
            raise RunStartTimeout(
                f"the run did not start within {START_TIMEOUT:.0f} s",
                hint="see the server's log; the run may still start",
            )
        if state.run_id is None:
            raise state.error or RunStartTimeout("the run ended before it was recorded")
        return state.run_id


def audited(
    store: StateStore, actor: str, action: str, deployment: str
) -> Callable[[BaseException | None], None]:
    """An ``on_done`` for :meth:`Runs.start` that writes the run's outcome as an audit event."""

    def done(error: BaseException | None) -> None:
        result = "ok" if error is None else "failed"
        store.audit(actor, action, deployment, result, str(error) if error else None)

    return done
