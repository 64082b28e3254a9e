"""Catalog and pricing: categories, products, level factors, rules, store pricing settings.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FACTOR = sa.String(24)


def upgrade() -> None:
    version = op.create_table(
        "catalog_version",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_catalog_version"),
    )
    op.bulk_insert(version, [{"id": 1, "version": 1}])
    op.create_table(
        "catalog_categories",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_catalog_categories"),
    )
    op.create_table(
        "catalog_products",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category_id", sa.String(64)),
        sa.Column("price_fen", sa.BigInteger, nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_catalog_products"),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["catalog_categories.id"],
            name="fk_catalog_products_category_id_catalog_categories",
        ),
    )
    op.create_index("ix_catalog_products_category_id", "catalog_products", ["category_id"])
    op.create_table(
        "level_factors",
        sa.Column("level", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("discount", FACTOR, nullable=False),
        sa.Column("points", FACTOR, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("level", name="pk_level_factors"),
    )
    op.create_table(
        "store_pricing",
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("store_id", name="pk_store_pricing"),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name="fk_store_pricing_store_id_stores"
        ),
    )
    op.create_table(
        "pricing_rules",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("store_id", sa.String(64)),
        sa.Column("level", sa.String(32)),
        sa.Column("members_only", sa.Boolean, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("discount", FACTOR, nullable=False),
        sa.Column("points", FACTOR, nullable=False),
        sa.Column("product_id", sa.String(64)),
        sa.Column("category_id", sa.String(64)),
        sa.Column("birthday_window", sa.String(8)),
        sa.Column("slot", sa.String(8)),
        sa.Column("slot_days", sa.String(100)),
        sa.Column("slot_date", sa.String(10)),
        sa.Column("time_from", sa.Integer),
        sa.Column("time_until", sa.Integer),
        sa.Column("min_fen", sa.BigInteger),
        sa.Column("max_fen", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pricing_rules"),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name="fk_pricing_rules_store_id_stores"
        ),
    )
    op.create_index("ix_pricing_rules_store_id", "pricing_rules", ["store_id"])


def downgrade() -> None:
    op.drop_index("ix_pricing_rules_store_id", "pricing_rules")
    op.drop_table("pricing_rules")
    op.drop_table("store_pricing")
    op.drop_table("level_factors")
    op.drop_index("ix_catalog_products_category_id", "catalog_products")
    op.drop_table("catalog_products")
    op.drop_table("catalog_categories")
    op.drop_table("catalog_version")
