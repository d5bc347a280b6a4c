"""Round trips through a real SQLite file: what goes in comes back, typed and in UTC."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deployer.errors import NotFoundError
from deployer.events import Event, EventKind
from deployer.state import (
    DeploymentRecord,
    DeploymentStatus,
    RunStatus,
    StateStore,
    StepStatus,
)


def _deploy(store: StateStore, name: str = "llama", **fields: str) -> DeploymentRecord:
    return store.upsert_deployment(
        name, target_kind="local", status=DeploymentStatus.PENDING, **fields
    )


def test_deployment_round_trip(store: StateStore) -> None:
    saved = store.upsert_deployment(
        "llama",
        target_kind="local",
        status=DeploymentStatus.HEALTHY,
        manifest_path="/srv/llama.yaml",
        manifest_digest="sha256:aa",
        spec_digest="sha256:bb",
        endpoint="http://127.0.0.1:8000/v1",
        served_model_name="llama-3.1-8b",
        message="ready",
    )

    loaded = store.get_deployment("llama")

    assert loaded == saved
    assert loaded.status is DeploymentStatus.HEALTHY
    assert loaded.endpoint == "http://127.0.0.1:8000/v1"
    assert loaded.created_at.tzinfo is UTC
    assert loaded.last_run_id is None


def test_unknown_deployment_is_none(store: StateStore) -> None:
    assert store.get_deployment("nope") is None


def test_upsert_keeps_created_at_and_moves_updated_at(store: StateStore) -> None:
    first = _deploy(store, message="one")

    second = store.upsert_deployment(
        "llama", target_kind="ssh", status=DeploymentStatus.DEPLOYING, message="two"
    )

    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert (second.target_kind, second.status, second.message) == (
        "ssh",
        DeploymentStatus.DEPLOYING,
        "two",
    )
    assert len(store.list_deployments()) == 1


def test_upsert_replaces_omitted_fields_with_none(store: StateStore) -> None:
    _deploy(store, endpoint="http://x")

    again = _deploy(store)

    assert again.endpoint is None


def test_upsert_keeps_last_run_id(store: StateStore) -> None:
    _deploy(store)
    run = store.start_run("llama", "apply")

    again = _deploy(store)

    assert again.last_run_id == run.id


def test_list_hides_destroyed_unless_asked(store: StateStore) -> None:
    _deploy(store, "b")
    _deploy(store, "a")
    _deploy(store, "gone")
    store.set_status("gone", DeploymentStatus.DESTROYED)

    assert [d.name for d in store.list_deployments()] == ["a", "b"]
    assert [d.name for d in store.list_deployments(include_destroyed=True)] == ["a", "b", "gone"]


def test_set_status_sets_message_and_clears_it(store: StateStore) -> None:
    before = _deploy(store)

    store.set_status("llama", DeploymentStatus.UNHEALTHY, "health check timed out")
    unhealthy = store.get_deployment("llama")
    store.set_status("llama", DeploymentStatus.HEALTHY)
    healthy = store.get_deployment("llama")

    assert unhealthy is not None
    assert healthy is not None
    assert (unhealthy.status, unhealthy.message) == (
        DeploymentStatus.UNHEALTHY,
        "health check timed out",
    )
    assert (healthy.status, healthy.message) == (DeploymentStatus.HEALTHY, None)
    assert healthy.created_at == before.created_at
    assert healthy.updated_at > before.updated_at


def test_set_status_of_unknown_deployment(store: StateStore) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        store.set_status("nope", DeploymentStatus.FAILED)


def test_run_round_trip(store: StateStore) -> None:
    _deploy(store)

    run = store.start_run("llama", "apply")
    store.finish_run(run.id, RunStatus.FAILED, "engine exited with 1")
    loaded = store.get_run(run.id)

    assert run.status is RunStatus.RUNNING
    assert run.finished_at is None
    assert loaded is not None
    assert (loaded.deployment, loaded.operation, loaded.status, loaded.error) == (
        "llama",
        "apply",
        RunStatus.FAILED,
        "engine exited with 1",
    )
    assert loaded.finished_at is not None
    assert loaded.finished_at >= loaded.started_at
    assert loaded.started_at.tzinfo is UTC
    deployment = store.get_deployment("llama")
    assert deployment is not None
    assert deployment.last_run_id == run.id


def test_run_of_a_deployment_not_yet_recorded(store: StateStore) -> None:
    run = store.start_run("new", "apply")

    assert store.get_run(run.id) == run
    assert store.get_deployment("new") is None


def test_unknown_run(store: StateStore) -> None:
    assert store.get_run(404) is None
    with pytest.raises(NotFoundError):
        store.finish_run(404, RunStatus.SUCCEEDED)


def test_finish_run_refuses_running(store: StateStore) -> None:
    run = store.start_run("llama", "apply")

    with pytest.raises(ValueError, match="final status"):
        store.finish_run(run.id, RunStatus.RUNNING)


def test_list_runs_newest_first_with_limit(store: StateStore) -> None:
    ids = []
    for _ in range(5):
        run = store.start_run("llama", "smoke")
        store.finish_run(run.id, RunStatus.SUCCEEDED)
        ids.append(run.id)
    store.start_run("other", "apply")

    assert [r.id for r in store.list_runs("llama")] == ids[::-1]
    assert [r.id for r in store.list_runs("llama", limit=2)] == ids[::-1][:2]


def test_step_round_trip(store: StateStore) -> None:
    run = store.start_run("llama", "apply")

    fetch = store.start_step(run.id, "fetch", "create")
    store.finish_step(fetch.id, StepStatus.DONE, "12 files")
    verify = store.start_step(run.id, "verify", "skip")
    store.finish_step(verify.id, StepStatus.SKIPPED, "skip: already verified")
    steps = store.list_steps(run.id)

    assert fetch.status is StepStatus.RUNNING
    assert [(s.name, s.action, s.status, s.message) for s in steps] == [
        ("fetch", "create", StepStatus.DONE, "12 files"),
        ("verify", "skip", StepStatus.SKIPPED, "skip: already verified"),
    ]
    assert all(s.finished_at is not None and s.finished_at.tzinfo is UTC for s in steps)


def test_step_errors(store: StateStore) -> None:
    run = store.start_run("llama", "apply")
    step = store.start_step(run.id, "fetch", "create")

    with pytest.raises(NotFoundError):
        store.start_step(404, "fetch", "create")
    with pytest.raises(NotFoundError):
        store.finish_step(404, StepStatus.DONE)
    with pytest.raises(ValueError, match="final status"):
        store.finish_step(step.id, StepStatus.RUNNING)


def test_failed_run_fails_its_running_steps(store: StateStore) -> None:
    run = store.start_run("llama", "apply")
    done = store.start_step(run.id, "fetch", "create")
    store.finish_step(done.id, StepStatus.DONE)
    store.start_step(run.id, "deploy", "create")

    store.finish_run(run.id, RunStatus.FAILED, "boom")

    assert [(s.status, s.message) for s in store.list_steps(run.id)] == [
        (StepStatus.DONE, None),
        (StepStatus.FAILED, "run failed"),
    ]


def test_event_round_trip(store: StateStore) -> None:
    run = store.start_run("llama", "apply")
    ts = 1_760_000_000.25
    progress = Event(EventKind.PROGRESS, "downloading", step="fetch", completed=3, total=10, ts=ts)
    log = Event(EventKind.LOG, "port 8000 free", data={"port": 8000, "ok": True, "why": None})

    store.record_event(run.id, progress)
    store.record_event(run.id, log)
    events = store.list_events(run.id)

    assert [(e.kind, e.step, e.message) for e in events] == [
        ("progress", "fetch", "downloading"),
        ("log", None, "port 8000 free"),
    ]
    assert events[0].ts == datetime.fromtimestamp(ts, UTC)
    assert (events[0].completed, events[0].total) == (3, 10)
    assert events[1].data == {"port": 8000, "ok": True, "why": None}


def test_smoke_results_are_the_checks_of_that_deployment_newest_first(store: StateStore) -> None:
    for name, answers in (("llama", ["Paris.", "It is Paris"]), ("other", ["Berlin"])):
        for answer in answers:
            run = store.start_run(name, "smoke")
            store.record_event(run.id, Event(EventKind.LOG, "smoke checks against x", step="smoke"))
            data = {"check": "chat: capital", "answer": answer, "passed": answer != "Berlin"}
            mark = "pass" if data["passed"] else "FAIL"
            message = f"{mark}: chat: capital -> {answer}"
            store.record_event(run.id, Event(EventKind.LOG, message, step="smoke", data=data))
            store.record_event(run.id, Event(EventKind.LOG, "pass: not a check", step="deploy"))
            store.finish_run(run.id, RunStatus.SUCCEEDED)

    found = store.smoke_results("llama")

    assert [e.data["answer"] for e in found] == ["It is Paris", "Paris."]
    assert [e.data["answer"] for e in store.smoke_results("other")] == ["Berlin"]
    assert store.smoke_results("llama", limit=1)[0].data["answer"] == "It is Paris"
    assert store.smoke_results("nobody") == []


def test_event_of_unknown_run(store: StateStore) -> None:
    with pytest.raises(NotFoundError):
        store.record_event(404, Event(EventKind.LOG, "lost"))


def test_reopening_sees_what_was_written(db_path: Path) -> None:
    with StateStore(f"sqlite:///{db_path}") as first:
        _deploy(first)
        run = first.start_run("llama", "apply")

    with StateStore(f"sqlite:///{db_path}") as second:
        assert second.get_deployment("llama") is not None
        assert second.get_run(run.id) == run


def test_two_threads_share_a_store(store: StateStore) -> None:
    run = store.start_run("llama", "apply")
    errors: list[BaseException] = []

    def work(tag: str) -> None:
        try:
            for i in range(40):
                step = store.start_step(run.id, f"{tag}-{i}", "check")
                store.record_event(run.id, Event(EventKind.LOG, f"{tag} {i}"))
                store.finish_step(step.id, StepStatus.DONE)
        except BaseException as error:  # surfaced by the assert below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(tag,)) for tag in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(store.list_steps(run.id)) == 80
    assert len(store.list_events(run.id)) == 80


def test_in_memory_store_is_shared_between_threads() -> None:
    with StateStore("sqlite://") as store:
        thread = threading.Thread(target=_deploy, args=(store,))
        thread.start()
        thread.join()

        assert store.get_deployment("llama") is not None


def test_statuses_know_whether_they_are_final() -> None:
    assert not RunStatus.RUNNING.finished
    assert RunStatus.INTERRUPTED.finished
    assert not StepStatus.RUNNING.finished
    assert StepStatus.SKIPPED.finished


def test_importing_state_does_not_load_sqlalchemy() -> None:
    code = "import sys, deployer.state; print('sqlalchemy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert result.stdout.strip() == "False", result.stderr


def test_racing_first_writes_of_one_deployment_make_one_record(store_url: str) -> None:
    """Several connections saving a new deployment at the same moment: one record, no
    duplicate-key error (on PostgreSQL, update-then-insert raced)."""
    stores = [StateStore(store_url) for _ in range(6)]
    start = threading.Barrier(len(stores))
    failures: list[BaseException] = []

    def save(store: StateStore, n: int) -> None:
        start.wait()
        try:
            for round_ in range(5):
                store.upsert_deployment(
                    f"race-{round_}",
                    target_kind="local",
                    status=DeploymentStatus.PENDING,
                    message=f"writer {n}",
                )
        except BaseException as exc:  # every failure is the finding
            failures.append(exc)

    threads = [threading.Thread(target=save, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert failures == []
        names = [d.name for d in stores[0].list_deployments()]
        assert sorted(names) == [f"race-{n}" for n in range(5)]
    finally:
        for store in stores:
            store.close()


def test_bench_results_are_kept_per_revision(tmp_path: Path) -> None:
    from deployer.secrets import register

    key = register("dk-secret-bench-key-1234")
    when = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)
    with StateStore(f"sqlite:///{tmp_path / 'state.db'}") as store:
        first = store.add_bench_result(
            "chat",
            run_id=None,
            manifest_digest="a" * 64,
            model_revision="repo@abc",
            status="complete",
            tool="guidellm 0.8.1",
            started_at=when,
            finished_at=when,
            result={"points": [{"value": 1}], "note": f"key {key}"},
        )
        second = store.add_bench_result(
            "chat",
            run_id=7,
            manifest_digest="b" * 64,
            model_revision=None,
            status="partial",
            tool="guidellm 0.8.1",
            started_at=when,
            finished_at=when,
            result={"points": []},
        )
        assert [r.id for r in store.list_bench_results("chat")] == [second.id, first.id]
        only = store.list_bench_results("chat", manifest_digest="a" * 64)
        assert [r.id for r in only] == [first.id]
        assert store.list_bench_results("other") == []
        got = store.get_bench_result(first.id)
        assert got is not None
        assert got.result["points"] == [{"value": 1}]
        assert got.result["note"] == "key ********"
        assert got.started_at == when
        assert got.status == "complete"
        assert store.get_bench_result(999) is None
