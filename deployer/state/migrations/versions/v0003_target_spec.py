"""Schema version 3: ``deployments.target_spec`` (the resolved target spec as applied)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("deployments")}
    if "target_spec" not in present:
        op.add_column("deployments", sa.Column("target_spec", sa.JSON))
