"""The database schema as SQLAlchemy Core tables (the Alembic migrations mirror it).

Core, not ORM objects: identify is a hot path and seeding a million members must be a bulk
insert. Times are integer epoch milliseconds (UTC) so SQLite and PostgreSQL compare them the
same way; money is integer minor units (fen).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _millis(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


chain_settings = sa.Table(
    "chain_settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

stores = sa.Table(
    "stores",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("address", sa.String(500)),
    _millis("created_at"),
)

terminals = sa.Table(
    "terminals",
    metadata,
    sa.Column("store_id", sa.String(64), sa.ForeignKey("stores.id"), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    _millis("created_at"),
)

gateways = sa.Table(
    "gateways",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("store_id", sa.String(64), sa.ForeignKey("stores.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    _millis("created_at"),
    _millis("last_seen_at", nullable=True),
    # The last heartbeat's device states and counters, as JSON text.
    sa.Column("status", sa.Text),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # SHA-256 of the key: keys are 256-bit random, so a fast hash is enough.
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("gateway_id", sa.String(64), sa.ForeignKey("gateways.id"), index=True),
    sa.Column("name", sa.String(200), nullable=False),
    _millis("created_at"),
    _millis("revoked_at", nullable=True),
)

members = sa.Table(
    "members",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("phone", sa.String(20), unique=True),
    sa.Column("gender", sa.String(8)),
    sa.Column("birthday", sa.Date),
    sa.Column("level", sa.String(32), nullable=False),
    # HMAC-SHA256 of the ID number under the configured secret, and its last 4 characters.
    sa.Column("id_hash", sa.String(64), unique=True),
    sa.Column("id_last4", sa.String(4)),
    sa.Column("address", sa.String(500)),
    sa.Column("email", sa.String(320)),
    sa.Column("notes", sa.Text),
    sa.Column("password_hash", sa.String(200)),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("balance_fen", sa.BigInteger, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    _millis("created_at"),
    _millis("updated_at"),
)

cards = sa.Table(
    "cards",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    sa.Column("number", sa.String(40), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("is_main", sa.Boolean, nullable=False),
    # False for imported legacy numbers that carry no Luhn check digit.
    sa.Column("checked", sa.Boolean, nullable=False),
    sa.Column("member_code", sa.String(20), nullable=False, unique=True),
    sa.Column("legacy_code", sa.String(36), unique=True),
    sa.Column("ic_uid", sa.String(20), unique=True),
    sa.Column("active", sa.Boolean, nullable=False),
    _millis("created_at"),
    _millis("last_used_at", nullable=True),
)

payment_bindings = sa.Table(
    "payment_bindings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("account_id", sa.String(128), nullable=False),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    sa.Column("card_id", sa.Integer, sa.ForeignKey("cards.id"), nullable=False),
    _millis("created_at"),
    sa.UniqueConstraint("provider", "account_id", "card_id"),
)

consumption_codes = sa.Table(
    "consumption_codes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    # HMAC-SHA256 of the code under the configured secret; the code itself is never stored.
    sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("last4", sa.String(4), nullable=False),
    _millis("issued_at"),
    _millis("expires_at"),
    _millis("used_at", nullable=True),
    sa.Column("used_store", sa.String(64)),
    sa.Column("used_terminal", sa.String(64)),
    sa.Column("debited_fen", sa.BigInteger),
)

identifications = sa.Table(
    "identifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("store_id", sa.String(64), nullable=False),
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("gateway_id", sa.String(64)),
    sa.Column("event_id", sa.String(64)),
    sa.Column("token_kind", sa.String(32), nullable=False),
    sa.Column("token_last4", sa.String(4), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    # Not indexed: every identify inserts a row, and an index on this column dirtied a random
    # page each time. "Members identified at a store" is ``member_store_visits``.
    sa.Column("member_id", sa.Integer),
    sa.Column("card_id", sa.Integer),
    # True when the card used was a secondary card (the receipt shows its number).
    sa.Column("secondary_card", sa.Boolean),
    sa.Column("status", sa.Integer, nullable=False),
    # The answer as sent, so a replayed event_id gets exactly the same answer.
    sa.Column("response", sa.Text, nullable=False),
    _millis("created_at"),
    sa.UniqueConstraint("store_id", "event_id"),
)

# -- the gateway link (issue 6): records forwarded by gateways' outboxes, and the channel ----

gateway_records = sa.Table(
    "gateway_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("gateway_id", sa.String(64), nullable=False),
    # "device" (a state change) or "heartbeat"; identifications go to their own table.
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key", sa.String(128), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    _millis("received_at"),
    sa.UniqueConstraint("gateway_id", "key"),
)

channel_messages = sa.Table(
    "channel_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("store_id", sa.String(64), nullable=False, index=True),
    # None: for every gateway of the store (terminal messages); else one gateway (commands).
    sa.Column("gateway_id", sa.String(64)),
    sa.Column("terminal_id", sa.String(64)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    _millis("created_at"),
)
