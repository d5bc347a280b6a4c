"""Schema version 2: ``runs.process_created`` and ``deployer_meta`` (its ``application`` marker).

Databases of deployer 0.1 (adopted at version 1) may lack ``deployer_meta``, or have the column.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("deployer_meta"):
        op.create_table(
            "deployer_meta",
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )
    if "process_created" not in {c["name"] for c in inspector.get_columns("runs")}:
        op.add_column("runs", sa.Column("process_created", sa.Float))
