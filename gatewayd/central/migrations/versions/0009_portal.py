"""The member portal: phone-change verification codes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_phone_codes",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer, nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("closed_at", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_portal_phone_codes"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_portal_phone_codes_member_id_members"
        ),
    )
    op.create_index("ix_portal_phone_codes_member_id", "portal_phone_codes", ["member_id"])


def downgrade() -> None:
    op.drop_table("portal_phone_codes")
