"""Two-way messaging: numbers assigned to accounts, inbound messages routed to them, the inbound callback URL.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "numbers",
        sa.Column("number", sa.Text, primary_key=True),
        sa.Column("keyword", sa.Text, primary_key=True),
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_numbers_account", "numbers", ["account_id", "number"])
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("inbound_callback_url", sa.Text))
        batch.add_column(sa.Column("inbound_callback_disabled", sa.Text))
    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("account_id", sa.BigInteger))
        batch.add_column(sa.Column("keyword", sa.Text))
        batch.add_column(sa.Column("to_number", sa.Text))
        batch.add_column(sa.Column("from_number", sa.Text))
    # Messages stored before: no number was assigned then, so they stay unrouted, their numbers as written.
    op.execute("UPDATE inbound_messages SET to_number = destination_addr, from_number = source_addr")
    op.create_index("ix_inbound_messages_account", "inbound_messages", ["account_id", "id"])
    op.create_index("ix_inbound_messages_account_to", "inbound_messages", ["account_id", "to_number", "id"])
    op.create_index("ix_inbound_messages_account_from", "inbound_messages", ["account_id", "from_number", "id"])


def downgrade() -> None:
    op.drop_index("ix_inbound_messages_account_from", "inbound_messages")
    op.drop_index("ix_inbound_messages_account_to", "inbound_messages")
    op.drop_index("ix_inbound_messages_account", "inbound_messages")
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_column("from_number")
        batch.drop_column("to_number")
        batch.drop_column("keyword")
        batch.drop_column("account_id")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("inbound_callback_disabled")
        batch.drop_column("inbound_callback_url")
    op.drop_table("numbers")
