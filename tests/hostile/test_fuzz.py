"""Fuzz deployer's input files: mutations of the real examples never break the promise.

The promise (the "hostile input" issue): every bad input gives exit 1 with a one-line
``error: ...`` (and hints), never a traceback, never exit 70 ("internal error"), within 20 s and
2 GiB, writing nothing outside the state folder; a manifest validate accepts plans without an
internal error. Each case runs ``deployer validate`` and ``deployer plan`` on a mutated manifest,
or ``deployer plan`` of an SSH manifest whose inventory is mutated (plan reads the inventory
without contacting a host), of a Kubernetes manifest whose lockfile is mutated, or of a local
manifest whose model folder's ``config.json`` is mutated. See ``fuzzing.py`` for the mutations.

Environment:

- ``DEPLOYER_FUZZ_CASES``: cases in all, shared among the four targets 70/16/6/8 (default 1500:
  about two minutes on two cores; each kind of failure adds the time of its confirmation, and a
  hang 20 s a case);
- ``DEPLOYER_FUZZ_SEED``: the seed (default fixed, so CI runs the same cases every time);
- ``DEPLOYER_FUZZ_RUNNER``: ``fork`` (default: a fork server screens; a fresh ``python -m
  deployer`` reruns two failing cases of each symptom, and its verdict is the one reported) or
  ``subprocess`` (every command a fresh interpreter, about ten times slower);
- ``DEPLOYER_FUZZ_FAILURES``: where failing cases are written, a folder per case (default:
  ``deployer-fuzz-failures/`` in the system's temporary folder; each target's run first empties
  its own subfolder).

A failure's message lists each kind of failure once, with its symptom, the first case's
reproducer folder (``CASE.txt`` there says what was mutated and how to rerun it) and the seed,
target and index that regenerate it: ``benchmarks/fuzz_manifests.py --seed S --target T --case
N --write DIR``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.fuzzing import (
    DEFAULT_SEED,
    TARGETS,
    Case,
    baseline_cases,
    fuzz,
    run_case,
    split,
)
from tests.hostile.runners import ForkServer, runner_kind, symptom

CASES = int(os.environ.get("DEPLOYER_FUZZ_CASES", "1500"))
SEED = int(os.environ.get("DEPLOYER_FUZZ_SEED", str(DEFAULT_SEED)))
WORKERS = 2


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("target", list(TARGETS))
def test_mutated_inputs_keep_the_promise(target: str, tmp_path: Path) -> None:
    default = Path(tempfile.gettempdir()) / "deployer-fuzz-failures"
    failures = Path(os.environ.get("DEPLOYER_FUZZ_FAILURES", default)) / target
    shutil.rmtree(failures, ignore_errors=True)
    count = split(CASES)[target]
    report = fuzz(
        SEED,
        {target: count},
        tmp_path / "scratch",
        failures,
        workers=WORKERS,
        runner=runner_kind(),
    )
    assert len(report.results) == count
    if report.failed:
        pytest.fail(report.failure_message(), pytrace=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    server = ForkServer(tmp_path_factory.mktemp("server"))
    yield server
    server.close()


@pytest.mark.parametrize("case", baseline_cases(), ids=lambda c: f"{c.target}-{c.template}")
def test_unmutated_examples_work(case: Case, tmp_path: Path, server: ForkServer) -> None:
    """What the mutations start from works, so a failure above is the mutation's doing."""
    result = run_case(case, tmp_path / "case", server)
    for outcome in result.outcomes:
        assert outcome.code == 0, f"deployer {' '.join(outcome.command)}: {symptom(outcome)}"
