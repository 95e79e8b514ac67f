"""Mobile-originated (inbound) messages, as carriers hand them over.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("carrier", sa.Text, nullable=False),
        sa.Column("source_addr", sa.Text, nullable=False),
        sa.Column("destination_addr", sa.Text, nullable=False),
        sa.Column("body", sa.Text),
        sa.Column("data_coding", sa.Integer, nullable=False),
        sa.Column("raw", sa.Text),
        sa.Column("received_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_inbound_messages_destination", "inbound_messages", ["destination_addr", "id"])


def downgrade() -> None:
    op.drop_table("inbound_messages")
