"""What a user would check on disk: no secret in the file, bad files named, kills survived."""

from __future__ import annotations

import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from deployer import secrets
from deployer.errors import StateError
from deployer.events import Event, EventKind
from deployer.state import DeploymentStatus, RunStatus, StateStore, StepStatus

SECRET = "hf_supersecret123"


def _raw_bytes(db_path: Path) -> bytes:
    files = [db_path, db_path.with_name(db_path.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


@pytest.mark.usefixtures("isolated_secrets")
def test_registered_secret_never_reaches_the_file(store: StateStore, db_path: Path) -> None:
    secrets.register(SECRET)
    leak = f"token={SECRET}"
    store.upsert_deployment(
        "llama",
        target_kind="local",
        status=DeploymentStatus.FAILED,
        manifest_path=f"/tmp/{SECRET}/m.yaml",
        endpoint=f"http://x/?key={SECRET}",
        served_model_name=leak,
        message=leak,
    )
    store.set_status("llama", DeploymentStatus.UNHEALTHY, leak)
    run = store.start_run("llama", "apply")
    step = store.start_step(run.id, f"fetch {SECRET}", "create")
    store.finish_step(step.id, StepStatus.FAILED, leak)
    event = Event(EventKind.LOG, leak, step=leak, data={"header": f"Bearer {SECRET}", SECRET: 1})
    store.record_event(run.id, event)
    store.finish_run(run.id, RunStatus.FAILED, leak)
    store.upsert_deployment("plain_marker_42", target_kind="local", status=DeploymentStatus.PENDING)

    raw = _raw_bytes(db_path)
    assert b"plain_marker_42" in raw  # the scan does see what is written
    assert secrets.MASK.encode() in raw
    assert SECRET.encode() not in raw
    assert SECRET not in repr(store.list_events(run.id))
    store.close()
    assert SECRET.encode() not in _raw_bytes(db_path)


def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    garbage = b"this is not a database\n" * 200
    path.write_bytes(garbage)

    with pytest.raises(StateError) as caught:
        StateStore(f"sqlite:///{path}")

    assert str(path) in caught.value.message
    assert caught.value.hint is not None
    assert str(path) in caught.value.hint
    assert "move it aside" in caught.value.hint
    assert path.read_bytes() == garbage


def test_folder_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("a file where the folder should be")
    path = blocker / "state.db"

    with pytest.raises(StateError) as caught:
        StateStore(f"sqlite:///{path}")

    assert caught.value.hint is not None
    assert str(path) in caught.value.hint


def test_new_files_are_owner_only(db_path: Path) -> None:
    StateStore(f"sqlite:///{db_path}").close()

    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_sqlite_is_in_wal_mode(store: StateStore, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_database_from_a_newer_deployer_is_refused(db_path: Path, sql: Callable[..., None]) -> None:
    StateStore(f"sqlite:///{db_path}").close()
    sql("UPDATE deployer_meta SET value = '99' WHERE key = 'schema_version'")

    with pytest.raises(StateError, match="schema version 99") as caught:
        StateStore(f"sqlite:///{db_path}")

    assert caught.value.hint is not None
    assert "upgrade deployer" in caught.value.hint


def test_bad_url() -> None:
    with pytest.raises(StateError, match="not a database URL"):
        StateStore("not a url")


WRITER = textwrap.dedent(
    """
    import sys
    from deployer.events import Event, EventKind
    from deployer.state import DeploymentStatus, RunStatus, StateStore, StepStatus

    store = StateStore(sys.argv[1])
    i = 0
    while True:
        store.upsert_deployment(
            "llama", target_kind="local", status=DeploymentStatus.DEPLOYING, message=f"w{i}"
        )
        run = store.start_run("llama", "apply")
        step = store.start_step(run.id, "fetch", "create")
        for n in range(5):
            store.record_event(run.id, Event(EventKind.LOG, f"line {i}.{n}", data={"n": n}))
        store.finish_step(step.id, StepStatus.DONE)
        store.finish_run(run.id, RunStatus.SUCCEEDED)
        i += 1
        print(i, flush=True)
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("rounds_before_kill", [5, 23])
def test_sigkill_during_writes_leaves_a_readable_database(
    db_path: Path, rounds_before_kill: int
) -> None:
    url = f"sqlite:///{db_path}"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    completed = 0
    while completed < rounds_before_kill:
        line = writer.stdout.readline()
        assert line, f"writer exited early: {writer.communicate()[1]}"
        completed = int(line)
    writer.send_signal(signal.SIGKILL)  # mid-loop: it is writing the next round by now
    writer.communicate()
    assert writer.returncode == -signal.SIGKILL

    with StateStore(url) as store:
        deployment = store.get_deployment("llama")
        runs = store.list_runs("llama", limit=1000)
        succeeded = [r for r in runs if r.status is RunStatus.SUCCEEDED]
        events = [e for r in succeeded for e in store.list_events(r.id)]
        fresh = store.start_run("llama", "apply")
        runs_after = store.list_runs("llama", limit=1000)

    assert deployment is not None
    assert deployment.status is DeploymentStatus.DEPLOYING
    assert len(succeeded) >= completed
    assert len(events) == 5 * len(succeeded)
    assert [r.status for r in runs_after if r.id != fresh.id and not r.status.finished] == []
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
