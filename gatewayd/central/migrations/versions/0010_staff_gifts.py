"""Staff and gift registries; custom fields a member may edit in the portal.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
# Not 0002 like the other feature branches: this one alters 0008's table, so it must run
# after 0008. (``depends_on`` would order them too, but then the version table drops 0008
# while ``migrate.head_revision`` still lists it, and central refuses the database.)
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name="fk_staff_store_id_stores"),
        sa.PrimaryKeyConstraint("id", name="pk_staff"),
    )
    op.create_index("ix_staff_store_id", "staff", ["store_id"])
    op.create_table(
        "gifts",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("points_cost", sa.BigInteger, nullable=False),
        sa.Column("stock", sa.BigInteger, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gifts"),
    )
    # Existing fields stay read-only in the portal until HQ says otherwise.
    op.add_column(
        "custom_field_defs",
        sa.Column("member_editable", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("custom_field_defs") as batch:
        batch.drop_column("member_editable")
    op.drop_table("gifts")
    op.drop_table("staff")
