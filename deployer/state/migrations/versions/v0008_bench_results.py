"""Schema version 8: ``bench_results``, what each ``deployer bench`` measured, with the manifest
digest and model revision it measured."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deployer.state.tables import UTCDateTime

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "bench_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment", sa.String(253), nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("manifest_digest", sa.Text, nullable=False),
        sa.Column("model_revision", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tool", sa.Text, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_bench_results_deployment_manifest_digest",
        "bench_results",
        ["deployment", "manifest_digest"],
    )
