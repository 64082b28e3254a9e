"""The programme's tables: ledger, idempotent requests, orders, levels, recharges, passes.

On the shared ``metadata`` of ``models.py``; migration ``0003`` mirrors them. The ledger is
the source of truth for every balance: ``members.points`` and ``members.balance_fen``,
``member_programme.earned_points`` and ``member_passes.remaining`` are caches that the
posting code updates in the same transaction as the entry (``gatewayd central ledger
verify`` recomputes them). Times are epoch milliseconds, money is fen.
"""

from __future__ import annotations

import sqlalchemy as sa

from .models import metadata

# Row ids that grow with every posting: BIGINT on PostgreSQL, INTEGER (the rowid) on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _millis(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


programme_requests = sa.Table(
    "programme_requests",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("store_id", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    # What the request did (order, refund, recharge, ...) and a hash of its body: a retry
    # must send the same body, else 409.
    sa.Column("operation", sa.String(32), nullable=False),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    # The first answer, byte for byte, replayed to every retry.
    sa.Column("response", sa.Text, nullable=False),
    _millis("created_at"),
    sa.UniqueConstraint("store_id", "request_id"),
)

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False),
    # The store the entry is attributed to (settlement); "_hq" for HQ's own postings.
    sa.Column("store_id", sa.String(64), nullable=False, index=True),
    # points | stored_value | earned | count_card | time_card
    sa.Column("account", sa.String(16), nullable=False),
    sa.Column("pass_id", sa.Integer),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("balance_after", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("order_id", sa.Integer, index=True),
    sa.Column("refund_id", sa.Integer),
    sa.Column("reverses_id", sa.BigInteger),
    # What caused it beyond an order: "recharge:12", "bonus:40", "session:3", ...
    sa.Column("ref", sa.String(64)),
    _millis("created_at"),
    sa.Index("ix_ledger_entries_member_id_account", "member_id", "account"),
)

member_programme = sa.Table(
    "member_programme",
    metadata,
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), primary_key=True),
    # Cumulative points earned by spending (refunds take theirs back): levels follow this,
    # never the current balance.
    sa.Column("earned_points", sa.BigInteger, nullable=False),
)

programme_settings = sa.Table(
    "programme_settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

levels = sa.Table(
    "levels",
    metadata,
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    _millis("created_at"),
)

upgrade_rules = sa.Table(
    "upgrade_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("from_level", sa.String(32), sa.ForeignKey("levels.code"), nullable=False),
    sa.Column("to_level", sa.String(32), sa.ForeignKey("levels.code"), nullable=False),
    sa.Column("min_earned_points", sa.BigInteger, nullable=False),
    sa.Column("deduct_points", sa.BigInteger, nullable=False),
    _millis("created_at"),
    sa.UniqueConstraint("from_level"),
)

recharge_rules = sa.Table(
    "recharge_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # None: for every level without a rule of its own.
    sa.Column("level", sa.String(32), sa.ForeignKey("levels.code")),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("bonus_fen", sa.BigInteger, nullable=False),
    sa.Column("bonus_points", sa.BigInteger, nullable=False),
    sa.Column("every_days", sa.Integer, nullable=False),
    sa.Column("periodic_fen", sa.BigInteger, nullable=False),
    sa.Column("times", sa.Integer, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    _millis("created_at"),
)

recharges = sa.Table(
    "recharges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    sa.Column("store_id", sa.String(64), nullable=False),
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("rule_id", sa.Integer, sa.ForeignKey("recharge_rules.id")),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    _millis("created_at"),
)

scheduled_bonuses = sa.Table(
    "scheduled_bonuses",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recharge_id", sa.Integer, sa.ForeignKey("recharges.id"), nullable=False),
    sa.Column("rule_id", sa.Integer, sa.ForeignKey("recharge_rules.id"), nullable=False),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    sa.Column("store_id", sa.String(64), nullable=False),
    sa.Column("period", sa.Integer, nullable=False),
    _millis("due_at"),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    _millis("paid_at", nullable=True),
    sa.Column("entry_id", sa.BigInteger),
    # One payment per (recharge = rule and member, period), however many schedulers run.
    sa.UniqueConstraint("recharge_id", "period"),
    sa.Index("ix_scheduled_bonuses_due_at", "due_at"),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("store_id", sa.String(64), nullable=False, index=True),
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), index=True),
    # "product" (lines, priced by pricing) or "quick" (an amount only)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("list_fen", sa.BigInteger, nullable=False),
    sa.Column("total_fen", sa.BigInteger, nullable=False),
    sa.Column("points_earned", sa.BigInteger, nullable=False),
    sa.Column("refunded_fen", sa.BigInteger, nullable=False),
    # The quote as priced at commit (JSON): what a refund of lines is measured against.
    sa.Column("quote", sa.Text, nullable=False),
    _millis("created_at"),
)

order_payments = sa.Table(
    "order_payments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False, index=True),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("uses", sa.Integer, nullable=False),
    sa.Column("pass_id", sa.Integer),
)

refunds = sa.Table(
    "refunds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False, index=True),
    sa.Column("store_id", sa.String(64), nullable=False),
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    _millis("created_at"),
)

pass_products = sa.Table(
    "pass_products",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    # "count" (uses, e.g. 10 swims) or "time" (prepaid minutes, e.g. billiards)
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("price_fen", sa.BigInteger, nullable=False),
    sa.Column("valid_days", sa.Integer),
    # Time cards: sessions are billed per started ``step_minutes``; without prepaid minutes
    # each step costs ``step_fen`` of stored value.
    sa.Column("step_minutes", sa.Integer, nullable=False),
    sa.Column("step_fen", sa.BigInteger, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    _millis("created_at"),
)

member_passes = sa.Table(
    "member_passes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    sa.Column("product_id", sa.Integer, sa.ForeignKey("pass_products.id"), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("remaining", sa.BigInteger, nullable=False),
    _millis("expires_at", nullable=True),
    _millis("expired_at", nullable=True),
    sa.Column("store_id", sa.String(64), nullable=False),
    _millis("created_at"),
    sa.CheckConstraint("remaining >= 0", name="ck_member_passes_remaining"),
)

time_sessions = sa.Table(
    "time_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    sa.Column("product_id", sa.Integer, sa.ForeignKey("pass_products.id"), nullable=False),
    sa.Column("pass_id", sa.Integer, sa.ForeignKey("member_passes.id")),
    sa.Column("store_id", sa.String(64), nullable=False),
    sa.Column("terminal_id", sa.String(64), nullable=False),
    _millis("started_at"),
    _millis("stopped_at", nullable=True),
    sa.Column("billed_minutes", sa.BigInteger),
    sa.Column("pass_minutes", sa.BigInteger),
    sa.Column("charged_fen", sa.BigInteger),
)
