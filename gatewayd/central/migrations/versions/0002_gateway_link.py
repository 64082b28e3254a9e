"""The gateway link: records forwarded from gateway outboxes, and the central → gateway channel.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_records",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_records"),
        sa.UniqueConstraint("gateway_id", "key", name="uq_gateway_records_gateway_id_key"),
    )
    op.create_table(
        "channel_messages",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("gateway_id", sa.String(64)),
        sa.Column("terminal_id", sa.String(64)),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_channel_messages"),
    )
    op.create_index("ix_channel_messages_store_id", "channel_messages", ["store_id"])


def downgrade() -> None:
    op.drop_index("ix_channel_messages_store_id", "channel_messages")
    op.drop_table("channel_messages")
    op.drop_table("gateway_records")
