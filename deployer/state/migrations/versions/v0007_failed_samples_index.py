"""Schema version 7: ``ix_engine_samples_failed``, the failed scrapes of each deployment by time
(a plot's last errors are read without going through every sample of its window)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    failed = sa.text("error IS NOT NULL")
    op.create_index(
        "ix_engine_samples_failed",
        "engine_samples",
        ["deployment", "ts"],
        sqlite_where=failed,
        postgresql_where=failed,
    )
