"""Concatenated inbound messages: parts kept until joined, the parts a message was joined from, and the recent
inbound messages by digest, so that an SMSC's resend is not stored twice.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inbound_parts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("carrier", sa.Text, nullable=False),
        sa.Column("source_addr", sa.Text, nullable=False),
        sa.Column("destination_addr", sa.Text, nullable=False),
        sa.Column("reference", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("data_coding", sa.Integer, nullable=False),
        sa.Column("octets", sa.Text, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ux_inbound_parts_part",
        "inbound_parts",
        ["carrier", "source_addr", "destination_addr", "reference", "total", "seq"],
        unique=True,
    )
    op.create_index("ix_inbound_parts_received", "inbound_parts", ["received_at"])
    op.create_table(
        "inbound_seen",
        sa.Column("digest", sa.Text, primary_key=True),
        sa.Column("seen_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_inbound_seen_at", "inbound_seen", ["seen_at"])
    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("segments", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("missing", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_column("missing")
        batch.drop_column("segments")
    op.drop_index("ix_inbound_seen_at", "inbound_seen")
    op.drop_table("inbound_seen")
    op.drop_index("ix_inbound_parts_received", "inbound_parts")
    op.drop_index("ux_inbound_parts_part", "inbound_parts")
    op.drop_table("inbound_parts")
