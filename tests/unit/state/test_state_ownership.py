"""The store refuses what is not its own, makes an empty database its own, adopts deployer 0.1's."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import psutil
import pytest

from deployer.errors import StateError
from deployer.state import DeploymentStatus, RunStatus, StateStore, StepStatus
from tests.unit.state.dbfiles import (
    listing,
    make_foreign_database,
    make_v1_database,
    query,
    sha256,
)

DPLY = 0x44504C59


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
def test_another_applications_file_is_refused_and_left_untouched(tmp_path: Path, wal: bool) -> None:
    path = make_foreign_database(tmp_path / "app.db", wal=wal)
    before, files = sha256(path), listing(tmp_path)

    with pytest.raises(StateError) as caught:
        StateStore(f"sqlite:///{path}")

    assert caught.value.message == (
        f"state database {path} holds other tables (users) and is not a deployer state database"
    )
    assert caught.value.hint is not None
    assert "--state-url or DEPLOYER_STATE_URL at an empty or deployer database" in caught.value.hint
    assert sha256(path) == before
    assert listing(tmp_path) == files == ["app.db"]  # no -wal, -shm or -journal left beside it
    assert query(path, "SELECT name FROM sqlite_master") == [("users",)]
    assert query(path, "PRAGMA journal_mode") == [("wal" if wal else "delete",)]


def test_the_message_lists_a_few_of_many_tables(tmp_path: Path) -> None:
    path = make_foreign_database(tmp_path / "app.db", extra_tables=9)

    with pytest.raises(StateError) as caught:
        StateStore(f"sqlite:///{path}")

    assert "holds other tables (t1, t2, t3, t4, t5, ...)" in caught.value.message
    assert "\n" not in caught.value.message


def test_a_file_marked_as_another_applications_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.commit()
    conn.close()
    before = sha256(path)

    with pytest.raises(StateError, match="belongs to another application"):
        StateStore(f"sqlite:///{path}")

    assert sha256(path) == before


def test_deployer_table_names_with_other_columns_are_not_adopted(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    for name in ("deployments", "runs", "steps", "events"):
        conn.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, payload TEXT)")
    conn.commit()
    conn.close()
    before = sha256(path)

    with pytest.raises(StateError, match="not a deployer state database"):
        StateStore(f"sqlite:///{path}")

    assert sha256(path) == before


def test_an_empty_database_becomes_deployers(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()

    StateStore(f"sqlite:///{path}").close()

    assert query(path, "PRAGMA application_id") == [(DPLY,)]
    assert dict(query(path, "SELECT key, value FROM deployer_meta")) == {
        "schema_version": "8",
        "application": "deployer",
    }
    assert query(path, "PRAGMA journal_mode") == [("wal",)]


def test_a_new_database_is_marked(db_path: Path) -> None:
    StateStore(f"sqlite:///{db_path}").close()

    assert query(db_path, "PRAGMA application_id") == [(DPLY,)]
    assert ("application", "deployer") in query(db_path, "SELECT key, value FROM deployer_meta")


def test_reopening_a_current_database_writes_nothing(db_path: Path) -> None:
    with StateStore(f"sqlite:///{db_path}") as store:
        store.upsert_deployment("llama", target_kind="local", status=DeploymentStatus.HEALTHY)
    before = sha256(db_path)

    StateStore(f"sqlite:///{db_path}").close()

    assert sha256(db_path) == before


@pytest.mark.parametrize("meta", [True, False], ids=["v1", "v1-without-meta"])
def test_a_deployer_01_database_is_adopted_with_its_data(tmp_path: Path, meta: bool) -> None:
    path = make_v1_database(tmp_path / "state.db", meta=meta)

    with StateStore(f"sqlite:///{path}") as store:
        deployment = store.get_deployment("llama")
        runs = store.list_runs("llama")
        steps = store.list_steps(1)
        events = store.list_events(1)
        fresh = store.start_run("llama", "apply")

    assert deployment is not None
    assert (deployment.status, deployment.endpoint, deployment.last_run_id) == (
        DeploymentStatus.HEALTHY,
        "http://127.0.0.1:8000/v1",
        1,
    )
    assert [(r.id, r.status, r.pid, r.host, r.process_created) for r in runs] == [
        (1, RunStatus.SUCCEEDED, 4242, "old-box", None)
    ]
    assert [(s.name, s.status, s.message) for s in steps] == [
        ("fetch", StepStatus.DONE, "12 files")
    ]
    assert [(e.message, e.data) for e in events] == [("hello", {"n": 1})]
    assert fresh.id == 2
    assert fresh.process_created == pytest.approx(psutil.Process().create_time(), abs=1)
    assert query(path, "PRAGMA application_id") == [(DPLY,)]
    assert dict(query(path, "SELECT key, value FROM deployer_meta")) == {
        "schema_version": "8",
        "application": "deployer",
    }
    columns = [row[1] for row in query(path, "PRAGMA table_info(runs)")]
    assert columns[-1] == "process_created"
    assert query(path, "PRAGMA integrity_check") == [("ok",)]


def test_run_records_its_process(store: StateStore) -> None:
    run = store.start_run("llama", "apply")

    assert run.pid == os.getpid()
    assert run.host == socket.gethostname()
    assert run.process_created == pytest.approx(psutil.Process().create_time(), abs=0.01)
    assert store.get_run(run.id) == run
