"""A run whose process died shows as interrupted at once, on every read, without a new apply."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from deployer.state import RunRecord, RunStatus, StateStore, StepStatus
from tests.unit.state.dbfiles import listing, make_v1_database, sha256

SqlRunner = Callable[..., None]

DOOMED = textwrap.dedent(
    """
    import sys, time
    from deployer.state import DeploymentStatus, StateStore

    store = StateStore(sys.argv[1])
    store.upsert_deployment("llama", target_kind="local", status=DeploymentStatus.DEPLOYING)
    run = store.start_run("llama", "apply")
    store.start_step(run.id, "fetch", "create")
    print(run.id, flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def killed_run(db_path: Path) -> tuple[int, int]:
    """(run id, pid) of an apply whose deployer process was SIGKILLed mid-step."""
    proc = subprocess.Popen(
        [sys.executable, "-c", DOOMED, f"sqlite:///{db_path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.communicate()[1]
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return int(line), proc.pid


@pytest.mark.timeout(60)
def test_a_killed_apply_reads_as_interrupted_at_once(
    db_path: Path, killed_run: tuple[int, int]
) -> None:
    run_id, pid = killed_run
    before, files = sha256(db_path), listing(db_path.parent)

    reader = StateStore.open_existing(f"sqlite:///{db_path}")
    assert reader is not None
    with reader:
        run = reader.get_run(run_id)
        listed = reader.list_runs("llama")
        steps = reader.list_steps(run_id)
        deployment = reader.get_deployment("llama")

    assert run is not None
    assert (run.status, run.error, run.pid) == (
        RunStatus.INTERRUPTED,
        f"interrupted (deployer process {pid} is gone)",
        pid,
    )
    assert listed == [run]
    assert [(s.name, s.status, s.message) for s in steps] == [
        ("fetch", StepStatus.FAILED, f"interrupted (deployer process {pid} is gone)")
    ]
    assert deployment is not None
    assert deployment.last_run_id == run_id
    # Worked out, not written: the read-only store changed nothing.
    assert sha256(db_path) == before
    assert listing(db_path.parent) == files


@pytest.mark.timeout(60)
def test_a_writable_store_sees_it_too_and_the_next_start_records_it(
    db_path: Path, killed_run: tuple[int, int]
) -> None:
    run_id, _ = killed_run

    with StateStore(f"sqlite:///{db_path}") as store:
        seen = store.get_run(run_id)
        fresh = store.start_run("llama", "apply")
        recorded = store.get_run(run_id)

    assert seen is not None
    assert seen.status is RunStatus.INTERRUPTED
    assert fresh.status is RunStatus.RUNNING
    assert recorded is not None
    assert (recorded.status, recorded.error) == (seen.status, seen.error)
    assert recorded.finished_at is not None


def test_a_reused_pid_is_not_the_runs_process(store: StateStore, sql: SqlRunner) -> None:
    run = store.start_run("llama", "apply")
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        # The run's pid now belongs to a live process that started long after the run's.
        sql("UPDATE runs SET pid = ?, process_created = 1000.0 WHERE id = ?", stranger.pid, run.id)

        seen = store.get_run(run.id)
        fresh = store.start_run("llama", "apply")
    finally:
        stranger.kill()
        stranger.wait()

    assert seen is not None
    assert (seen.status, seen.error) == (
        RunStatus.INTERRUPTED,
        f"interrupted (deployer process {stranger.pid} is gone)",
    )
    assert fresh.status is RunStatus.RUNNING


def test_a_live_run_of_another_process_reads_as_running(store: StateStore, sql: SqlRunner) -> None:
    run = store.start_run("llama", "apply")
    other = subprocess.Popen(["sleep", "30"])
    try:
        created = psutil.Process(other.pid).create_time()
        sql("UPDATE runs SET pid = ?, process_created = ? WHERE id = ?", other.pid, created, run.id)

        seen = store.get_run(run.id)
    finally:
        other.kill()
        other.wait()

    assert seen is not None
    assert (seen.status, seen.error) == (RunStatus.RUNNING, None)


def test_a_run_on_another_host_reads_as_recorded(
    store: StateStore, sql: SqlRunner, dead_pid: int
) -> None:
    run = store.start_run("llama", "apply")
    store.start_step(run.id, "fetch", "create")
    sql("UPDATE runs SET host = 'gpu-box-7', pid = ? WHERE id = ?", dead_pid, run.id)

    seen = store.get_run(run.id)

    assert seen is not None
    assert seen.status is RunStatus.RUNNING
    assert [s.status for s in store.list_steps(run.id)] == [StepStatus.RUNNING]


def test_finished_runs_read_as_recorded(store: StateStore, sql: SqlRunner, dead_pid: int) -> None:
    run = store.start_run("llama", "apply")
    store.finish_run(run.id, RunStatus.SUCCEEDED)
    sql("UPDATE runs SET pid = ? WHERE id = ?", dead_pid, run.id)

    seen = store.get_run(run.id)

    assert seen is not None
    assert (seen.status, seen.error) == (RunStatus.SUCCEEDED, None)


def test_a_deployer_01_run_without_a_start_time(tmp_path: Path) -> None:
    """Runs recorded before the start time was: the pid alone decides."""
    path = make_v1_database(tmp_path / "state.db")
    url = f"sqlite:///{path}"
    sleeper = subprocess.Popen(["sleep", "30"])
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO runs VALUES (2, 'llama', 'apply', 'running', '2025-06-02 10:00:00.000000',"
        " NULL, NULL, ?, ?)",
        (sleeper.pid, socket.gethostname()),
    )
    conn.commit()
    conn.close()
    try:
        alive = _read_run(url, 2)
    finally:
        sleeper.kill()
        sleeper.wait()
    dead = _read_run(url, 2)

    assert alive is not None
    assert (alive.status, alive.process_created) == (RunStatus.RUNNING, None)
    assert dead is not None
    assert dead.status is RunStatus.INTERRUPTED


def _read_run(url: str, run_id: int) -> RunRecord | None:
    reader = StateStore.open_existing(url)
    assert reader is not None
    with reader:
        return reader.get_run(run_id)
