"""Read-only opening: status, history and logs create nothing, write nothing, and read files the
user may only read."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deployer.errors import StateError
from deployer.events import Event, EventKind
from deployer.state import DeploymentStatus, RunStatus, StateStore, StepStatus
from tests.unit.state.dbfiles import listing, make_foreign_database, make_v1_database, sha256


def _populate(path: Path) -> None:
    with StateStore(f"sqlite:///{path}") as store:
        store.upsert_deployment("llama", target_kind="local", status=DeploymentStatus.HEALTHY)
        run = store.start_run("llama", "apply")
        store.record_event(run.id, Event(EventKind.LOG, "ready"))
        store.finish_run(run.id, RunStatus.SUCCEEDED)


def test_a_home_that_does_not_exist_is_nothing_and_stays_missing(tmp_path: Path) -> None:
    home = tmp_path / "home"

    assert StateStore.open_existing(f"sqlite:///{home / 'state.db'}") is None
    assert StateStore.open_existing(f"sqlite:///{home / 'deeper' / 'state.db'}") is None

    assert listing(tmp_path) == []


def test_a_missing_file_in_an_existing_folder_is_nothing(tmp_path: Path) -> None:
    assert StateStore.open_existing(f"sqlite:///{tmp_path / 'state.db'}") is None

    assert listing(tmp_path) == []


def test_an_empty_file_is_nothing_and_stays_empty(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()

    assert StateStore.open_existing(f"sqlite:///{path}") is None

    assert path.read_bytes() == b""
    assert listing(tmp_path) == ["state.db"]


def test_in_memory_is_nothing() -> None:
    assert StateStore.open_existing("sqlite://") is None


def test_reading_changes_nothing_on_disk(db_path: Path) -> None:
    _populate(db_path)
    before, files = sha256(db_path), listing(db_path.parent)

    store = StateStore.open_existing(f"sqlite:///{db_path}")
    assert store is not None
    with store:
        assert store.readonly
        assert [d.name for d in store.list_deployments()] == ["llama"]
        runs = store.list_runs("llama")
        assert [r.status for r in runs] == [RunStatus.SUCCEEDED]
        assert [e.message for e in store.list_events(runs[0].id)] == ["ready"]
        assert store.list_steps(runs[0].id) == []

    assert sha256(db_path) == before
    assert listing(db_path.parent) == files == ["state.db"]  # no -wal, no -shm


def test_every_write_of_a_readonly_store_is_refused(db_path: Path) -> None:
    _populate(db_path)
    before = sha256(db_path)
    store = StateStore.open_existing(f"sqlite:///{db_path}")
    assert store is not None
    writes: list[Callable[[], object]] = [
        lambda: store.upsert_deployment("x", target_kind="local", status=DeploymentStatus.PENDING),
        lambda: store.set_status("llama", DeploymentStatus.FAILED),
        lambda: store.start_run("llama", "apply"),
        lambda: store.finish_run(1, RunStatus.FAILED),
        lambda: store.start_step(1, "fetch", "create"),
        lambda: store.finish_step(1, StepStatus.DONE),
        lambda: store.record_event(1, Event(EventKind.LOG, "x")),
    ]

    with store:
        for write in writes:
            with pytest.raises(StateError, match="opened read-only"):
                write()

    assert sha256(db_path) == before


def test_a_reader_sees_what_a_live_writer_commits(db_path: Path) -> None:
    with StateStore(f"sqlite:///{db_path}") as writer:
        writer.upsert_deployment("a", target_kind="local", status=DeploymentStatus.PENDING)
        files = listing(db_path.parent)
        reader = StateStore.open_existing(f"sqlite:///{db_path}")
        assert reader is not None
        with reader:
            assert [d.name for d in reader.list_deployments()] == ["a"]
            writer.upsert_deployment("b", target_kind="local", status=DeploymentStatus.PENDING)
            assert [d.name for d in reader.list_deployments()] == ["a", "b"]
        assert listing(db_path.parent) == files


def test_a_reader_sees_a_database_that_was_closed_after_it_opened(db_path: Path) -> None:
    _populate(db_path)
    reader = StateStore.open_existing(f"sqlite:///{db_path}")
    assert reader is not None
    with reader:
        with StateStore(f"sqlite:///{db_path}") as writer:
            writer.upsert_deployment("later", target_kind="local", status=DeploymentStatus.PENDING)
        assert [d.name for d in reader.list_deployments()] == ["later", "llama"]


def test_another_applications_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = make_foreign_database(tmp_path / "app.db", wal=True)
    before = sha256(path)

    with pytest.raises(StateError, match="holds other tables \\(users\\)") as caught:
        StateStore.open_existing(f"sqlite:///{path}")

    assert caught.value.hint is not None
    assert sha256(path) == before
    assert listing(tmp_path) == ["app.db"]


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database\n" * 200)
    before = sha256(path)

    with pytest.raises(StateError) as caught:
        StateStore.open_existing(f"sqlite:///{path}")

    assert str(path) in caught.value.message
    assert caught.value.hint is not None
    assert "move it aside" in caught.value.hint
    assert sha256(path) == before


def test_a_folder_where_the_file_should_be(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()

    with pytest.raises(StateError, match="is not a file"):
        StateStore.open_existing(f"sqlite:///{tmp_path / 'state.db'}")


def test_a_database_from_a_newer_deployer_is_refused(db_path: Path) -> None:
    StateStore(f"sqlite:///{db_path}").close()
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE deployer_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    with pytest.raises(StateError, match="schema version 99"):
        StateStore.open_existing(f"sqlite:///{db_path}")


def test_a_deployer_01_database_is_read_as_it_is(tmp_path: Path) -> None:
    path = make_v1_database(tmp_path / "state.db")
    before = sha256(path)

    store = StateStore.open_existing(f"sqlite:///{path}")
    assert store is not None
    with store:
        runs = store.list_runs("llama")
        deployment = store.get_deployment("llama")

    assert [(r.id, r.status, r.process_created) for r in runs] == [(1, RunStatus.SUCCEEDED, None)]
    assert deployment is not None
    assert deployment.last_run_id == 1
    assert sha256(path) == before
    assert listing(tmp_path) == ["state.db"]


# --- files the user may only read ---------------------------------------------------------------

READER = """
import json, sys
from deployer.state import StateStore

store = StateStore.open_existing(sys.argv[1])
print(json.dumps(None if store is None else [d.name for d in store.list_deployments()]))
"""


def _read_as_a_user_who_may_not_write(path: Path) -> object:
    """``open_existing(path)``'s deployments, read by a process that may not write ``path``.

    As root (who ignores permission bits) the reading runs in a child that became ``nobody``;
    otherwise the permission bits the caller set apply to this process already.
    """
    url = f"sqlite:///{path}"
    if os.geteuid() != 0:
        store = StateStore.open_existing(url)
        return None if store is None else [d.name for d in store.list_deployments()]
    nobody = pwd.getpwnam("nobody")
    # Load every module the child needs (it cannot read /root), on a copy: root may write it.
    warm = path.parent.with_name(path.parent.name + "-warm")
    shutil.copytree(path.parent, warm)
    try:
        StateStore.open_existing(f"sqlite:///{warm / path.name}")
    finally:
        shutil.rmtree(warm)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                store = StateStore.open_existing(url)
                names = None if store is None else [d.name for d in store.list_deployments()]
                answer: object = {"names": names}
            except Exception as error:
                answer = {"error": f"{type(error).__name__}: {error}"}
            os.write(write_end, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = json.loads(pipe.read() or b'{"error": "child died"}')
    os.waitpid(child, 0)
    assert "error" not in answer, answer
    return answer["names"]


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder ``nobody`` can reach (pytest's own are root's only)."""
    folder = Path(tempfile.mkdtemp(prefix="deployer-ro-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(folder)


def _seal(folder: Path) -> None:
    for path in folder.iterdir():
        path.chmod(0o444)
    folder.chmod(0o555)


def test_a_readonly_file_in_a_readonly_folder(shared_tmp: Path, db_path: Path) -> None:
    _populate(db_path)
    home = shared_tmp / "home"
    home.mkdir()
    shutil.copy2(db_path, home / "state.db")
    _seal(home)
    before = sha256(home / "state.db")

    assert _read_as_a_user_who_may_not_write(home / "state.db") == ["llama"]
    assert _read_as_a_user_who_may_not_write(home / "missing.db") is None

    assert sha256(home / "state.db") == before
    assert listing(home) == ["state.db"]


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from deployer.state import DeploymentStatus, StateStore

    store = StateStore(sys.argv[1])
    store.upsert_deployment("llama", target_kind="local", status=DeploymentStatus.DEPLOYING)
    print("written", flush=True)
    time.sleep(60)
    """
)


def test_a_readonly_copy_of_a_killed_writers_database(shared_tmp: Path, db_path: Path) -> None:
    """-wal and -shm are there but may not be written: read as they are, nothing changed."""
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, f"sqlite:///{db_path}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "written"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert listing(db_path.parent) == ["state.db", "state.db-shm", "state.db-wal"]
    home = shared_tmp / "home"
    shutil.copytree(db_path.parent, home)
    _seal(home)
    before = {name: sha256(home / name) for name in listing(home)}

    names = _read_as_a_user_who_may_not_write(home / "state.db")

    assert names == ["llama"]  # the row is in the -wal only: SQLite reads a read-only -shm
    assert {name: sha256(home / name) for name in listing(home)} == before
