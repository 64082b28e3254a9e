"""The programme: ledger, idempotent requests, orders and refunds, levels, recharges, passes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "levels",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_levels")),
    )
    op.create_table(
        "pass_products",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=True),
        sa.Column("step_minutes", sa.Integer(), nullable=False),
        sa.Column("step_fen", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pass_products")),
    )
    op.create_table(
        "programme_requests",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programme_requests")),
        sa.UniqueConstraint(
            "store_id", "request_id", name=op.f("uq_programme_requests_store_id_request_id")
        ),
    )
    op.create_table(
        "programme_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_programme_settings")),
    )
    op.create_table(
        "ledger_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=16), nullable=False),
        sa.Column("pass_id", sa.Integer(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("refund_id", sa.Integer(), nullable=True),
        sa.Column("reverses_id", sa.BigInteger(), nullable=True),
        sa.Column("ref", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_ledger_entries_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index(
        "ix_ledger_entries_member_id_account",
        "ledger_entries",
        ["member_id", "account"],
        unique=False,
    )
    op.create_index(
        op.f("ix_ledger_entries_order_id"), "ledger_entries", ["order_id"], unique=False
    )
    op.create_index(
        op.f("ix_ledger_entries_store_id"), "ledger_entries", ["store_id"], unique=False
    )
    op.create_table(
        "member_passes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("expired_at", sa.BigInteger(), nullable=True),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("remaining >= 0", name="ck_member_passes_remaining"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_passes_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["pass_products.id"],
            name=op.f("fk_member_passes_product_id_pass_products"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_passes")),
    )
    op.create_index(
        op.f("ix_member_passes_member_id"), "member_passes", ["member_id"], unique=False
    )
    op.create_table(
        "member_programme",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("earned_points", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_programme_member_id_members")
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_programme")),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("terminal_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("list_fen", sa.BigInteger(), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("points_earned", sa.BigInteger(), nullable=False),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("quote", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_orders_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    op.create_index(op.f("ix_orders_member_id"), "orders", ["member_id"], unique=False)
    op.create_index(op.f("ix_orders_store_id"), "orders", ["store_id"], unique=False)
    op.create_table(
        "recharge_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("level", sa.String(length=32), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("bonus_fen", sa.BigInteger(), nullable=False),
        sa.Column("bonus_points", sa.BigInteger(), nullable=False),
        sa.Column("every_days", sa.Integer(), nullable=False),
        sa.Column("periodic_fen", sa.BigInteger(), nullable=False),
        sa.Column("times", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["level"], ["levels.code"], name=op.f("fk_recharge_rules_level_levels")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recharge_rules")),
    )
    op.create_table(
        "upgrade_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("from_level", sa.String(length=32), nullable=False),
        sa.Column("to_level", sa.String(length=32), nullable=False),
        sa.Column("min_earned_points", sa.BigInteger(), nullable=False),
        sa.Column("deduct_points", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["from_level"], ["levels.code"], name=op.f("fk_upgrade_rules_from_level_levels")
        ),
        sa.ForeignKeyConstraint(
            ["to_level"], ["levels.code"], name=op.f("fk_upgrade_rules_to_level_levels")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upgrade_rules")),
        sa.UniqueConstraint("from_level", name=op.f("uq_upgrade_rules_from_level")),
    )
    op.create_table(
        "order_payments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("pass_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_payments_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_payments")),
    )
    op.create_index(
        op.f("ix_order_payments_order_id"), "order_payments", ["order_id"], unique=False
    )
    op.create_table(
        "recharges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("terminal_id", sa.String(length=64), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_recharges_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"], ["recharge_rules.id"], name=op.f("fk_recharges_rule_id_recharge_rules")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recharges")),
    )
    op.create_index(op.f("ix_recharges_member_id"), "recharges", ["member_id"], unique=False)
    op.create_table(
        "refunds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("terminal_id", sa.String(length=64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_refunds_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
    )
    op.create_index(op.f("ix_refunds_order_id"), "refunds", ["order_id"], unique=False)
    op.create_table(
        "time_sessions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("pass_id", sa.Integer(), nullable=True),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("terminal_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("stopped_at", sa.BigInteger(), nullable=True),
        sa.Column("billed_minutes", sa.BigInteger(), nullable=True),
        sa.Column("pass_minutes", sa.BigInteger(), nullable=True),
        sa.Column("charged_fen", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_time_sessions_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["pass_id"], ["member_passes.id"], name=op.f("fk_time_sessions_pass_id_member_passes")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["pass_products.id"],
            name=op.f("fk_time_sessions_product_id_pass_products"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_time_sessions")),
    )
    op.create_index(
        op.f("ix_time_sessions_member_id"), "time_sessions", ["member_id"], unique=False
    )
    op.create_table(
        "scheduled_bonuses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recharge_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", sa.BigInteger(), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_scheduled_bonuses_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["recharge_id"],
            ["recharges.id"],
            name=op.f("fk_scheduled_bonuses_recharge_id_recharges"),
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["recharge_rules.id"],
            name=op.f("fk_scheduled_bonuses_rule_id_recharge_rules"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_bonuses")),
        sa.UniqueConstraint(
            "recharge_id", "period", name=op.f("uq_scheduled_bonuses_recharge_id_period")
        ),
    )
    op.create_index("ix_scheduled_bonuses_due_at", "scheduled_bonuses", ["due_at"], unique=False)
    op.create_index(
        op.f("ix_scheduled_bonuses_member_id"), "scheduled_bonuses", ["member_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_order_id", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_store_id", table_name="ledger_entries")
    op.drop_index("ix_member_passes_member_id", table_name="member_passes")
    op.drop_index("ix_orders_member_id", table_name="orders")
    op.drop_index("ix_orders_store_id", table_name="orders")
    op.drop_index("ix_order_payments_order_id", table_name="order_payments")
    op.drop_index("ix_recharges_member_id", table_name="recharges")
    op.drop_index("ix_refunds_order_id", table_name="refunds")
    op.drop_index("ix_time_sessions_member_id", table_name="time_sessions")
    op.drop_index("ix_scheduled_bonuses_member_id", table_name="scheduled_bonuses")
    op.drop_index("ix_ledger_entries_member_id_account", table_name="ledger_entries")
    op.drop_index("ix_scheduled_bonuses_due_at", table_name="scheduled_bonuses")
    op.drop_table("scheduled_bonuses")
    op.drop_table("time_sessions")
    op.drop_table("refunds")
    op.drop_table("recharges")
    op.drop_table("order_payments")
    op.drop_table("upgrade_rules")
    op.drop_table("recharge_rules")
    op.drop_table("orders")
    op.drop_table("member_programme")
    op.drop_table("member_passes")
    op.drop_table("ledger_entries")
    op.drop_table("programme_settings")
    op.drop_table("programme_requests")
    op.drop_table("pass_products")
    op.drop_table("levels")
