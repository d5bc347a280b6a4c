"""SQLite files for the state tests: deployer 0.1's databases, other applications' files."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

#: The schema exactly as deployer 0.1 (state schema version 1) created it.
SCHEMA_V1 = """
CREATE TABLE deployer_meta (
    "key" VARCHAR(64) NOT NULL,
    value TEXT NOT NULL,
    CONSTRAINT pk_deployer_meta PRIMARY KEY ("key")
);
CREATE TABLE runs (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    deployment VARCHAR(253) NOT NULL,
    operation VARCHAR(16) NOT NULL,
    status VARCHAR(16) NOT NULL,
    started_at DATETIME NOT NULL,
    finished_at DATETIME,
    error TEXT,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL
);
CREATE INDEX ix_runs_deployment_status ON runs (deployment, status);
CREATE TABLE deployments (
    name VARCHAR(253) NOT NULL,
    target_kind VARCHAR(32) NOT NULL,
    status VARCHAR(16) NOT NULL,
    manifest_path TEXT,
    manifest_digest TEXT,
    spec_digest TEXT,
    endpoint TEXT,
    served_model_name TEXT,
    message TEXT,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    last_run_id INTEGER,
    CONSTRAINT pk_deployments PRIMARY KEY (name),
    CONSTRAINT fk_deployments_last_run_id_runs FOREIGN KEY(last_run_id)
        REFERENCES runs (id) ON DELETE SET NULL
);
CREATE TABLE steps (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    action VARCHAR(16) NOT NULL,
    status VARCHAR(16) NOT NULL,
    started_at DATETIME NOT NULL,
    finished_at DATETIME,
    message TEXT,
    CONSTRAINT fk_steps_run_id_runs FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE INDEX ix_steps_run_id ON steps (run_id);
CREATE TABLE events (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    ts DATETIME NOT NULL,
    kind VARCHAR(32) NOT NULL,
    step TEXT,
    message TEXT NOT NULL,
    data JSON NOT NULL,
    completed FLOAT,
    total FLOAT,
    CONSTRAINT fk_events_run_id_runs FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE INDEX ix_events_run_id ON events (run_id);
"""

#: A deployment with one finished run, a step and an event, as version 1 stored them.
ROWS_V1 = """
INSERT INTO runs VALUES (1, 'llama', 'apply', 'succeeded', '2025-06-01 10:00:00.000000',
    '2025-06-01 10:05:00.000000', NULL, 4242, 'old-box');
INSERT INTO deployments VALUES ('llama', 'local', 'healthy', '/srv/llama.yaml', 'sha256:aa',
    'sha256:bb', 'http://127.0.0.1:8000/v1', 'llama-3.1-8b', NULL, '2025-06-01 10:00:00.000000',
    '2025-06-01 10:05:00.000000', 1);
INSERT INTO steps VALUES (1, 1, 'fetch', 'create', 'done', '2025-06-01 10:00:01.000000',
    '2025-06-01 10:01:00.000000', '12 files');
INSERT INTO events VALUES (1, 1, '2025-06-01 10:00:02.000000', 'log', 'fetch', 'hello',
    '{"n": 1}', NULL, NULL);
"""


def make_v1_database(path: Path, *, meta: bool = True) -> Path:
    """A state database as deployer 0.1 left it (WAL mode, closed cleanly), with ROWS_V1.

    Without ``meta`` it has no ``deployer_meta`` table at all.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA_V1 + ROWS_V1)
        if meta:
            conn.execute("INSERT INTO deployer_meta VALUES ('schema_version', '1')")
        else:
            conn.execute("DROP TABLE deployer_meta")
        conn.commit()
    finally:
        conn.close()
    return path


def make_foreign_database(path: Path, *, wal: bool = False, extra_tables: int = 0) -> Path:
    """Another application's SQLite file: a ``users`` table, and ``t1``... when asked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        if wal:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.execute("INSERT INTO users (email) VALUES ('ada@example.com')")
        for n in range(1, extra_tables + 1):
            conn.execute(f"CREATE TABLE t{n} (x)")
        conn.commit()
    finally:
        conn.close()
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    """The names in ``folder``: what a user sees with ``ls -a``."""
    return sorted(p.name for p in folder.iterdir())


def query(path: Path, statement: str) -> list[tuple[object, ...]]:
    """Rows of ``statement`` read through a plain read-write sqlite3 connection."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(statement).fetchall()
    finally:
        conn.close()
