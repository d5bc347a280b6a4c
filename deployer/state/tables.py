"""The state store's schema, in SQLAlchemy Core.

Statuses are stored as their string values (not database enums) so a newer status never needs a
type migration. ``runs.deployment`` is deliberately not a foreign key: a run is recorded even when
it fails before its deployment row exists, and history outlives a destroyed deployment.

A database is deployer's when ``deployer_meta`` holds ``application = deployer`` (and, on SQLite,
its header's ``application_id`` is :data:`SQLITE_APPLICATION_ID`). Every change here comes with
an Alembic migration in :mod:`deployer.state.migrations` (revision ``NNNN`` = schema version N);
a column added after version 1 carries ``info={"since": <version>}``, so a read-only store can
still read an older database.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: Bump when the tables change, with a migration; a database from a newer deployer is refused.
#: 2: ``runs.process_created`` and the ``application`` marker.
#: 3: ``deployments.target_spec``.
#: 4: ``api_tokens`` and ``audit_events`` (the server's).
#: 5: ``engine_samples``.
#: 6: ``revisions``.
#: 7: ``ix_engine_samples_failed``.
#: 8: ``bench_results``.
SCHEMA_VERSION = 8

#: ``deployer_meta``'s ``application`` value: the mark of a deployer state database.
APPLICATION = "deployer"

#: ``PRAGMA application_id`` of a deployer SQLite file ("DPLY").
SQLITE_APPLICATION_ID = 0x44504C59


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite keeps no offset, so values are stored as naive UTC there and UTC is attached on read.
    A naive datetime is refused on write: its meaning would depend on the machine's clock zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the state store keeps UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

meta = Table(
    "deployer_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(253), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("error", Text),
    Column("pid", Integer, nullable=False),
    Column("host", Text, nullable=False),
    #: ``psutil.Process(pid).create_time()``: tells the run's process from a later one given the
    #: same pid. None for runs recorded before version 2.
    Column("process_created", Float, info={"since": 2}),
    Index(None, "deployment", "status"),
    # Never reuse the id of a deleted run: events and logs refer to runs by id.
    sqlite_autoincrement=True,
)

deployments = Table(
    "deployments",
    metadata,
    Column("name", String(253), primary_key=True),
    Column("target_kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("manifest_path", Text),
    Column("manifest_digest", Text),
    Column("spec_digest", Text),
    Column("endpoint", Text),
    Column("served_model_name", Text),
    Column("message", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_run_id", Integer, ForeignKey("runs.id", ondelete="SET NULL")),
    #: The resolved target spec (``kind`` and its fields, paths absolute) as applied: what
    #: ``status``, ``logs`` and ``destroy`` reach, without re-reading a manifest that may have
    #: moved or changed. None for deployments recorded before version 3.
    Column("target_spec", JSON, info={"since": 3}),
)

steps = Table(
    "steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("name", Text, nullable=False),
    Column("action", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("message", Text),
    sqlite_autoincrement=True,
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("ts", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("step", Text),
    Column("message", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("completed", Float),
    Column("total", Float),
    sqlite_autoincrement=True,
)

#: The server's access tokens. Only a token's SHA-256 is kept (a token is 32 random bytes, so a
#: plain hash cannot be searched back); ``prefix`` is its first characters, to tell tokens apart
#: in a listing. A revoked token keeps its row, so the audit trail still names it.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    sqlite_autoincrement=True,
)

#: Every action taken through the server: who (a token's name, or ``cli``), what, on what, when,
#: and how it ended.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", UTCDateTime, nullable=False, index=True),
    Column("actor", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", Text),
    Column("result", String(16), nullable=False),
    Column("detail", Text),
    sqlite_autoincrement=True,
)

#: The server's time series of each engine's load: one row per endpoint per scrape, kept for the
#: retention the server is given (7 days by default). ``error`` is why a scrape failed (the
#: numbers are then NULL). Latencies are seconds, over the interval since the scrape before.
engine_samples = Table(
    "engine_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(253), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("running", Float),
    Column("waiting", Float),
    Column("kv_usage", Float),
    Column("tokens_per_second", Float),
    Column("ttft_p50", Float),
    Column("ttft_p95", Float),
    Column("itl_p50", Float),
    Column("itl_p95", Float),
    Column("error", Text),
    Index(None, "deployment", "ts"),
    Index(None, "ts"),
)

#: The failed scrapes alone (few): a plot's last errors without reading its every sample. A
#: partial index, which SQLAlchemy spells per dialect; its PostgreSQL option is added by
#: :func:`use_dialect` (naming it here would import the PostgreSQL dialect on every start).
_FAILED_SAMPLES = Index(
    "ix_engine_samples_failed",
    engine_samples.c.deployment,
    engine_samples.c.ts,
    sqlite_where=text("error IS NOT NULL"),
)


def use_dialect(name: str) -> None:
    """Give the tables the options of dialect ``name`` that are not given above, once a
    database of that dialect is opened (its module is loaded by then)."""
    if name == "postgresql":
        _FAILED_SAMPLES.dialect_options["postgresql"]["where"] = text("error IS NOT NULL")


#: Every applied revision of a deployment: the manifest document and its lock as they were
#: applied (text, so a rollback re-applies exactly them), numbered per deployment from 1. A
#: re-apply of the same manifest adds none.
revisions = Table(
    "revisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(253), nullable=False),
    Column("number", Integer, nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
    Column("run_id", Integer),
    Column("manifest_path", Text, nullable=False),
    Column("manifest_digest", Text, nullable=False),
    Column("manifest_text", Text, nullable=False),
    Column("lock_text", Text),
    UniqueConstraint("deployment", "number"),
    sqlite_autoincrement=True,
)


#: What each ``deployer bench`` measured, tied to the revision it measured: the deployment's
#: manifest digest and model revision when it ran (queries for a revision filter on them, so
#: results of another revision are never mixed in). ``result`` is the whole result as JSON (load
#: points, cross-check, workload, SLO); ``status`` is ``complete`` or ``partial`` (stopped early:
#: never priced from).
bench_results = Table(
    "bench_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(253), nullable=False),
    Column("run_id", Integer),
    Column("manifest_digest", Text, nullable=False),
    Column("model_revision", Text),
    Column("status", String(16), nullable=False),
    Column("tool", Text, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    Column("result", JSON, nullable=False),
    Index(None, "deployment", "manifest_digest"),
    sqlite_autoincrement=True,
)


#: The tables every deployer database has had since version 1.
CORE_TABLES = (deployments, runs, steps, events)


def original_columns(table: Table) -> frozenset[str]:
    """The names of ``table``'s columns that version 1 already had."""
    return frozenset(c.name for c in table.c if "since" not in c.info)
