"""The event bus: every subscriber sees every event, in order, with secrets masked."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from deployer import secrets
from deployer.events import Event, EventBus, EventKind

SECRET = "sk-event-secret-7777"


@pytest.fixture(autouse=True)
def isolated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_values", set())


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def seen(bus: EventBus) -> list[Event]:
    events: list[Event] = []
    bus.subscribe(events.append)
    return events


def test_messages_and_string_data_are_masked(bus: EventBus, seen: list[Event]) -> None:
    secrets.register(SECRET)

    bus.emit(
        EventKind.LOG,
        f"started with key {SECRET}",
        step="deploy",
        command=f"vllm --api-key {SECRET}",
        pid=4242,
        healthy=True,
        seconds=1.5,
        detail=None,
    )

    (event,) = seen
    assert event.message == f"started with key {secrets.MASK}"
    assert event.data == {
        "command": f"vllm --api-key {secrets.MASK}",
        "pid": 4242,
        "healthy": True,
        "seconds": 1.5,
        "detail": None,
    }
    assert SECRET not in repr(event)


@pytest.mark.parametrize(
    ("emit", "expected"),
    [
        pytest.param(
            lambda bus: bus.log(f"log {SECRET}", step="model"),
            (EventKind.LOG, "log ********", "model", None, None),
            id="log",
        ),
        pytest.param(
            lambda bus: bus.warn(f"warn {SECRET}"),
            (EventKind.WARNING, "warn ********", None, None, None),
            id="warn",
        ),
        pytest.param(
            lambda bus: bus.progress(f"download {SECRET}", step="model", completed=3, total=10),
            (EventKind.PROGRESS, "download ********", "model", 3, 10),
            id="progress",
        ),
        pytest.param(
            lambda bus: bus.progress("loading", step="ready", completed=1.5, total=None),
            (EventKind.PROGRESS, "loading", "ready", 1.5, None),
            id="progress-unknown-total",
        ),
    ],
)
def test_helpers_emit_their_kind(
    bus: EventBus, seen: list[Event], emit: Callable[[EventBus], None], expected: tuple[object, ...]
) -> None:
    secrets.register(SECRET)

    emit(bus)

    (event,) = seen
    assert (event.kind, event.message, event.step, event.completed, event.total) == expected


def test_subscribers_get_events_in_order() -> None:
    bus = EventBus()
    calls: list[tuple[str, str]] = []
    bus.subscribe(lambda e: calls.append(("first", e.message)))
    bus.subscribe(lambda e: calls.append(("second", e.message)))

    for message in ["one", "two", "three"]:
        bus.log(message)

    assert calls == [
        ("first", "one"),
        ("second", "one"),
        ("first", "two"),
        ("second", "two"),
        ("first", "three"),
        ("second", "three"),
    ]


def test_events_carry_increasing_timestamps(bus: EventBus, seen: list[Event]) -> None:
    for i in range(5):
        bus.log(str(i))

    stamps = [e.ts for e in seen]
    assert stamps == sorted(stamps)
    assert all(ts > 0 for ts in stamps)


def test_a_late_subscriber_sees_only_later_events(bus: EventBus, seen: list[Event]) -> None:
    bus.log("before")
    late: list[Event] = []
    bus.subscribe(late.append)
    bus.log("after")

    assert [e.message for e in seen] == ["before", "after"]
    assert [e.message for e in late] == ["after"]


def test_emitting_from_threads_keeps_each_threads_order(bus: EventBus, seen: list[Event]) -> None:
    def worker(name: str) -> None:
        for i in range(200):
            bus.log(str(i), step=name)

    threads = [threading.Thread(target=worker, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == 800
    for n in range(4):
        assert [e.message for e in seen if e.step == f"t{n}"] == [str(i) for i in range(200)]


def test_no_subscribers_is_fine(bus: EventBus) -> None:
    bus.emit(EventKind.RUN_STARTED, "run 1", operation="apply")
