"""Opening the state database: engines, SQLite settings, and errors a person can act on.

SQLite gets WAL (readers never wait for the writer, and a killed writer leaves the file
readable), a 10 s busy timeout, foreign keys, and transactions that SQLAlchemy begins itself:
reads begin deferred, writes begin ``IMMEDIATE`` so a check-then-write (is a run already going?)
holds the write lock from its first read and cannot race another process. WAL is switched on by
:func:`use_wal` once the store has seen that the file is its own, never at connect: switching a
file to WAL rewrites its header.

:func:`open_readonly_database` reads a SQLite file without creating or changing anything: no
folder, no file, no ``-wal`` or ``-shm`` beside it (see :func:`_connect_readonly`).
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
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, StaticPool

from deployer.errors import StateError
from deployer.state import tables

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
    #: Opened by :func:`open_readonly_database`: nothing may be written.
    readonly: bool = False


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


def open_readonly_database(url: str) -> Database | None:
    """Build a reading engine for ``url`` without connecting, creating or writing anything.

    None when there is nothing to read: a SQLite file (or its folder) that does not exist, or an
    in-memory database (always empty when new). SQLite files are opened ``mode=ro``, or
    ``immutable=1`` when that would create a ``-wal``/``-shm`` file or cannot open one; each read
    gets its own connection, so a long-lived reader sees what writers commit. Other databases
    get an ordinary engine: :class:`~deployer.state.store.StateStore` refuses to write through it.

    Raises :class:`StateError` for a malformed URL, a missing driver, or a SQLite path that is
    there but is not a file.
    """
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite":
        label = parsed.render_as_string(hide_password=True)
        engine = _create(parsed, label, pool_pre_ping=True)
        return Database(reader=engine, writer=engine, label=label, path=None, readonly=True)
    path = _sqlite_path(parsed)
    if path is None or not os.path.lexists(path):
        return None
    if not path.is_file():
        raise StateError(
            f"state database {path} is not a file",
            hint=f"point --home / --state-url at a SQLite file, or move {path} aside",
        )
    engine = _create(
        make_url("sqlite://"),
        str(path),
        creator=lambda: _connect_readonly(path),
        poolclass=NullPool,
    )
    event.listen(engine, "connect", _configure_readonly)
    event.listen(engine, "begin", _begin)
    return Database(reader=engine, writer=engine, label=str(path), path=path, readonly=True)


def missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file ``url`` names when that file does not exist; None for anything else (a
    file that exists, an in-memory database, another database). Touches nothing."""
    path = _sqlite_path(_parse(url))
    if path is None or path.exists():
        return None
    return path


def use_wal(db: Database) -> None:
    """Switch a writable SQLite file to WAL (a no-op when it is WAL already or not SQLite).

    Call it only on a file known to be deployer's: the switch rewrites the file's header.
    """
    if db.path is None or db.readonly:
        return
    try:
        conn = db.writer.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute("PRAGMA journal_mode = WAL")
            finally:
                cursor.close()
        finally:
            conn.close()
    except (exc.SQLAlchemyError, sqlite3.Error) as error:
        raise state_error(db, "switch it to WAL", error) from error


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
    elif db.readonly and ("unable to open" in lowered or "readonly" in lowered):
        hint = f"deployer needs to read {db.path}; fix its permissions or use --home / --state-url"
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
        engine = create_engine(parsed, **kwargs)
    except (exc.SQLAlchemyError, ImportError) as error:
        raise StateError(
            f"state database {label}: cannot use {parsed.drivername}: {error}",
            hint="install the database driver the URL names, or use a sqlite:/// URL",
        ) from error
    tables.use_dialect(engine.dialect.name)
    return engine


def _sqlite_path(parsed: URL) -> Path | None:
    database = parsed.database
    if not database or database == ":memory:":
        return None
    return Path(os.path.expanduser(database)).absolute()


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
    _configure(dbapi_connection, "PRAGMA foreign_keys = ON")


def _configure_readonly(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Belt and braces: SQLite itself refuses any write on this connection.
    _configure(dbapi_connection, "PRAGMA query_only = ON")


def _configure(dbapi_connection: DBAPIConnection, pragma: str) -> None:
    """Every SQLite connection's settings: the busy timeout, and ``pragma``."""
    conn = cast(sqlite3.Connection, dbapi_connection)
    # Stop the driver from issuing its own BEGIN; _begin issues ours.
    conn.isolation_level = None
    cursor = conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute(pragma)
    finally:
        cursor.close()


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to ``path`` that leaves the folder as it found it.

    ``mode=ro`` would create the ``-wal`` and ``-shm`` files of a WAL database when they are
    missing (and leave them behind, as a reader cannot clean up). They are missing only when no
    connection has the file open and everything is in the main file, so then ``immutable=1``
    reads exactly the same data (a writer that opens the file meanwhile commits to a new
    ``-wal``; only a checkpoint during that one read could disturb it: a wrong read or a
    :class:`StateError`, never a write). When ``mode=ro`` cannot open them (a read-only folder or
    ``-shm``), ``immutable=1`` is the fallback: a snapshot read of the main file, which may miss
    transactions not yet checkpointed into it.
    """
    uri = path.as_uri()
    if _is_wal(path) and not (_sidecar(path, "-wal").exists() and _sidecar(path, "-shm").exists()):
        return _sqlite_connect(f"{uri}?immutable=1")
    conn = _sqlite_connect(f"{uri}?mode=ro")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens -wal and -shm now
    except sqlite3.OperationalError:
        conn.close()
        return _sqlite_connect(f"{uri}?immutable=1")
    return conn


def _sqlite_connect(uri: str) -> sqlite3.Connection:
    return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _is_wal(path: Path) -> bool:
    """Whether the SQLite header of ``path`` says WAL (file format versions 2)."""
    try:
        with path.open("rb") as file:
            header = file.read(20)
    except OSError:
        return False
    return header[:16] == b"SQLite format 3\x00" and header[18:20] == b"\x02\x02"


def _begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
