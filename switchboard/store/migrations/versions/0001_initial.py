"""The first schema: accounts, keys, messages, destinations, their history and error logs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

# INTEGER on SQLite makes the key the rowid itself (see store/schema.py).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("sms_callback_url", sa.Text),
        sa.Column("voice_callback_url", sa.Text),
        sa.Column("webhook_secret", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.Text, nullable=False, unique=True),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger),
    )
    op.create_index("ix_api_keys_account_id", "api_keys", ["account_id"])
    op.create_table(
        "messages",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("reference_id", sa.Text),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("encoding", sa.Text, nullable=False),
        sa.Column("segments", sa.Integer, nullable=False),
        sa.Column("callback", sa.Text, nullable=False),
        sa.Column("callback_url", sa.Text),
        sa.Column("destination_count", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("schedule_at", sa.BigInteger),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("idempotency_key", sa.Text),
    )
    op.create_index("ix_messages_reference", "messages", ["account_id", "reference_id"])
    op.create_index(
        "ux_messages_idempotency",
        "messages",
        ["account_id", "idempotency_key"],
        unique=True,
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "destinations",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("message_id", sa.BigInteger, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("mobile_no", sa.Text, nullable=False),
        sa.Column("e164", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("error_log_id", sa.BigInteger),
        sa.Column("due_at", sa.BigInteger),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("carrier", sa.Text),
        sa.Column("carrier_ref", sa.Text),
        sa.Column("sequence", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("delivered_at", sa.BigInteger),
    )
    op.create_index(
        "ix_destinations_due",
        "destinations",
        ["due_at"],
        sqlite_where=sa.text("due_at IS NOT NULL"),
        postgresql_where=sa.text("due_at IS NOT NULL"),
    )
    op.create_index(
        "ix_destinations_carrier_ref",
        "destinations",
        ["carrier", "carrier_ref"],
        sqlite_where=sa.text("carrier_ref IS NOT NULL"),
        postgresql_where=sa.text("carrier_ref IS NOT NULL"),
    )
    op.create_table(
        "status_history",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("destination_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_status_history_destination_id", "status_history", ["destination_id"])
    op.create_table(
        "error_logs",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("destination_id", sa.BigInteger, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_error_logs_destination_id", "error_logs", ["destination_id"])
    if op.get_bind().dialect.name == "postgresql":
        # Hands each process a distinct node number for its id generator (domain.ids).
        op.execute("CREATE SEQUENCE switchboard_node_seq")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE switchboard_node_seq")
    for table in ("error_logs", "status_history", "destinations", "messages", "api_keys", "accounts"):
        op.drop_table(table)
