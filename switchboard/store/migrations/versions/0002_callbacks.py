"""The callback outbox, its attempt log, and the accounts' secret rotation and disabled-URL columns.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("previous_webhook_secret", sa.Text))
        batch.add_column(sa.Column("secret_rotated_at", sa.BigInteger))
        batch.add_column(sa.Column("sms_callback_disabled", sa.Text))
        batch.add_column(sa.Column("voice_callback_disabled", sa.Text))
    op.create_table(
        "callbacks",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("subject_id", sa.BigInteger, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("url", sa.Text),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("due_at", sa.BigInteger),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_callbacks_due",
        "callbacks",
        ["due_at"],
        sqlite_where=sa.text("due_at IS NOT NULL"),
        postgresql_where=sa.text("due_at IS NOT NULL"),
    )
    op.create_index(
        "ix_callbacks_pending_subject",
        "callbacks",
        ["subject_id", "sequence"],
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index("ix_callbacks_account_state", "callbacks", ["account_id", "state", "id"])
    op.create_table(
        "callback_attempts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("callback_id", sa.BigInteger, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("url", sa.Text),
        sa.Column("status_code", sa.Integer),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_callback_attempts_callback_id", "callback_attempts", ["callback_id"])


def downgrade() -> None:
    op.drop_table("callback_attempts")
    op.drop_table("callbacks")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("voice_callback_disabled")
        batch.drop_column("sms_callback_disabled")
        batch.drop_column("secret_rotated_at")
        batch.drop_column("previous_webhook_secret")
