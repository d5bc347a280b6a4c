"""Schema version 1 (deployer 0.1): deployments, runs, steps, events and deployer_meta."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deployer.state.tables import UTCDateTime

revision = "0001"
down_revision: str | None = None


def upgrade() -> None:
    op.create_table(
        "deployer_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment", sa.String(253), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("error", sa.Text),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_runs_deployment_status", "runs", ["deployment", "status"])
    op.create_table(
        "deployments",
        sa.Column("name", sa.String(253), primary_key=True),
        sa.Column("target_kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("manifest_path", sa.Text),
        sa.Column("manifest_digest", sa.Text),
        sa.Column("spec_digest", sa.Text),
        sa.Column("endpoint", sa.Text),
        sa.Column("served_model_name", sa.Text),
        sa.Column("message", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("last_run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="SET NULL")),
    )
    op.create_table(
        "steps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("message", sa.Text),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_steps_run_id", "steps", ["run_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("step", sa.Text),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("completed", sa.Float),
        sa.Column("total", sa.Float),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_run_id", "events", ["run_id"])
