"""The Alembic migrations: they build exactly the tables of ``tables.py``, upgrade every older
schema version without losing a row, and are not loaded to open a current database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from deployer.state import StateStore, migrations, tables


def test_the_migrations_build_exactly_the_tables(store_url: str) -> None:
    StateStore(store_url).close()
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, tables.metadata) == []
            assert context.get_current_revision() == migrations.revision(tables.SCHEMA_VERSION)
    finally:
        engine.dispose()


@pytest.mark.parametrize("version", range(1, tables.SCHEMA_VERSION))
def test_an_older_database_is_upgraded_with_its_rows(store_url: str, version: int) -> None:
    """A database at ``version`` as the deployer of that version left it (no Alembic table)."""
    if store_url.startswith("sqlite:///"):
        Path(store_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            migrations.upgrade(conn, None, to=migrations.revision(version))
            conn.execute(text("DROP TABLE alembic_version"))
            conn.execute(
                text(
                    "INSERT INTO deployer_meta (key, value) VALUES ('schema_version', :v), "
                    "('application', 'deployer')"
                ),
                {"v": str(version)},
            )
            conn.execute(
                text(
                    "INSERT INTO runs (deployment, operation, status, started_at, pid, host) "
                    "VALUES ('chat', 'apply', 'succeeded', '2026-01-02 03:04:05', 1, 'h')"
                )
            )
        with StateStore(store_url) as store:
            assert [r.deployment for r in store.list_runs("chat")] == ["chat"]
        with engine.connect() as conn:
            meta = dict(conn.execute(text("SELECT key, value FROM deployer_meta")).all())
            assert meta["schema_version"] == str(tables.SCHEMA_VERSION)
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, tables.metadata) == []
            assert context.get_current_revision() == migrations.revision(tables.SCHEMA_VERSION)
    finally:
        engine.dispose()


def test_opening_a_current_database_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore(url).close()
    program = (
        "import sys; from deployer.state import StateStore; "
        f"StateStore({url!r}).close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
