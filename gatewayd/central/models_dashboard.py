"""Tables of the HQ dashboard: admin users, web sessions, gateway health and alerts.

Mirrored by migration 0006. Times are integer epoch milliseconds like every other table.
"""

from __future__ import annotations

import sqlalchemy as sa

from .models import metadata


def _millis(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


admin_users = sa.Table(
    "admin_users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    # argon2id hash in PHC format; the password itself is never stored.
    sa.Column("password_hash", sa.String(200), nullable=False),
    _millis("created_at"),
    _millis("disabled_at", nullable=True),
)

web_sessions = sa.Table(
    "web_sessions",
    metadata,
    # SHA-256 of the cookie value: a stolen database row does not open a session.
    sa.Column("id_hash", sa.String(64), primary_key=True),
    # Who the session is for: "admin" (dashboard) or, later, "member" (member portal).
    sa.Column("realm", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(64), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    _millis("created_at"),
    _millis("last_seen_at"),
)

login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # "account:<realm>:<name>" or "address:<ip>": one failed attempt counts against both.
    sa.Column("key", sa.String(200), nullable=False),
    _millis("at"),
    sa.Index("ix_login_failures_key_at", "key", "at"),
)

gateway_health = sa.Table(
    "gateway_health",
    metadata,
    sa.Column("gateway_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64)),
    sa.Column("uptime_s", sa.BigInteger),
    sa.Column("backlog", sa.Integer, nullable=False),
    sa.Column("dropped", sa.BigInteger, nullable=False),
    sa.Column("events_total", sa.BigInteger, nullable=False),
    # Identify events per minute between the last two heartbeats (None after a restart).
    sa.Column("event_rate", sa.Float),
    _millis("last_identification_at", nullable=True),
    # JSON: [{"id", "state", "since", "detail"?}]; "since" is when the state began (ms).
    sa.Column("devices", sa.Text, nullable=False),
    sa.Column("devices_bad", sa.Integer, nullable=False),
    # JSON: the gateway's recent warnings and errors (bounded, already masked).
    sa.Column("errors", sa.Text, nullable=False),
    # JSON: the last heartbeats' summaries [{"at", "rate", "backlog", "bad"}].
    sa.Column("history", sa.Text, nullable=False),
    _millis("updated_at"),
    # When something the overview shows as a state changed (device states, version, return
    # from stale): the live stream sends rows changed since its last poll.
    _millis("changed_at"),
    sa.Index("ix_gateway_health_changed_at", "changed_at"),
)

alert_rules = sa.Table(
    "alert_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    # "gateway_offline" (minutes), "device_failed" (minutes), "backlog_over" (items).
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("threshold", sa.Integer, nullable=False),
    # None: the whole chain; else one store.
    sa.Column("store_id", sa.String(64)),
    # JSON: [{"channel", "address"}].
    sa.Column("recipients", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    _millis("created_at"),
)

alert_incidents = sa.Table(
    "alert_incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule_id", sa.Integer, sa.ForeignKey("alert_rules.id"), nullable=False, index=True),
    # What the incident is about: a gateway id, or "gateway/device".
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("store_id", sa.String(64)),
    # "<rule>:<subject>" while open, NULL once resolved: the unique key that lets several
    # workers evaluate the same rules and still fire each incident exactly once.
    sa.Column("open_key", sa.String(300), unique=True),
    sa.Column("detail", sa.String(500), nullable=False),
    _millis("fired_at"),
    _millis("resolved_at", nullable=True),
    # Deliveries handed to the notification senders, and the last delivery problem.
    sa.Column("notified", sa.Integer, nullable=False),
    sa.Column("delivery_error", sa.String(500)),
    sa.Index("ix_alert_incidents_fired_at", "fired_at"),
)
