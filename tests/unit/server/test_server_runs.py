"""The server's background runs: the request gets the run id once the run is recorded; a second
run on the same deployment while the first goes on is refused; an error before the run is the
request's own."""

from __future__ import annotations

import threading

import pytest

from deployer.errors import ConcurrentRunError, NotFoundError
from deployer.events import EventBus, EventKind
from deployer.server.runs import Runs


def test_one_run_per_deployment_at_a_time() -> None:
    runs = Runs()
    release = threading.Event()
    ended: list[BaseException | None] = []

    def long_work(events: EventBus) -> None:
        events.emit(EventKind.RUN_STARTED, "apply a", run_id=41, operation="apply")
        release.wait(30)

    assert runs.start("a", long_work, ended.append) == 41
    with pytest.raises(ConcurrentRunError, match="run 41 of this server"):
        runs.start("a", long_work, ended.append)

    def other(events: EventBus) -> None:
        events.emit(EventKind.RUN_STARTED, "smoke b", run_id=42, operation="smoke")

    assert runs.start("b", other, ended.append) == 42  # another deployment is free
    release.set()
    for thread in threading.enumerate():
        if thread.name == "run-a":
            thread.join(10)
    assert runs.start("a", other, ended.append) == 42  # free again once the first ended
    assert ended[:2] == [None, None]


def test_an_error_before_the_run_is_recorded_is_the_requests() -> None:
    def unknown(_events: EventBus) -> None:
        raise NotFoundError("no deployment named 'zulu'")

    seen: list[BaseException | None] = []
    with pytest.raises(NotFoundError, match="zulu"):
        Runs().start("zulu", unknown, seen.append)
    assert isinstance(seen[0], NotFoundError)
