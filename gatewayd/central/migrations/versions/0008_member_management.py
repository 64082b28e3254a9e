"""Member management: custom fields, member stats for search, saved searches.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "custom_field_defs",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("required", sa.Boolean, nullable=False),
        sa.Column("searchable", sa.Boolean, nullable=False),
        sa.Column("default_json", sa.Text),
        sa.Column("choices_json", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_custom_field_defs"),
        sa.UniqueConstraint("entity", "key", name="uq_custom_field_defs_entity_key"),
    )
    op.create_table(
        "custom_values",
        sa.Column("entity", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("field_id", sa.Integer, nullable=False),
        sa.Column("value_text", sa.String(500)),
        sa.Column("value_number", sa.Float),
        sa.Column("value_date", sa.Date),
        sa.ForeignKeyConstraint(
            ["field_id"],
            ["custom_field_defs.id"],
            name="fk_custom_values_field_id_custom_field_defs",
        ),
        sa.PrimaryKeyConstraint("entity", "entity_id", "field_id", name="pk_custom_values"),
    )
    for kind in ("text", "number", "date"):
        op.create_index(
            f"ix_custom_values_{kind}", "custom_values", ["field_id", f"value_{kind}", "entity_id"]
        )
    op.create_table(
        "member_stats",
        sa.Column("member_id", sa.Integer, nullable=False),
        sa.Column("visits", sa.BigInteger, nullable=False),
        sa.Column("spent_fen", sa.BigInteger, nullable=False),
        sa.Column("last_visit_at", sa.BigInteger),
        sa.Column("last_seen_at", sa.BigInteger, nullable=False),
        sa.Column("home_store", sa.String(64)),
        sa.Column("birthday_month", sa.SmallInteger),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_member_stats_member_id_members"
        ),
        sa.PrimaryKeyConstraint("member_id", name="pk_member_stats"),
    )
    for column in ("last_visit_at", "last_seen_at", "home_store", "birthday_month"):
        op.create_index(f"ix_member_stats_{column}", "member_stats", [column])
    op.create_index("ix_member_stats_spent_fen", "member_stats", ["spent_fen"])
    op.create_index("ix_member_stats_visits", "member_stats", ["visits"])
    op.create_table(
        "member_stats_state",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_member_stats_state"),
    )
    op.create_table(
        "saved_searches",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("query_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_saved_searches"),
        sa.UniqueConstraint("name", name="uq_saved_searches_name"),
    )
    # Search filters and sorts on these member columns.
    for column in ("level", "points", "balance_fen"):
        op.create_index(f"ix_members_{column}", "members", [column])
    # Prefix search (LIKE 'x%') on PostgreSQL needs pattern ops under a non-C collation.
    op.create_index(
        "ix_members_name", "members", ["name"], postgresql_ops={"name": "varchar_pattern_ops"}
    )


def downgrade() -> None:
    for column in ("level", "points", "balance_fen", "name"):
        op.drop_index(f"ix_members_{column}", "members")
    for table in (
        "saved_searches",
        "member_stats_state",
        "member_stats",
        "custom_values",
        "custom_field_defs",
    ):
        op.drop_table(table)
