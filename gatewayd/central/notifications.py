"""Member notifications: the outbox, its templates, opt-outs, inbound replies and staff alerts.

A member event (``services.events``) becomes one outbox row per channel in the emitter's own
transaction, rendered from the template for its kind (per store, else per chain, else the
built-in Chinese default): a rolled-back order sends nothing, and the event's key dedupes a
retried request. ``notify_dispatch`` sends the rows later. Marketing kinds wait out the
chain's quiet hours; transactional kinds (a debit, a recharge) go day and night.
The message kinds, built-in templates, settings and pure helpers are in ``notify_messages.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Final

import aiohttp
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .clock import Clock, iso, to_millis
from .config import CentralSettings
from .db import Database
from .errors import NotFound
from .logs import get_logger
from .member_events import MemberEvent, MemberEvents
from .models import chain_settings, members, stores
from .models_notify import (
    notification_optouts,
    notification_templates,
    notifications,
)
from .notify_inbound import NotifyInbound
from .notify_messages import DEFAULT_TEMPLATES as DEFAULT_TEMPLATES
from .notify_messages import KINDS as KINDS
from .notify_messages import MARKETING_KINDS as MARKETING_KINDS
from .notify_messages import TRANSACTIONAL_KINDS as TRANSACTIONAL_KINDS
from .notify_messages import NotifySettings as NotifySettings
from .notify_messages import check_address as check_address
from .notify_messages import local_date as local_date
from .notify_messages import make_dedupe_key as make_dedupe_key
from .notify_messages import mask_address as mask_address
from .notify_messages import template_values as template_values
from .notify_messages import yuan as yuan
from .senders import SenderRegistry, Template

log = get_logger(__name__)
SETTINGS_KEY: Final = "notifications"
_KIND_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")


class Notifications:
    """Writes the outbox; reads and edits templates, opt-outs, replies and settings."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        senders: SenderRegistry,
        member_channels: tuple[str, ...] = ("sms", "email"),
    ) -> None:
        self._db = db
        self._clock = clock
        self.senders = senders
        self._member_channels = member_channels
        self.inbound = NotifyInbound(db, clock)

    def _now(self) -> int:
        return to_millis(self._clock.now())

    # --- writing the outbox --------------------------------------------------------------

    async def on_event(self, conn: AsyncConnection, event: MemberEvent) -> None:
        """``services.events`` subscriber: queue the event's messages on ``conn``."""
        await self.enqueue_for_member(
            conn,
            kind=event.kind,
            member_id=event.member_id,
            store_id=event.store_id,
            data=event.data,
            key=make_dedupe_key(event.kind, event.key),
        )

    async def enqueue_for_member(
        self,
        conn: AsyncConnection,
        *,
        kind: str,
        member_id: int,
        store_id: str | None,
        data: Mapping[str, Any],
        key: str,
        template: tuple[str | None, str] | None = None,
        channels: tuple[str, ...] | None = None,
    ) -> int:
        """Queue one message per configured channel the member can be reached on and has not
        opted out of; ``template`` (subject, text) overrides the stored one (campaigns).
        Returns how many rows were written (0 for a repeated ``key``)."""
        wanted = [c for c in channels or self._member_channels if self.senders.get(c)]
        if not wanted:  # no sender configured: skip the look-ups in the emitter's transaction
            return 0
        member = (await conn.execute(sa.select(members).where(members.c.id == member_id))).first()
        if member is None or not member.active:
            return 0
        opted_out = set(
            (
                await conn.execute(
                    sa.select(notification_optouts.c.channel).where(
                        notification_optouts.c.member_id == member_id
                    )
                )
            ).scalars()
        )
        addresses = {"sms": member.phone, "email": member.email}
        store_name = None
        if store_id is not None:
            store_name = await conn.scalar(sa.select(stores.c.name).where(stores.c.id == store_id))
        values = template_values(
            {
                "member_name": member.name,
                "level": member.level,
                "member_points": member.points,
                "balance_fen": member.balance_fen,
                "phone_last4": (member.phone or "")[-4:],
                "store_name": store_name or "",
                **data,
            }
        )
        written = 0
        for channel in wanted:
            address = addresses.get(channel)
            if not address or channel in opted_out:
                continue
            chosen = template or await self._template(conn, kind, channel, store_id)
            if chosen is None:
                continue
            subject, text = chosen
            written += await self._insert(
                conn,
                member_id=member_id,
                store_id=store_id,
                kind=kind,
                channel=channel,
                address=address,
                subject=Template.parse(subject).render(values)[:200] if subject else None,
                text=Template.parse(text).render(values),
                key=make_dedupe_key(key, channel),
            )
        return written

    async def _insert(
        self,
        conn: AsyncConnection,
        *,
        member_id: int | None,
        store_id: str | None,
        kind: str,
        channel: str,
        address: str,
        subject: str | None,
        text: str,
        key: str,
        status: str = "pending",
        error: str | None = None,
    ) -> int:
        now = self._now()
        result = await conn.execute(
            self._db.insert_ignore(notifications).values(
                member_id=member_id,
                store_id=store_id,
                kind=kind[:32],
                channel=channel,
                address=address,
                subject=subject,
                text=text,
                marketing=kind in MARKETING_KINDS,
                status=status,
                attempts=0,
                next_at=now,
                last_error=error,
                dedupe_key=key,
                created_at=now,
            )
        )
        return int(result.rowcount or 0)

    async def send_to(
        self,
        *,
        channel: str,
        address: str,
        template: str,
        data: Mapping[str, Any],
        dedupe_key: str,
    ) -> None:
        """Queue a message that is not for a member (staff alerts from the HQ dashboard).

        ``template`` names a template (stored by an admin, else built in: ``alert_fired``,
        ``alert_resolved``, ``staff_alert``); a name with neither uses ``staff_alert``
        (``{subject}：{detail}``), and anything that is not a name is itself the template
        text. Sent day and night; a repeated ``dedupe_key`` queues nothing. With no sender
        for ``channel`` the row is stored as failed, so the miss stays visible. Raises
        ``Invalid`` for an address that does not fit the channel.
        """
        check_address(channel, address)
        is_name = _KIND_NAME.fullmatch(template) is not None
        kind = template if is_name else "staff_alert"
        async with self._db.write() as conn:
            if is_name:
                chosen = await self._template(conn, kind, channel, None)
                chosen = chosen or DEFAULT_TEMPLATES["staff_alert"]
            else:
                chosen = (None, template)
            subject, text = chosen
            values = template_values(data)
            sender = self.senders.get(channel)
            await self._insert(
                conn,
                member_id=None,
                store_id=None,
                kind=kind,
                channel=channel,
                address=address,
                subject=Template.parse(subject).render(values)[:200] if subject else None,
                text=Template.parse(text).render(values),
                key=make_dedupe_key("send_to", dedupe_key),
                status="pending" if sender is not None else "failed",
                error=None if sender is not None else f"no sender for channel {channel}",
            )
        log.info("staff_message_queued", channel=channel, kind=kind, to=mask_address(address))

    # --- templates ---------------------------------------------------------------------

    async def _template(
        self, conn: AsyncConnection, kind: str, channel: str, store_id: str | None
    ) -> tuple[str | None, str] | None:
        """(subject, text): the store's template, else the chain's, else the default."""
        t = notification_templates
        rows = (
            await conn.execute(
                sa.select(t.c.store_id, t.c.subject, t.c.text).where(
                    t.c.kind == kind, t.c.channel == channel, t.c.store_id.in_([store_id or "", ""])
                )
            )
        ).all()
        by_store = {r.store_id: (r.subject, r.text) for r in rows}
        found = by_store.get(store_id or "") or by_store.get("")
        if found is not None:
            return found
        return DEFAULT_TEMPLATES.get(kind)

    async def templates(self) -> list[dict[str, Any]]:
        """Every stored template plus the built-in defaults they override."""
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(notification_templates).order_by(
                        notification_templates.c.kind,
                        notification_templates.c.channel,
                        notification_templates.c.store_id,
                    )
                )
            ).all()
        stored = [
            {
                "kind": r.kind,
                "channel": r.channel,
                "store": r.store_id or None,
                "subject": r.subject,
                "text": r.text,
                "default": False,
            }
            for r in rows
        ]
        defaults = [
            {"kind": k, "channel": None, "store": None, "subject": s, "text": t, "default": True}
            for k, (s, t) in sorted(DEFAULT_TEMPLATES.items())
        ]
        return stored + defaults

    async def put_template(
        self, kind: str, channel: str, store_id: str | None, subject: str | None, text: str
    ) -> dict[str, Any]:
        """Create or replace a template (its syntax is checked first: 422 when bad)."""
        Template.parse(text)
        if subject:
            Template.parse(subject)
        values = {"subject": subject, "text": text, "updated_at": self._now()}
        t = notification_templates
        async with self._db.write() as conn:
            if store_id is not None:
                exists = await conn.scalar(sa.select(stores.c.id).where(stores.c.id == store_id))
                if exists is None:
                    raise NotFound(f"no store {store_id}", code="store_not_found")
            key = (t.c.kind == kind, t.c.channel == channel, t.c.store_id == (store_id or ""))
            updated = await conn.execute(t.update().where(*key).values(**values))
            if not updated.rowcount:
                await conn.execute(
                    t.insert().values(kind=kind, channel=channel, store_id=store_id or "", **values)
                )
        log.info("template_saved", kind=kind, channel=channel, store=store_id)
        return {
            "kind": kind,
            "channel": channel,
            "store": store_id,
            "subject": subject,
            "text": text,
            "default": False,
        }

    async def delete_template(self, kind: str, channel: str, store_id: str | None) -> None:
        t = notification_templates
        async with self._db.write() as conn:
            result = await conn.execute(
                t.delete().where(
                    t.c.kind == kind, t.c.channel == channel, t.c.store_id == (store_id or "")
                )
            )
        if not result.rowcount:
            raise NotFound("no such stored template", code="template_not_found")

    # --- chain settings ----------------------------------------------------------------

    async def settings(self, conn: AsyncConnection | None = None) -> NotifySettings:
        query = sa.select(chain_settings.c.value).where(chain_settings.c.key == SETTINGS_KEY)
        if conn is None:
            async with self._db.read() as reader:
                raw = await reader.scalar(query)
        else:
            raw = await conn.scalar(query)
        return NotifySettings(**json.loads(raw)) if raw else NotifySettings()

    async def save_settings(self, settings: NotifySettings) -> NotifySettings:
        value = json.dumps(asdict(settings), ensure_ascii=False)
        async with self._db.write() as conn:
            updated = await conn.execute(
                chain_settings.update()
                .where(chain_settings.c.key == SETTINGS_KEY)
                .values(value=value)
            )
            if not updated.rowcount:
                await conn.execute(chain_settings.insert().values(key=SETTINGS_KEY, value=value))
        return settings

    # --- reading the outbox --------------------------------------------------------------

    async def outbox(
        self, *, member_id: int | None, status: str | None, limit: int
    ) -> list[dict[str, Any]]:
        n = notifications
        query = sa.select(n).order_by(n.c.id.desc()).limit(limit)
        if member_id is not None:
            query = query.where(n.c.member_id == member_id)
        if status is not None:
            query = query.where(n.c.status == status)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [outbox_row(r) for r in rows]


def outbox_row(row: Any) -> dict[str, Any]:
    """One outbox row for the API: addresses masked (admins see the member for the rest)."""
    return {
        "id": row.id,
        "member_id": row.member_id,
        "store": row.store_id,
        "kind": row.kind,
        "channel": row.channel,
        "address_masked": mask_address(row.address),
        "subject": row.subject,
        "text": row.text,
        "marketing": row.marketing,
        "status": row.status,
        "attempts": row.attempts,
        "next_at": iso(row.next_at),
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "sent_at": iso(row.sent_at),
    }


def build_notifications(
    settings: CentralSettings,
    db: Database,
    clock: Clock,
    http: aiohttp.ClientSession,
    events: MemberEvents,
) -> Notifications:
    """The notifications service over the configured senders, subscribed to ``events``."""
    channels = tuple(c.strip() for c in settings.notify_member_channels.split(",") if c.strip())
    service = Notifications(
        db, clock, SenderRegistry.from_file(settings.notify_senders, http), channels
    )
    events.subscribe(service.on_event)
    return service
