"""The stores each member was identified at, folded; no index on identifications.member_id.

Every identification is a row, inserted on the tills' hot path; the index on its member_id
dirtied one random page per insert (most of the WAL identify wrote) for a single reader, the
campaign filter "identified at this store", which reads ``member_store_visits`` now.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "member_store_visits",
        sa.Column("member_id", sa.Integer, nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("last_seen_at", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_member_store_visits_member_id_members"
        ),
        sa.PrimaryKeyConstraint("member_id", "store_id", name="pk_member_store_visits"),
    )
    # The visits so far (the fold adds later ones; it re-reads some, harmlessly: a maximum).
    op.execute(
        "INSERT INTO member_store_visits (member_id, store_id, last_seen_at) "
        "SELECT member_id, store_id, max(created_at) FROM identifications "
        "WHERE member_id IS NOT NULL AND status = 200 GROUP BY member_id, store_id"
    )
    op.drop_index("ix_identifications_member_id", table_name="identifications")


def downgrade() -> None:
    op.create_index("ix_identifications_member_id", "identifications", ["member_id"])
    op.drop_table("member_store_visits")
