"""Fixtures for the state store tests: real SQLite files in a temporary folder, and a real
PostgreSQL (a throwaway cluster started once per session, a database per test).

A test that takes ``store`` (and neither ``db_path`` nor ``tmp_path``: those are about SQLite
files) in a module of :data:`BACKEND_INDEPENDENT` runs on both backends; ``sql`` then changes
the PostgreSQL database.
"""

from __future__ import annotations

import inspect
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from deployer import secrets
from deployer.state import StateStore
from tests.support.postgres import Cluster, start_cluster

#: Modules whose ``store`` tests hold on every backend.
BACKEND_INDEPENDENT = {
    "test_state_store",
    "test_state_runs",
    "test_state_liveness",
    "test_state_migrations",
    "test_state_samples",
}

BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_url" not in metafunc.fixturenames:
        return
    own = set(inspect.signature(metafunc.function).parameters)
    module = metafunc.module.__name__.rpartition(".")[2]
    if module in BACKEND_INDEPENDENT and not own & {"db_path", "tmp_path"}:
        metafunc.parametrize("backend", BACKENDS)


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A PostgreSQL cluster on a loopback port, for the whole session."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of ``backend``: a new SQLite file, or a new PostgreSQL database."""
    if backend == "postgresql":
        cluster: Cluster = request.getfixturevalue("postgres")
        return cluster.new_database()
    return f"sqlite:///{request.getfixturevalue('db_path')}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "state.db"


@pytest.fixture
def store(store_url: str) -> Iterator[StateStore]:
    with StateStore(store_url) as opened:
        yield opened


@pytest.fixture
def isolated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets registered by the test are forgotten afterwards."""
    monkeypatch.setattr(secrets, "_values", set())


SqlRunner = Callable[..., None]


@pytest.fixture
def sql(store_url: str, request: pytest.FixtureRequest) -> SqlRunner:
    """Change the database behind the store's back, as another process would."""
    if store_url.startswith("postgresql"):
        dsn = store_url.replace("postgresql+psycopg", "postgresql", 1)

        def execute_pg(statement: str, *params: object) -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(statement.replace("?", "%s"), params)

        return execute_pg
    db_path: Path = request.getfixturevalue("db_path")

    def execute(statement: str, *params: object) -> None:
        conn = sqlite3.connect(db_path, timeout=10)
        try:
            conn.execute(statement, params)
            conn.commit()
        finally:
            conn.close()

    return execute


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
