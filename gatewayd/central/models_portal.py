"""Tables of the member portal: phone-change verification codes.

Mirrored by migration 0009. A code row lives from the moment the SMS is queued until the
member confirms, asks for another, or it expires; only an HMAC of the code is kept.
"""

from __future__ import annotations

import sqlalchemy as sa

from .models import metadata


def _millis(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


portal_phone_codes = sa.Table(
    "portal_phone_codes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    # The new phone the code was sent to; confirming with another phone fails.
    sa.Column("phone", sa.String(20), nullable=False),
    # HMAC-SHA256 of "<member>:<phone>:<code>" under a sub-key of central's secret.
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    _millis("created_at"),
    _millis("expires_at"),
    # Set when confirmed or superseded; such rows still count towards the hourly limit.
    _millis("closed_at", nullable=True),
)
