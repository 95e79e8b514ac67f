"""Opt-out: each account's list, its reply texts, and the outbox of replies to keywords.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"

# SQLite makes an INTEGER primary key the rowid itself (self-numbering), as in store/schema.py.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "opt_outs",
        sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("number", sa.Text, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "account_replies",
        sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("opt_out_reply", sa.Text),
        sa.Column("opt_in_reply", sa.Text),
        sa.Column("help_reply", sa.Text),
    )
    op.create_table(
        "opt_out_replies",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("mobile_no", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("opt_out_replies")
    op.drop_table("account_replies")
    op.drop_table("opt_outs")
