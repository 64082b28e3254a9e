"""The HQ dashboard: admin users, web sessions, login failures, gateway health, alerts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_users",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("disabled_at", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_admin_users"),
        sa.UniqueConstraint("name", name="uq_admin_users_name"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("realm", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_seen_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name="pk_web_sessions"),
    )
    op.create_index("ix_web_sessions_subject", "web_sessions", ["subject"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_failures"),
    )
    op.create_index("ix_login_failures_key_at", "login_failures", ["key", "at"])
    op.create_table(
        "gateway_health",
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64)),
        sa.Column("uptime_s", sa.BigInteger),
        sa.Column("backlog", sa.Integer, nullable=False),
        sa.Column("dropped", sa.BigInteger, nullable=False),
        sa.Column("events_total", sa.BigInteger, nullable=False),
        sa.Column("event_rate", sa.Float),
        sa.Column("last_identification_at", sa.BigInteger),
        sa.Column("devices", sa.Text, nullable=False),
        sa.Column("devices_bad", sa.Integer, nullable=False),
        sa.Column("errors", sa.Text, nullable=False),
        sa.Column("history", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("changed_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", name="pk_gateway_health"),
    )
    op.create_index("ix_gateway_health_changed_at", "gateway_health", ["changed_at"])
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("store_id", sa.String(64)),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
    )
    op.create_table(
        "alert_incidents",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.Integer, nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("store_id", sa.String(64)),
        sa.Column("open_key", sa.String(300)),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("fired_at", sa.BigInteger, nullable=False),
        sa.Column("resolved_at", sa.BigInteger),
        sa.Column("notified", sa.Integer, nullable=False),
        sa.Column("delivery_error", sa.String(500)),
        sa.PrimaryKeyConstraint("id", name="pk_alert_incidents"),
        sa.ForeignKeyConstraint(
            ["rule_id"], ["alert_rules.id"], name="fk_alert_incidents_rule_id_alert_rules"
        ),
        sa.UniqueConstraint("open_key", name="uq_alert_incidents_open_key"),
    )
    op.create_index("ix_alert_incidents_rule_id", "alert_incidents", ["rule_id"])
    op.create_index("ix_alert_incidents_fired_at", "alert_incidents", ["fired_at"])


def downgrade() -> None:
    op.drop_table("alert_incidents")
    op.drop_table("alert_rules")
    op.drop_table("gateway_health")
    op.drop_table("login_failures")
    op.drop_table("web_sessions")
    op.drop_table("admin_users")
