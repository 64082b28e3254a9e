"""Fleet operations: signed bundles, their per-gateway outcomes, command results, diagnostics.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_bundles",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("serial", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fleet_bundles"),
    )
    op.create_table(
        "fleet_deliveries",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("bundle_id", sa.Integer, nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.Column("message", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fleet_deliveries"),
        sa.ForeignKeyConstraint(
            ["bundle_id"],
            ["fleet_bundles.id"],
            name="fk_fleet_deliveries_bundle_id_fleet_bundles",
        ),
        sa.UniqueConstraint(
            "bundle_id", "gateway_id", name="uq_fleet_deliveries_bundle_id_gateway_id"
        ),
    )
    op.create_index("ix_fleet_deliveries_gateway_id", "fleet_deliveries", ["gateway_id"])
    op.create_table(
        "fleet_command_results",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.Integer),
        sa.Column("command", sa.String(32), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fleet_command_results"),
    )
    op.create_index("ix_fleet_command_results_gateway_id", "fleet_command_results", ["gateway_id"])
    op.create_table(
        "fleet_diagnostics",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.Integer),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fleet_diagnostics"),
    )
    op.create_index("ix_fleet_diagnostics_gateway_id", "fleet_diagnostics", ["gateway_id"])


def downgrade() -> None:
    op.drop_table("fleet_diagnostics")
    op.drop_table("fleet_command_results")
    op.drop_table("fleet_deliveries")
    op.drop_table("fleet_bundles")
