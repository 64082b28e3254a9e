"""Catalog and pricing tables: categories, products, level factors, rules, store settings.

Factors are stored as decimal text (``"0.95"``, ``"2"``), never as floats: SQLite has no
exact decimal type, and text round-trips through ``Decimal`` exactly on both backends.
``catalog_version`` is one row whose counter every catalog write bumps in its own
transaction; each process compares it with its cached snapshot before pricing (``catalog.py``).
The migration ``0004_catalog`` mirrors these tables.
"""

from __future__ import annotations

import sqlalchemy as sa

from .models import metadata

FACTOR = sa.String(24)

catalog_version = sa.Table(
    "catalog_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)

catalog_categories = sa.Table(
    "catalog_categories",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

catalog_products = sa.Table(
    "catalog_products",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("category_id", sa.String(64), sa.ForeignKey("catalog_categories.id"), index=True),
    sa.Column("price_fen", sa.BigInteger, nullable=False),
    # What one unit is ("piece", "kg", "hour"); quantities may have 3 decimals.
    sa.Column("unit", sa.String(16), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# A member level's price and points factors (level ids are the strings in members.level).
level_factors = sa.Table(
    "level_factors",
    metadata,
    sa.Column("level", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("discount", FACTOR, nullable=False),
    sa.Column("points", FACTOR, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

store_pricing = sa.Table(
    "store_pricing",
    metadata,
    sa.Column("store_id", sa.String(64), sa.ForeignKey("stores.id"), primary_key=True),
    # IANA zone for time slots and birthdays, e.g. Asia/Shanghai.
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

pricing_rules = sa.Table(
    "pricing_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # level | product | category | birthday | store | time_slot | order_amount
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    # None: chain-wide; a store-specific rule overrides a chain-wide one of the same kind.
    sa.Column("store_id", sa.String(64), sa.ForeignKey("stores.id"), index=True),
    # The level a level rule is for; on other kinds an optional restriction to that level.
    sa.Column("level", sa.String(32)),
    sa.Column("members_only", sa.Boolean, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("discount", FACTOR, nullable=False),
    sa.Column("points", FACTOR, nullable=False),
    sa.Column("product_id", sa.String(64)),
    sa.Column("category_id", sa.String(64)),
    sa.Column("birthday_window", sa.String(8)),  # day | week | month
    sa.Column("slot", sa.String(8)),  # weekly | monthly | yearly | date
    sa.Column("slot_days", sa.String(100)),  # "1,3": ISO weekdays or days of the month
    sa.Column("slot_date", sa.String(10)),  # "MM-DD" (yearly) or "YYYY-MM-DD" (date)
    sa.Column("time_from", sa.Integer),  # minutes after local midnight, inclusive
    sa.Column("time_until", sa.Integer),  # exclusive
    sa.Column("min_fen", sa.BigInteger),  # order_amount: list total range, inclusive
    sa.Column("max_fen", sa.BigInteger),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
