"""A serving engine's pinned threads, let go while a new engine starts beside it.

vLLM's CPU build pins its worker's OpenMP threads to cores (``VLLM_CPU_OMP_THREADS_BIND=auto``:
core 0 of this machine's two). Every new process that imports torch then runs MKL's core count
(``MKL_Read_ThreadENV_Count_Cores``), which pins the process to each allowed CPU in turn. On
these machines' kernel a process of another session pinned to a core that a serving engine's
pinned, busy thread holds can get no CPU at all for minutes (measured: 0.00 s of 5 s for a
spinning process pinned to core 0 beside a loaded engine; the same spinner got its fair share
beside an unpinned one), so the new engine's start stalled at that step until the readiness
timeout. While a surge starts its new engine, the serving engine's threads may run on any
allowed CPU; a rollback pins them back as they were. Linux only: elsewhere nothing is pinned
this way and nothing is done.
"""

from __future__ import annotations

import contextlib
import os

import psutil

#: (process id, thread id) -> the CPUs the thread was pinned to.
Pinned = dict[tuple[int, int], frozenset[int]]


def unpin_tree(root: psutil.Process) -> Pinned:
    """Let every thread of ``root`` and its descendants run on every CPU this process may use;
    returns the threads that were pinned narrower, with their CPUs, for :func:`repin`."""
    if not hasattr(os, "sched_setaffinity"):
        return {}
    allowed = frozenset(os.sched_getaffinity(0))
    pinned: Pinned = {}
    with contextlib.suppress(psutil.Error):
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                for thread in process.threads():
                    with contextlib.suppress(OSError):
                        cpus = frozenset(os.sched_getaffinity(thread.id))
                        if cpus != allowed:
                            os.sched_setaffinity(thread.id, allowed)
                            pinned[(process.pid, thread.id)] = cpus
    return pinned


def repin(pinned: Pinned) -> None:
    """Pin the threads :func:`unpin_tree` let go back to their CPUs (those still running in
    the same process: a thread id the system gave again elsewhere is left alone)."""
    for (process_id, thread_id), cpus in pinned.items():
        if os.path.exists(f"/proc/{process_id}/task/{thread_id}"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(thread_id, cpus)
