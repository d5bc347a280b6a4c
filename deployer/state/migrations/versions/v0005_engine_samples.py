"""Schema version 5: ``engine_samples``, the server's time series of each engine's load."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deployer.state.tables import UTCDateTime

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "engine_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment", sa.String(253), nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        *[
            sa.Column(name, sa.Float)
            for name in (
                "running",
                "waiting",
                "kv_usage",
                "tokens_per_second",
                "ttft_p50",
                "ttft_p95",
                "itl_p50",
                "itl_p95",
            )
        ],
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_engine_samples_deployment_ts", "engine_samples", ["deployment", "ts"])
    op.create_index("ix_engine_samples_ts", "engine_samples", ["ts"])
