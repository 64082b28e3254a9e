"""Member notifications (outbox, templates, opt-outs, replies, campaigns) and service plans.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _millis(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer),
        sa.Column("store_id", sa.String(64)),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("marketing", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        _millis("next_at"),
        sa.Column("claimed_by", sa.String(64)),
        _millis("claimed_until", nullable=True),
        sa.Column("last_error", sa.String(500)),
        sa.Column("provider_id", sa.String(128)),
        sa.Column("dedupe_key", sa.String(200), nullable=False),
        _millis("created_at"),
        _millis("sent_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("dedupe_key", name="uq_notifications_dedupe_key"),
    )
    op.create_index("ix_notifications_member_id", "notifications", ["member_id"])
    op.create_index("ix_notifications_status_next_at", "notifications", ["status", "next_at"])
    op.create_table(
        "notification_templates",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("text", sa.Text, nullable=False),
        _millis("updated_at"),
        sa.PrimaryKeyConstraint("kind", "channel", "store_id", name="pk_notification_templates"),
    )
    op.create_table(
        "notification_optouts",
        sa.Column("member_id", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        _millis("created_at"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_notification_optouts_member_id_members"
        ),
        sa.PrimaryKeyConstraint("member_id", "channel", name="pk_notification_optouts"),
    )
    op.create_table(
        "notification_replies",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128)),
        sa.Column("member_id", sa.Integer),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("opted_out", sa.Boolean, nullable=False),
        _millis("received_at"),
        sa.PrimaryKeyConstraint("id", name="pk_notification_replies"),
        sa.UniqueConstraint(
            "sender", "message_id", name="uq_notification_replies_sender_message_id"
        ),
    )
    op.create_index("ix_notification_replies_member_id", "notification_replies", ["member_id"])
    op.create_table(
        "notification_inbound_secrets",
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        _millis("created_at"),
        sa.PrimaryKeyConstraint("sender", name="pk_notification_inbound_secrets"),
    )
    op.create_table(
        "notification_campaigns",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("filter", sa.Text, nullable=False),
        sa.Column("queued", sa.Integer, nullable=False),
        _millis("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_notification_campaigns"),
        sa.UniqueConstraint("key", name="uq_notification_campaigns_key"),
    )
    op.create_table(
        "service_plans",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer, nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("text", sa.String(500), nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("remind_days_before", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _millis("remind_at"),
        _millis("created_at"),
        _millis("reminded_at", nullable=True),
        _millis("completed_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_service_plans_member_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name="fk_service_plans_store_id_stores"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_service_plans"),
    )
    op.create_index("ix_service_plans_member_id", "service_plans", ["member_id"])
    op.create_index("ix_service_plans_status_remind_at", "service_plans", ["status", "remind_at"])


def downgrade() -> None:
    op.drop_index("ix_service_plans_status_remind_at", "service_plans")
    op.drop_index("ix_service_plans_member_id", "service_plans")
    op.drop_table("service_plans")
    op.drop_table("notification_campaigns")
    op.drop_table("notification_inbound_secrets")
    op.drop_index("ix_notification_replies_member_id", "notification_replies")
    op.drop_table("notification_replies")
    op.drop_table("notification_optouts")
    op.drop_table("notification_templates")
    op.drop_index("ix_notifications_status_next_at", "notifications")
    op.drop_index("ix_notifications_member_id", "notifications")
    op.drop_table("notifications")
