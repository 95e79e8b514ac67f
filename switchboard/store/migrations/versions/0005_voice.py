"""Voice: Call requests, their calls (a work queue like destinations) and campaigns.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "call_requests",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("reference_id", sa.Text),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("locale", sa.Text),
        sa.Column("campaign_id", sa.Text),
        sa.Column("callback", sa.Text, nullable=False),
        sa.Column("callback_url", sa.Text),
        sa.Column("ring_timeout", sa.Integer, nullable=False),
        sa.Column("destination_count", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("idempotency_key", sa.Text),
    )
    op.create_index("ix_call_requests_reference", "call_requests", ["account_id", "reference_id"])
    op.create_index(
        "ux_call_requests_idempotency",
        "call_requests",
        ["account_id", "idempotency_key"],
        unique=True,
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "calls",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("request_id", sa.BigInteger, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("guid", sa.Text, nullable=False),
        sa.Column("mobile_no", sa.Text, nullable=False),
        sa.Column("e164", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("detail", sa.Text),
        sa.Column("due_at", sa.BigInteger),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("trunk", sa.Text),
        sa.Column("call_time", sa.BigInteger),
        sa.Column("answer_time", sa.BigInteger),
        sa.Column("end_time", sa.BigInteger),
        sa.Column("cancel_requested", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_calls_due",
        "calls",
        ["due_at"],
        sqlite_where=sa.text("due_at IS NOT NULL"),
        postgresql_where=sa.text("due_at IS NOT NULL"),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("locale", sa.Text),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("audio", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("deleted_at", sa.BigInteger),
    )
    op.create_index("ix_campaigns_account", "campaigns", ["account_id", "created_at"])


def downgrade() -> None:
    op.drop_table("campaigns")
    op.drop_table("calls")
    op.drop_table("call_requests")
