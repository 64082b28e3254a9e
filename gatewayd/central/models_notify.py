"""Tables of member notifications and service plans (migration 0005 mirrors them).

Times are epoch milliseconds (UTC) as everywhere in central. ``notifications`` is the outbox:
a row is written in the transaction of the change it reports and sent later by a dispatcher
that leases rows (``claimed_by``/``claimed_until``), so several workers never send one twice.
"""

from __future__ import annotations

import sqlalchemy as sa

from .models import metadata


def _millis(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # None for staff alerts (``Notifications.send_to``).
    sa.Column("member_id", sa.Integer, index=True),
    sa.Column("store_id", sa.String(64)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("subject", sa.String(200)),
    sa.Column("text", sa.Text, nullable=False),
    # Held by quiet hours (marketing) or sent day and night (transactional).
    sa.Column("marketing", sa.Boolean, nullable=False),
    # pending → sent | failed | skipped (opted out before it was sent)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    _millis("next_at"),
    sa.Column("claimed_by", sa.String(64)),
    _millis("claimed_until", nullable=True),
    sa.Column("last_error", sa.String(500)),
    sa.Column("provider_id", sa.String(128)),
    # One row per fact and channel: a retried request or a second scheduler run adds nothing.
    sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True),
    _millis("created_at"),
    _millis("sent_at", nullable=True),
    sa.Index("ix_notifications_status_next_at", "status", "next_at"),
)

notification_templates = sa.Table(
    "notification_templates",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    # "" for the whole chain (not NULL: a primary key column cannot be NULL).
    sa.Column("store_id", sa.String(64), primary_key=True),
    sa.Column("subject", sa.String(200)),
    sa.Column("text", sa.Text, nullable=False),
    _millis("updated_at"),
)

notification_optouts = sa.Table(
    "notification_optouts",
    metadata,
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    # "member" (asked at a till or by the admin) or "reply" (a TD/退订 answer).
    sa.Column("source", sa.String(16), nullable=False),
    _millis("created_at"),
)

notification_replies = sa.Table(
    "notification_replies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sender", sa.String(64), nullable=False),
    # The gateway's own id for the reply, when it sends one: a re-posted reply is stored once.
    sa.Column("message_id", sa.String(128)),
    sa.Column("member_id", sa.Integer, index=True),
    sa.Column("phone", sa.String(20), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("opted_out", sa.Boolean, nullable=False),
    _millis("received_at"),
    sa.UniqueConstraint("sender", "message_id"),
)

notification_inbound_secrets = sa.Table(
    "notification_inbound_secrets",
    metadata,
    sa.Column("sender", sa.String(64), primary_key=True),
    # SHA-256 of a 256-bit random token (a slow hash buys nothing for it).
    sa.Column("token_hash", sa.String(64), nullable=False),
    _millis("created_at"),
)

notification_campaigns = sa.Table(
    "notification_campaigns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # The admin's idempotency key: posting the same campaign twice queues it once.
    sa.Column("key", sa.String(128), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(200)),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("filter", sa.Text, nullable=False),
    sa.Column("queued", sa.Integer, nullable=False),
    _millis("created_at"),
)

service_plans = sa.Table(
    "service_plans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    sa.Column("store_id", sa.String(64), sa.ForeignKey("stores.id"), nullable=False),
    sa.Column("text", sa.String(500), nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("remind_days_before", sa.Integer, nullable=False),
    # open → reminded → completed; open → completed; cancelled.
    sa.Column("status", sa.String(16), nullable=False),
    # When the reminder is due (start of the remind day, store-local, as epoch ms).
    _millis("remind_at"),
    _millis("created_at"),
    _millis("reminded_at", nullable=True),
    _millis("completed_at", nullable=True),
    sa.Index("ix_service_plans_status_remind_at", "status", "remind_at"),
)
