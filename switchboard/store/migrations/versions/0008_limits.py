"""Per-account limits, and the request rate and daily counts shared by every api process.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "account_limits",
        sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("requests_per_second", sa.Double),
        sa.Column("burst", sa.BigInteger),
        sa.Column("destinations_per_day", sa.BigInteger),
        sa.Column("countries", sa.Text),
    )
    op.create_table(
        "rate_buckets",
        sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tokens", sa.Double, nullable=False),
        sa.Column("granted", sa.Double, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "daily_counts",
        sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("day", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("used", sa.BigInteger, nullable=False),
        sa.Column("granted", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("daily_counts")
    op.drop_table("rate_buckets")
    op.drop_table("account_limits")
