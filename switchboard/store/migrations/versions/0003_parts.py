"""The parts of destinations sent in several parts (long messages), each with its carrier reference.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "destination_parts",
        sa.Column("destination_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("carrier", sa.Text, nullable=False),
        sa.Column("carrier_ref", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_destination_parts_carrier_ref", "destination_parts", ["carrier", "carrier_ref"])


def downgrade() -> None:
    op.drop_table("destination_parts")
