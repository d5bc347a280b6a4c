"""The state schema's history as Alembic migrations, run from code (no ``alembic.ini``).

Revision ``NNNN`` is schema version N (:data:`deployer.state.tables.SCHEMA_VERSION`). Alembic is
imported only when a database needs upgrading: opening a current one never loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from deployer.state import tables

#: This folder: its ``versions/`` are the migrations.
LOCATION = Path(__file__).parent


def revision(version: int) -> str:
    """The Alembic revision id of schema version ``version``."""
    return f"{version:04d}"


def upgrade(conn: Connection, start: int | None, to: str = "head") -> None:
    """Bring ``conn``'s database to revision ``to`` (the newest), in ``conn``'s transaction.

    ``start`` is the schema version a database without Alembic's ``alembic_version`` table is
    at (it is stamped there first); None for an empty database or one Alembic already tracks.
    """
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(LOCATION))

    def steps(current: Any, context: Any) -> Any:
        return script._upgrade_revs(to, current)

    # What ``alembic upgrade head`` does, without an env.py: the caller's connection and
    # transaction (a failed upgrade leaves nothing behind).
    with EnvironmentContext(Config(), script, fn=steps, destination_rev=to) as env:
        env.configure(connection=conn, target_metadata=tables.metadata, transactional_ddl=True)
        if start is not None:
            env.get_context().stamp(script, revision(start))
        with env.begin_transaction():
            env.run_migrations()
