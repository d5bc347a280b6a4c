"""Runs left behind by dead processes converge; runs of live ones block a second deployer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from deployer.errors import ConcurrentRunError
from deployer.state import RunStatus, StateStore, StepStatus

SqlRunner = Callable[..., None]


def test_run_of_a_dead_process_is_interrupted_by_the_next_start(
    store: StateStore, sql: SqlRunner, dead_pid: int
) -> None:
    stale = store.start_run("llama", "apply")
    done = store.start_step(stale.id, "fetch", "create")
    store.finish_step(done.id, StepStatus.DONE)
    store.start_step(stale.id, "deploy", "create")
    pid = dead_pid
    assert not psutil.pid_exists(pid)
    sql("UPDATE runs SET pid = ? WHERE id = ?", pid, stale.id)

    fresh = store.start_run("llama", "apply")

    interrupted = store.get_run(stale.id)
    assert interrupted is not None
    assert interrupted.status is RunStatus.INTERRUPTED
    assert interrupted.error == f"interrupted (deployer process {pid} is gone)"
    assert interrupted.finished_at is not None
    assert [(s.name, s.status) for s in store.list_steps(stale.id)] == [
        ("fetch", StepStatus.DONE),
        ("deploy", StepStatus.FAILED),
    ]
    assert fresh.status is RunStatus.RUNNING
    assert fresh.pid == os.getpid()


def test_run_of_a_live_process_blocks_a_second_run(store: StateStore, sql: SqlRunner) -> None:
    other = store.start_run("llama", "apply")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        # The run as that process would have recorded it: its pid and its start time.
        created = psutil.Process(sleeper.pid).create_time()
        sql(
            "UPDATE runs SET pid = ?, process_created = ? WHERE id = ?",
            sleeper.pid,
            created,
            other.id,
        )

        with pytest.raises(ConcurrentRunError, match=f"process {sleeper.pid}") as caught:
            store.start_run("llama", "destroy")

        assert caught.value.hint is not None
        assert str(sleeper.pid) in caught.value.hint
        assert [r.id for r in store.list_runs("llama")] == [other.id]
        assert store.start_run("another", "apply").status is RunStatus.RUNNING
    finally:
        sleeper.kill()
        sleeper.wait()

    # Once that process is gone, the next start converges.
    store.start_run("llama", "destroy")
    stale = store.get_run(other.id)
    assert stale is not None
    assert stale.status is RunStatus.INTERRUPTED


def test_run_on_another_host_blocks_a_second_run(store: StateStore, sql: SqlRunner) -> None:
    other = store.start_run("llama", "apply")
    sql("UPDATE runs SET host = 'gpu-box-7', pid = 1 WHERE id = ?", other.id)

    with pytest.raises(ConcurrentRunError, match="on host gpu-box-7"):
        store.start_run("llama", "apply")


def test_own_running_run_does_not_block(store: StateStore) -> None:
    outer = store.start_run("llama", "apply")

    inner = store.start_run("llama", "smoke")

    runs = {r.id: r.status for r in store.list_runs("llama")}
    assert runs == {outer.id: RunStatus.RUNNING, inner.id: RunStatus.RUNNING}


def test_finished_runs_of_dead_processes_are_left_alone(
    store: StateStore, sql: SqlRunner, dead_pid: int
) -> None:
    old = store.start_run("llama", "apply")
    store.finish_run(old.id, RunStatus.SUCCEEDED)
    sql("UPDATE runs SET pid = ? WHERE id = ?", dead_pid, old.id)

    store.start_run("llama", "apply")

    again = store.get_run(old.id)
    assert again is not None
    assert (again.status, again.error) == (RunStatus.SUCCEEDED, None)


CONTENDER = textwrap.dedent(
    """
    import os, sys, time
    from deployer.errors import ConcurrentRunError
    from deployer.state import StateStore

    store = StateStore(sys.argv[1])
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.001)
    try:
        store.start_run("llama", "apply")
        print("started", flush=True)
    except ConcurrentRunError:
        print("busy", flush=True)
    sys.stdin.read()  # stay alive, so the run stays live, until the test lets go
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_only_one_of_several_racing_processes_starts(store_url: str, tmp_path: Path) -> None:
    StateStore(store_url).close()
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, store_url, str(go)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        time.sleep(1.0)  # let every contender open the store and wait at the line
        go.touch()
        outcomes = sorted(p.stdout.readline().strip() for p in procs if p.stdout)
    finally:
        for proc in procs:
            proc.communicate(timeout=30)

    assert outcomes == ["busy", "busy", "busy", "started"], [p.stderr for p in procs]
