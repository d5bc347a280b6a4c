"""Whose database is it, and bringing deployer's up to date.

:func:`inspect_database` reads (never writes) what a database holds and says whether it is
deployer's; :func:`check_usable` refuses what is not; :func:`prepare` creates the tables of an
empty database, adopts a deployer database written before the marker existed, and upgrades an
older one through the Alembic migrations of :mod:`deployer.state.migrations`, without losing a
row. A database already at :data:`~deployer.state.tables.SCHEMA_VERSION` never loads Alembic.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sqlalchemy import Connection, delete, insert, inspect, select

from deployer.errors import StateError
from deployer.state import migrations, tables

#: How many foreign table names an error lists before "...".
_LISTED = 5

#: Alembic's record of a database's revision: deployer's too, never a foreign table.
ALEMBIC_VERSION_TABLE = "alembic_version"


class Kind(Enum):
    #: No tables at all: deployer may make it its own.
    EMPTY = "empty"
    #: Marked as deployer's.
    DEPLOYER = "deployer"
    #: Deployer's tables from before the marker: adopted on a writable open.
    UNMARKED = "unmarked"
    #: Anything else: never touched.
    FOREIGN = "foreign"


@dataclass(frozen=True)
class Found:
    kind: Kind
    #: The recorded ``schema_version``, verbatim; None when there is none.
    version: str | None
    #: Tables and views that are not deployer's, sorted.
    others: tuple[str, ...]
    #: Column names of each deployer table present.
    columns: dict[str, frozenset[str]]
    #: SQLite's ``PRAGMA application_id`` (0 when unset, and on other databases).
    application_id: int = 0
    #: Whether Alembic's ``alembic_version`` table is there (databases from before 0.2 lack it).
    alembic: bool = False


def inspect_database(conn: Connection) -> Found:
    """What ``conn``'s database holds. Only reads (on SQLite: the schema and the header)."""
    inspector = inspect(conn)
    names = set(inspector.get_table_names()) | set(inspector.get_view_names())
    ours = {t.name for t in tables.metadata.sorted_tables}
    alembic = ALEMBIC_VERSION_TABLE in names
    names.discard(ALEMBIC_VERSION_TABLE)
    columns = {
        name: frozenset(c["name"] for c in inspector.get_columns(name)) for name in names & ours
    }
    others = tuple(sorted(names - ours))
    meta = _read_meta(conn, columns.get(tables.meta.name, frozenset()))
    version = meta.get("schema_version")
    app_id = _sqlite_application_id(conn)
    if not names and app_id == 0:
        kind = Kind.EMPTY
    elif app_id not in (0, tables.SQLITE_APPLICATION_ID):
        kind = Kind.FOREIGN
    elif meta.get("application") == tables.APPLICATION or app_id == tables.SQLITE_APPLICATION_ID:
        kind = Kind.DEPLOYER
    elif _has_original_tables(columns):
        kind = Kind.UNMARKED
    else:
        kind = Kind.FOREIGN
    return Found(
        kind=kind,
        version=version,
        others=others,
        columns=columns,
        application_id=app_id,
        alembic=alembic,
    )


def check_usable(found: Found, label: str) -> None:
    """Raise :class:`StateError` unless ``found`` is a database this deployer may use.

    Refused: a foreign database (the message names its tables) and one whose schema version is
    newer than :data:`~deployer.state.tables.SCHEMA_VERSION` or not a number.
    """
    if found.kind is Kind.FOREIGN:
        raise StateError(
            f"state database {label} {_foreign_contents(found)} and is not a deployer "
            "state database",
            hint="point --home, --state-url or DEPLOYER_STATE_URL at an empty or deployer "
            f"database; {label} was left untouched",
        )
    version = found.version
    if version is not None and (not version.isdigit() or int(version) > tables.SCHEMA_VERSION):
        raise StateError(
            f"state database {label} has schema version {_printable(version)}; this "
            f"deployer knows version {tables.SCHEMA_VERSION} and older",
            hint="upgrade deployer, or use another --home / --state-url",
        )


def prepare(conn: Connection, found: Found) -> None:
    """Make a usable database (see :func:`check_usable`) current, in ``conn``'s transaction.

    Runs the migrations it lacks: a database Alembic does not track yet is first stamped at its
    recorded schema version (an unmarked one at version 1). Then writes the marker and the
    schema version. Writes nothing to (and does not import Alembic for) a database that is
    current already; idempotent.
    """
    if found.kind is not Kind.DEPLOYER or found.version != str(tables.SCHEMA_VERSION):
        if found.kind is Kind.EMPTY or found.alembic:
            start = None
        else:
            start = int(found.version) if found.version is not None else 1
        migrations.upgrade(conn, start)
    meta = _read_meta(conn, frozenset({"key", "value"}))
    wanted = {"schema_version": str(tables.SCHEMA_VERSION), "application": tables.APPLICATION}
    for key, value in wanted.items():
        if meta.get(key) != value:
            _write_meta(conn, key, value)
    if conn.dialect.name == "sqlite" and found.application_id != tables.SQLITE_APPLICATION_ID:
        conn.exec_driver_sql(f"PRAGMA application_id = {tables.SQLITE_APPLICATION_ID}")


def _foreign_contents(found: Found) -> str:
    if found.application_id not in (0, tables.SQLITE_APPLICATION_ID):
        return f"belongs to another application (SQLite application_id {found.application_id:#x})"
    names = found.others or tuple(sorted(found.columns))
    listed = ", ".join(_printable(n) for n in names[:_LISTED])
    if len(names) > _LISTED:
        listed += ", ..."
    if found.others:
        return f"holds other tables ({listed})"
    return f"holds only some of deployer's tables ({listed})"


def _has_original_tables(columns: dict[str, frozenset[str]]) -> bool:
    return all(
        tables.original_columns(table) <= columns.get(table.name, frozenset())
        for table in tables.CORE_TABLES
    )


def _read_meta(conn: Connection, columns: frozenset[str]) -> dict[str, str]:
    if not {"key", "value"} <= columns:
        return {}
    meta = tables.meta
    rows = conn.execute(select(meta.c.key, meta.c.value)).all()
    return {str(key): str(value) for key, value in rows}


def _write_meta(conn: Connection, key: str, value: str) -> None:
    meta = tables.meta
    conn.execute(delete(meta).where(meta.c.key == key))
    conn.execute(insert(meta).values(key=key, value=value))


def _sqlite_application_id(conn: Connection) -> int:
    if conn.dialect.name != "sqlite":
        return 0
    return int(conn.exec_driver_sql("PRAGMA application_id").scalar_one())


def _printable(text: str) -> str:
    """``text`` fit for a one-line message: control characters replaced, at most 60 chars."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= 60 else clean[:57] + "..."
