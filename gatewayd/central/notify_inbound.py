"""Opt-outs and inbound replies: what members tell central back.

A member opts out of a channel at a till (or HQ does it for them), or by replying "TD" /
"退订" to an SMS. Replies reach ``POST /v1/notifications/inbound/{sender}`` from the SMS
gateway, authenticated by a per-sender token that central stores only as its SHA-256, and are
kept against the member whose phone sent them. The dispatcher checks opt-outs again at send
time, so an opt-out also stops what is already queued.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .clock import Clock, iso, to_millis
from .db import Database
from .errors import NotFound, Unauthenticated
from .logs import get_logger
from .models import members
from .models_notify import notification_inbound_secrets, notification_optouts, notification_replies

log = get_logger(__name__)
OPT_OUT_WORDS: Final = frozenset({"TD", "T", "退订", "退", "STOP", "UNSUBSCRIBE"})


def is_opt_out(text: str) -> bool:
    """True for a reply that asks to stop messages ("TD", "退订", "stop", with punctuation)."""
    return re.sub(r"[\s\W_]+", "", text).upper() in OPT_OUT_WORDS


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class NotifyInbound:
    """Opt-outs per member and channel, inbound tokens, and stored replies."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def _now(self) -> int:
        return to_millis(self._clock.now())

    # --- opt-outs ------------------------------------------------------------------------

    async def _opt_out(
        self, conn: AsyncConnection, member_id: int, channel: str, source: str
    ) -> None:
        await conn.execute(
            self._db.insert_ignore(notification_optouts).values(
                member_id=member_id, channel=channel, source=source, created_at=self._now()
            )
        )

    async def set_opt_out(self, member_id: int, channel: str, opted_out: bool) -> list[str]:
        """Opt a member out of (or back into) a channel; answers the channels opted out of."""
        async with self._db.write() as conn:
            if await conn.scalar(sa.select(members.c.id).where(members.c.id == member_id)) is None:
                raise NotFound(f"no member {member_id}", code="member_not_found")
            if opted_out:
                await self._opt_out(conn, member_id, channel, "member")
            else:
                await conn.execute(
                    notification_optouts.delete().where(
                        notification_optouts.c.member_id == member_id,
                        notification_optouts.c.channel == channel,
                    )
                )
        log.info("opt_out_changed", member_id=member_id, channel=channel, opted_out=opted_out)
        return await self.opt_outs(member_id)

    async def opt_outs(self, member_id: int) -> list[str]:
        async with self._db.read() as conn:
            if await conn.scalar(sa.select(members.c.id).where(members.c.id == member_id)) is None:
                raise NotFound(f"no member {member_id}", code="member_not_found")
            rows = await conn.execute(
                sa.select(notification_optouts.c.channel)
                .where(notification_optouts.c.member_id == member_id)
                .order_by(notification_optouts.c.channel)
            )
            return [str(c) for c in rows.scalars()]

    # --- inbound replies ---------------------------------------------------------------

    async def new_inbound_token(self, sender: str) -> str:
        """Create or rotate the shared token a gateway presents when posting replies."""
        token = "cki_" + secrets.token_urlsafe(32)
        s = notification_inbound_secrets
        async with self._db.write() as conn:
            await conn.execute(s.delete().where(s.c.sender == sender))
            await conn.execute(
                s.insert().values(
                    sender=sender, token_hash=hash_token(token), created_at=self._now()
                )
            )
        log.info("inbound_token_created", sender=sender)
        return token

    async def check_inbound_token(self, sender: str, token: str | None) -> None:
        s = notification_inbound_secrets
        async with self._db.read() as conn:
            stored = await conn.scalar(sa.select(s.c.token_hash).where(s.c.sender == sender))
        if (
            stored is None
            or not token
            or not hmac.compare_digest(str(stored), hash_token(token[:200]))
        ):
            raise Unauthenticated("unknown sender or bad token", code="bad_token")

    async def receive_reply(
        self, sender: str, phone: str, text: str, message_id: str | None
    ) -> dict[str, Any]:
        """Store a member's reply (matched by phone); "TD"/"退订" opts them out of ``sender``."""
        digits = re.sub(r"^(?:\+86|0086)", "", phone.strip()).lstrip("+")
        opt_out = is_opt_out(text)
        now = self._now()
        async with self._db.write() as conn:
            member_id = await conn.scalar(sa.select(members.c.id).where(members.c.phone == digits))
            result = await conn.execute(
                self._db.insert_ignore(notification_replies).values(
                    sender=sender,
                    message_id=message_id,
                    member_id=member_id,
                    phone=digits[:20],
                    text=text,
                    opted_out=opt_out and member_id is not None,
                    received_at=now,
                )
            )
            stored = bool(result.rowcount)
            if stored and opt_out and member_id is not None:
                await self._opt_out(conn, member_id, sender, "reply")
        log.info(
            "reply_received",
            sender=sender,
            phone=digits,
            member_id=member_id,
            opted_out=opt_out,
            duplicate=not stored,
        )
        return {"member_id": member_id, "opted_out": opt_out and member_id is not None}

    async def replies(self, member_id: int) -> list[dict[str, Any]]:
        r = notification_replies
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(r)
                    .where(r.c.member_id == member_id)
                    .order_by(r.c.id.desc())
                    .limit(200)
                )
            ).all()
        return [
            {
                "id": row.id,
                "sender": row.sender,
                "text": row.text,
                "opted_out": row.opted_out,
                "received_at": iso(row.received_at),
            }
            for row in rows
        ]
