"""Tables of fleet operations: signed bundles central relays, their per-gateway outcomes,
command results and diagnostics bundles uploaded by gateways.

Mirrored by migration 0007. Central stores bundles as given: it holds no signing key and
cannot change a bundle without the gateway noticing (the gateway verifies the signature).
Times are integer epoch milliseconds like every other table.
"""

from __future__ import annotations

import sqlalchemy as sa

from .models import metadata


def _millis(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


fleet_bundles = sa.Table(
    "fleet_bundles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("serial", sa.BigInteger, nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    # The manifest as JSON text (for listings) and the whole bundle as uploaded.
    sa.Column("manifest", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    _millis("created_at"),
)

fleet_deliveries = sa.Table(
    "fleet_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("bundle_id", sa.Integer, sa.ForeignKey("fleet_bundles.id"), nullable=False),
    sa.Column("gateway_id", sa.String(64), nullable=False, index=True),
    sa.Column("message_id", sa.Integer, nullable=False),
    # pending, applied, rolled_back, rejected
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(32)),
    sa.Column("message", sa.Text),
    _millis("created_at"),
    _millis("updated_at"),
    sa.UniqueConstraint("bundle_id", "gateway_id"),
)

fleet_command_results = sa.Table(
    "fleet_command_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("gateway_id", sa.String(64), nullable=False, index=True),
    sa.Column("message_id", sa.Integer),
    sa.Column("command", sa.String(32), nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    _millis("received_at"),
)

fleet_diagnostics = sa.Table(
    "fleet_diagnostics",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("gateway_id", sa.String(64), nullable=False, index=True),
    sa.Column("request_id", sa.Integer),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    _millis("received_at"),
)
