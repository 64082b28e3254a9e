"""Initial schema: stores, terminals, gateways, keys, members, cards, codes, identifications.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _millis(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "chain_settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_chain_settings"),
    )
    op.create_table(
        "stores",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("address", sa.String(500)),
        _millis("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_stores"),
    )
    op.create_table(
        "terminals",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        _millis("created_at"),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name="fk_terminals_store_id_stores"),
        sa.PrimaryKeyConstraint("store_id", "id", name="pk_terminals"),
    )
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        _millis("created_at"),
        _millis("last_seen_at", nullable=True),
        sa.Column("status", sa.Text),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name="fk_gateways_store_id_stores"),
        sa.PrimaryKeyConstraint("id", name="pk_gateways"),
    )
    op.create_index("ix_gateways_store_id", "gateways", ["store_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("gateway_id", sa.String(64)),
        sa.Column("name", sa.String(200), nullable=False),
        _millis("created_at"),
        _millis("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name="fk_api_keys_gateway_id_gateways"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_gateway_id", "api_keys", ["gateway_id"])
    op.create_table(
        "members",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(20)),
        sa.Column("gender", sa.String(8)),
        sa.Column("birthday", sa.Date),
        sa.Column("level", sa.String(32), nullable=False),
        sa.Column("id_hash", sa.String(64)),
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
        sa.PrimaryKeyConstraint("id", name="pk_members"),
        sa.UniqueConstraint("phone", name="uq_members_phone"),
        sa.UniqueConstraint("id_hash", name="uq_members_id_hash"),
    )
    op.create_table(
        "cards",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer, nullable=False),
        sa.Column("number", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("is_main", sa.Boolean, nullable=False),
        sa.Column("checked", sa.Boolean, nullable=False),
        sa.Column("member_code", sa.String(20), nullable=False),
        sa.Column("legacy_code", sa.String(36)),
        sa.Column("ic_uid", sa.String(20)),
        sa.Column("active", sa.Boolean, nullable=False),
        _millis("created_at"),
        _millis("last_used_at", nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name="fk_cards_member_id_members"),
        sa.PrimaryKeyConstraint("id", name="pk_cards"),
        sa.UniqueConstraint("number", name="uq_cards_number"),
        sa.UniqueConstraint("member_code", name="uq_cards_member_code"),
        sa.UniqueConstraint("legacy_code", name="uq_cards_legacy_code"),
        sa.UniqueConstraint("ic_uid", name="uq_cards_ic_uid"),
    )
    op.create_index("ix_cards_member_id", "cards", ["member_id"])
    op.create_table(
        "payment_bindings",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("member_id", sa.Integer, nullable=False),
        sa.Column("card_id", sa.Integer, nullable=False),
        _millis("created_at"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_payment_bindings_member_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name="fk_payment_bindings_card_id_cards"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_payment_bindings"),
        sa.UniqueConstraint(
            "provider",
            "account_id",
            "card_id",
            name="uq_payment_bindings_provider_account_id_card_id",
        ),
    )
    op.create_index("ix_payment_bindings_member_id", "payment_bindings", ["member_id"])
    op.create_table(
        "consumption_codes",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer, nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        _millis("issued_at"),
        _millis("expires_at"),
        _millis("used_at", nullable=True),
        sa.Column("used_store", sa.String(64)),
        sa.Column("used_terminal", sa.String(64)),
        sa.Column("debited_fen", sa.BigInteger),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_consumption_codes_member_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_consumption_codes"),
        sa.UniqueConstraint("code_hash", name="uq_consumption_codes_code_hash"),
    )
    op.create_index("ix_consumption_codes_member_id", "consumption_codes", ["member_id"])
    op.create_table(
        "identifications",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("gateway_id", sa.String(64)),
        sa.Column("event_id", sa.String(64)),
        sa.Column("token_kind", sa.String(32), nullable=False),
        sa.Column("token_last4", sa.String(4), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("member_id", sa.Integer),
        sa.Column("card_id", sa.Integer),
        sa.Column("secondary_card", sa.Boolean),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        _millis("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_identifications"),
        sa.UniqueConstraint("store_id", "event_id", name="uq_identifications_store_id_event_id"),
    )
    op.create_index("ix_identifications_member_id", "identifications", ["member_id"])


def downgrade() -> None:
    for table in (
        "identifications",
        "consumption_codes",
        "payment_bindings",
        "cards",
        "members",
        "api_keys",
        "gateways",
        "terminals",
        "stores",
        "chain_settings",
    ):
        op.drop_table(table)
