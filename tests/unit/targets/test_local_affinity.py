"""A serving engine's pinned threads are let go while a new engine starts, and pinned back on a
rollback: real processes and threads, real sched_setaffinity (these machines have two CPUs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from deployer.targets.local import affinity

# A parent whose main thread is pinned to the first CPU, with a child whose second thread is too
# (as vLLM's worker pins its OpenMP threads), and one thread left free.
TREE = """
import os, subprocess, sys, threading, time
first = min(os.sched_getaffinity(0))
if sys.argv[1] == "parent":
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], "child", sys.argv[2]])
    os.sched_setaffinity(0, {first})
    print(child.pid, flush=True)
    time.sleep(60)
else:
    def pinned():
        os.sched_setaffinity(0, {first})
        time.sleep(60)
    threading.Thread(target=pinned, daemon=True).start()
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    time.sleep(60)
"""


@pytest.fixture
def tree() -> Iterator[psutil.Process]:
    proc = subprocess.Popen(
        [sys.executable, "-c", TREE, "parent", TREE], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    child = psutil.Process(int(proc.stdout.readline()))
    deadline = time.monotonic() + 10
    while len(child.threads()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the pinned thread pins itself
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        child.kill()
        proc.wait()


def masks(root: psutil.Process) -> dict[int, frozenset[int]]:
    return {
        thread.id: frozenset(os.sched_getaffinity(thread.id))
        for process in [root, *root.children(recursive=True)]
        for thread in process.threads()
    }


def test_pinned_threads_are_let_go_and_pinned_back(tree: psutil.Process) -> None:
    allowed = frozenset(os.sched_getaffinity(0))
    assert len(allowed) >= 2, "these machines have two CPUs or more"
    first = frozenset({min(allowed)})
    before = masks(tree)
    assert sorted(before.values(), key=sorted).count(first) == 2, before

    pinned = affinity.unpin_tree(tree)

    assert set(pinned.values()) == {first}
    assert len(pinned) == 2
    assert set(masks(tree).values()) == {allowed}, "every thread may run on every CPU"

    affinity.repin(pinned)

    assert masks(tree) == before


def test_a_tree_with_nothing_pinned_is_left_as_it_is() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert affinity.unpin_tree(psutil.Process(proc.pid)) == {}
    finally:
        proc.kill()
        proc.wait()


def test_pinning_back_a_thread_that_ended_does_nothing() -> None:
    affinity.repin({(2**22 + 1, 2**22 + 1): frozenset({0})})  # no such process: no error
