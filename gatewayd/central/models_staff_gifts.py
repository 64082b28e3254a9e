"""Staff and gift registries: the minimal tables custom fields hang on (issue 8).

On the shared ``metadata`` of ``models.py``; migration ``0010`` mirrors them. Both are
deliberately small: who works where (staff) and what members could be given for points
(gifts). Rows are deactivated, never deleted, so anything that later names a staff member
or a gift (commissions, redemptions) still resolves. Their custom values live in
``custom_values`` with entity ``staff`` / ``gift`` and the row id as decimal text.
"""

from __future__ import annotations

import sqlalchemy as sa

from .models import metadata

staff = sa.Table(
    "staff",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("store_id", sa.String(64), sa.ForeignKey("stores.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    # A chain's own role names ("cashier", "manager", "trainer"): a-z 0-9 _.
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

gifts = sa.Table(
    "gifts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    # What a member would pay for one, in points (whole points, never floats).
    sa.Column("points_cost", sa.BigInteger, nullable=False),
    # Pieces on hand, as HQ last set it.
    sa.Column("stock", sa.BigInteger, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
