"""Schema version 6: ``revisions``, every applied manifest and lock of each deployment."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deployer.state.tables import UTCDateTime

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment", sa.String(253), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("applied_at", UTCDateTime, nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("manifest_path", sa.Text, nullable=False),
        sa.Column("manifest_digest", sa.Text, nullable=False),
        sa.Column("manifest_text", sa.Text, nullable=False),
        sa.Column("lock_text", sa.Text),
        sa.UniqueConstraint("deployment", "number", name="uq_revisions_deployment_number"),
        sqlite_autoincrement=True,
    )
