"""Opening the state database: engines, SQLite settings, and errors a person can act on.

SQLite gets WAL (readers never wait for the writer, and a killed writer leaves the file
readable), a 10 s busy timeout, foreign keys, and transactions that SQLAlchemy begins itself:
reads begin deferred, writes begin ``IMMEDIATE`` so a check-then-write (is a run already going?)
holds the write lock from its first read and cannot race another process.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from deployer.errors import StateError

BUSY_TIMEOUT_MS = 10_000

_IMMEDIATE = "deployer_begin_immediate"


@dataclass(frozen=True)
class Database:
    #: Reads: deferred transactions, never block on SQLite.
    reader: Engine
    #: Writes: on SQLite each transaction holds the write lock from its first statement.
    writer: Engine
    #: The SQLite file, or the URL without its password: what messages name.
    label: str
    #: The SQLite file, when there is one.
    path: Path | None


def open_database(url: str) -> Database:
    """Build the engines for ``url`` without connecting.

    For a SQLite file, its folder is created (mode 0700) and the file itself created owner-only
    (0600) when missing; SQLite gives its ``-wal`` and ``-shm`` files the same mode.

    Raises :class:`StateError` for a malformed URL, a missing driver or an unwritable folder.
    """
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite":
        label = parsed.render_as_string(hide_password=True)
        engine = _create(parsed, label, pool_pre_ping=True)
        return Database(reader=engine, writer=engine, label=label, path=None)

    path = _sqlite_path(parsed)
    if path is None:
        # In memory: one connection shared by every thread, or each would see its own database.
        engine = _create(
            parsed,
            "in-memory SQLite",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
        label = "in-memory SQLite"
    else:
        _prepare_file(path)
        label = str(path)
        engine = _create(parsed, label, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _configure_sqlite)
    event.listen(engine, "begin", _begin)
    return Database(
        reader=engine,
        writer=engine.execution_options(**{_IMMEDIATE: True}),
        label=label,
        path=path,
    )


def state_error(db: Database, doing: str, error: BaseException) -> StateError:
    """A :class:`StateError` for ``error`` met while ``doing``, with a hint that names the file."""
    reason = str(getattr(error, "orig", None) or error)
    message = f"state database {db.label}: cannot {doing}: {reason}"
    lowered = reason.lower()
    if db.path is None:
        hint = (
            f"check that the database at {db.label} is reachable and that its user may create "
            "and write tables (--state-url / DEPLOYER_STATE_URL)"
        )
    elif "not a database" in lowered or "malformed" in lowered:
        hint = (
            f"{db.path} is not a deployer state database or is damaged; move it aside to start "
            "with empty state (deployer forgets its deployments), or use --home / --state-url"
        )
    elif "locked" in lowered or "busy" in lowered:
        hint = (
            f"another process held {db.path} for more than {BUSY_TIMEOUT_MS // 1000} s; "
            "try again when it is done"
        )
    elif "readonly" in lowered or "unable to open" in lowered:
        hint = (
            f"deployer needs to write {db.path} and its folder {db.path.parent}; fix their "
            "permissions or use --home / --state-url"
        )
    else:
        hint = f"check {db.path} and its folder {db.path.parent}"
    return StateError(message, hint=hint)


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (exc.ArgumentError, ValueError) as error:
        raise StateError(
            f"state URL {url!r} is not a database URL: {error}",
            hint="use a SQLAlchemy URL such as sqlite:////path/state.db or "
            "postgresql+psycopg://user@host/deployer",
        ) from error


def _create(parsed: URL, label: str, **kwargs: Any) -> Engine:
    try:
        return create_engine(parsed, **kwargs)
    except (exc.SQLAlchemyError, ImportError) as error:
        raise StateError(
            f"state database {label}: cannot use {parsed.drivername}: {error}",
            hint="install the database driver the URL names, or use a sqlite:/// URL",
        ) from error


def _sqlite_path(parsed: URL) -> Path | None:
    database = parsed.database
    if not database or database == ":memory:":
        return None
    return Path(database).expanduser().absolute()


def _prepare_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
    except OSError as error:
        raise StateError(
            f"cannot create the state database {path}: {error.strerror or error}",
            hint=f"deployer needs a writable folder for {path}; fix the permissions of "
            f"{path.parent} or use --home / --state-url",
        ) from error


def _configure_sqlite(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    conn = cast(sqlite3.Connection, dbapi_connection)
    # Stop the driver from issuing its own BEGIN; _begin issues ours.
    conn.isolation_level = None
    cursor = conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
