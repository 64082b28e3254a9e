"""The loops that make notifications happen: the dispatcher, the scheduler and campaigns.

Every central worker runs both loops. The dispatcher claims due outbox rows with a lease
(``UPDATE … SET claimed_by, claimed_until WHERE … AND (claimed_until IS NULL OR < now)``,
the conditions repeated in the UPDATE itself so that PostgreSQL re-checks them on a row
another worker just claimed) and sends each through its channel's sender: a failure is
retried with exponential backoff up to ``max_attempts``, then the row is failed. Marketing
rows that fall in the chain's quiet hours are put back until the quiet hours end.

The scheduler posts service-plan reminders and, once per local day, queues birthday,
dormant ("not seen for N days") and points-redeemable messages through ``services.events``.
Each of those has a key per member and period, so two workers running it together queue
each message once.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import datetime as dt
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, Final
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from gatewayd.logging import mask_text

from .clock import Clock, iso, to_millis
from .config import CentralSettings
from .db import Database
from .logs import get_logger
from .member_events import MemberEvent, MemberEvents
from .models import chain_settings, members
from .models_members_ext import fold, member_stats, member_store_visits
from .models_notify import notification_campaigns, notification_optouts, notifications
from .notifications import Notifications, NotifySettings, local_date, mask_address
from .senders import OutgoingMessage, SendResult, Template
from .service_plans import ServicePlans

log = get_logger(__name__)
MAX_BACKOFF_S: Final = 6 * 3600.0
EMIT_CHUNK: Final = 200
DONE_KEY: Final = "notifications.done"


def _hhmm(value: str) -> dt.time:
    hours, _, minutes = value.partition(":")
    return dt.time(int(hours), int(minutes))


def quiet_until(now_s: float, timezone: str, start: str | None, end: str | None) -> float | None:
    """When ``now_s`` falls in the quiet hours [start, end) local time, the epoch second they
    end; else None. ``21:00``–``08:00`` wraps midnight; equal bounds mean no quiet hours."""
    if not start or not end:
        return None
    begin, finish = _hhmm(start), _hhmm(end)
    if begin == finish:
        return None
    zone = ZoneInfo(timezone)
    local = dt.datetime.fromtimestamp(now_s, zone)
    t = local.time()
    quiet = begin <= t < finish if begin < finish else (t >= begin or t < finish)
    if not quiet:
        return None
    day = local.date() if t < finish else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, finish, zone).timestamp()


def backoff_seconds(attempts: int, base: float) -> float:
    """Delay before retry number ``attempts`` (1, 2, ...): base, 2·base, 4·base, … capped."""
    return float(min(base * 2 ** max(0, attempts - 1), MAX_BACKOFF_S))


class Dispatcher:
    """Sends due outbox rows; safe to run in every worker at once."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        notifications: Notifications,
        *,
        max_attempts: int = 6,
        backoff: float = 30.0,
        lease: float = 120.0,
        batch: int = 50,
        concurrency: int = 8,
    ) -> None:
        self._db = db
        self._clock = clock
        self._notifications = notifications
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._lease_ms = to_millis(lease)
        self._batch = batch
        self._limit = asyncio.Semaphore(concurrency)
        self.worker = f"{os.getpid()}-{secrets.token_hex(3)}"

    async def _claim(self, now: int) -> tuple[str, list[Any]]:
        n = notifications
        free = sa.or_(n.c.claimed_until.is_(None), n.c.claimed_until < now)
        due = (n.c.status == "pending", n.c.next_at <= now, free)
        async with self._db.read() as conn:
            ids = list(
                (
                    await conn.execute(
                        sa.select(n.c.id).where(*due).order_by(n.c.next_at).limit(self._batch)
                    )
                ).scalars()
            )
        if not ids:
            return "", []
        token = f"{self.worker}-{secrets.token_hex(4)}"
        async with self._db.write() as conn:
            await conn.execute(
                n.update()
                .where(n.c.id.in_(ids), *due)
                .values(claimed_by=token, claimed_until=now + self._lease_ms)
            )
            rows = (await conn.execute(sa.select(n).where(n.c.claimed_by == token))).all()
        return token, list(rows)

    async def run_once(self) -> int:
        """Claim and handle one batch; returns how many rows it handled."""
        now = to_millis(self._clock.now())
        token, rows = await self._claim(now)
        if not rows:
            return 0
        settings = await self._notifications.settings()
        await asyncio.gather(*(self._handle(token, row, settings) for row in rows))
        return len(rows)

    async def _finish(self, token: str, row_id: int, **values: Any) -> None:
        n = notifications
        async with self._db.write() as conn:
            result = await conn.execute(
                n.update()
                .where(n.c.id == row_id, n.c.claimed_by == token)
                .values(claimed_by=None, claimed_until=None, **values)
            )
        if not result.rowcount:
            log.warning("notification_lease_lost", notification_id=row_id)

    async def _opted_out(self, member_id: int, channel: str) -> bool:
        o = notification_optouts
        async with self._db.read() as conn:
            found = await conn.scalar(
                sa.select(o.c.channel).where(o.c.member_id == member_id, o.c.channel == channel)
            )
        return found is not None

    async def _handle(self, token: str, row: Any, settings: NotifySettings) -> None:
        now_s = self._clock.now()
        if row.marketing:
            until = quiet_until(
                now_s, settings.timezone_of(row.store_id), settings.quiet_start, settings.quiet_end
            )
            if until is not None:
                await self._finish(token, row.id, next_at=to_millis(until))
                return
        if row.member_id is not None and await self._opted_out(row.member_id, row.channel):
            await self._finish(token, row.id, status="skipped", last_error="opted out")
            return
        sender = self._notifications.senders.get(row.channel)
        if sender is None:
            await self._finish(
                token, row.id, status="failed", last_error=f"no sender for {row.channel}"
            )
            return
        message = OutgoingMessage(
            id=row.id,
            channel=row.channel,
            address=row.address,
            text=row.text,
            subject=row.subject,
            kind=row.kind,
        )
        async with self._limit:
            try:
                result = await sender.send(message)
            except Exception as exc:  # a plugin's bug must not stop the loop
                log.exception("sender_crashed", channel=row.channel, notification_id=row.id)
                result = SendResult(ok=False, error=f"sender error: {type(exc).__name__}")
        await self._record(token, row, result)

    async def _record(self, token: str, row: Any, result: SendResult) -> None:
        attempts = row.attempts + 1
        now_s = self._clock.now()
        where = {"notification_id": row.id, "channel": row.channel, "kind": row.kind}
        if result.ok:
            await self._finish(
                token,
                row.id,
                status="sent",
                attempts=attempts,
                sent_at=to_millis(now_s),
                provider_id=result.provider_id,
                last_error=None,
            )
            log.info("notification_sent", address=mask_address(row.address), **where)
            return
        error = mask_text(result.error or "failed")[:500]
        if result.retryable and attempts < self._max_attempts:
            retry_at = now_s + backoff_seconds(attempts, self._backoff)
            await self._finish(
                token, row.id, attempts=attempts, next_at=to_millis(retry_at), last_error=error
            )
            log.warning("notification_retry", attempts=attempts, error=error, **where)
        else:
            await self._finish(token, row.id, status="failed", attempts=attempts, last_error=error)
            log.warning("notification_failed", attempts=attempts, error=error, **where)

    async def run(self, poll: float) -> None:
        """Forever: one batch, then sleep ``poll`` unless the batch was full."""
        while True:
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("dispatcher_error")
                handled = 0
            if handled < self._batch:
                await asyncio.sleep(poll)


class Scheduler:
    """Service-plan reminders every run; birthday, dormant and redeemable once a day."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        notifications: Notifications,
        events: MemberEvents,
        plans: ServicePlans,
    ) -> None:
        self._db = db
        self._clock = clock
        self._notifications = notifications
        self._events = events
        self._plans = plans

    async def run_once(self) -> dict[str, int]:
        counts = {"service_due": await self._plans.remind_due()}
        settings = await self._notifications.settings()
        today = local_date(self._clock.now(), settings.timezone)
        done = await self._done()
        jobs = {
            "birthday": self._birthdays if settings.birthdays else None,
            "dormant": self._dormant if settings.dormant_days > 0 else None,
            "points_redeemable": self._redeemable if settings.redeemable_points > 0 else None,
        }
        for kind, job in jobs.items():
            if job is None or done.get(kind) == today.isoformat():
                continue
            counts[kind] = await self._emit_all(kind, await job(settings, today))
            done[kind] = today.isoformat()
            await self._save_done(done)
        return counts

    async def _birthdays(self, _settings: NotifySettings, today: dt.date) -> list[tuple[int, str]]:
        m = members
        days = [today.day]
        if (today.month, today.day) == (2, 28) and not calendar.isleap(today.year):
            days.append(29)  # 29 February birthdays are celebrated on the 28th
        query = sa.select(m.c.id).where(
            m.c.active.is_(True),
            sa.extract("month", m.c.birthday) == today.month,
            sa.extract("day", m.c.birthday).in_(days),
        )
        async with self._db.read() as conn:
            ids = (await conn.execute(query)).scalars()
            return [(int(i), f"{i}:{today.year}") for i in ids]

    async def _dormant(self, settings: NotifySettings, _today: dt.date) -> list[tuple[int, str]]:
        cutoff = to_millis(self._clock.now() - settings.dormant_days * 86400)
        # member_stats.last_seen_at is max(registration, last order or identification),
        # indexed: no aggregation over every visit ever recorded. The fold first gives
        # bulk-loaded members their row and counts identifications recorded since the last.
        await fold(self._db)
        seen = member_stats.c.last_seen_at
        query = (
            sa.select(members.c.id, seen.label("last"))
            .select_from(members.join(member_stats, member_stats.c.member_id == members.c.id))
            .where(seen < cutoff, members.c.active.is_(True))
            .order_by(members.c.id)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [(int(r.id), f"{r.id}:{r.last}") for r in rows]

    async def _redeemable(self, settings: NotifySettings, today: dt.date) -> list[tuple[int, str]]:
        query = sa.select(members.c.id).where(
            members.c.active.is_(True), members.c.points >= settings.redeemable_points
        )
        async with self._db.read() as conn:
            ids = (await conn.execute(query)).scalars()
            return [(int(i), f"{i}:{today:%Y-%m}") for i in ids]

    async def _emit_all(self, kind: str, targets: list[tuple[int, str]]) -> int:
        for chunk in _chunks(targets, EMIT_CHUNK):
            async with self._db.write() as conn:
                for member_id, key in chunk:
                    await self._events.emit(
                        conn, MemberEvent(kind=kind, member_id=member_id, key=key)
                    )
        if targets:
            log.info("scheduled_messages", kind=kind, members=len(targets))
        return len(targets)

    async def _done(self) -> dict[str, str]:
        async with self._db.read() as conn:
            raw = await conn.scalar(
                sa.select(chain_settings.c.value).where(chain_settings.c.key == DONE_KEY)
            )
        return dict(json.loads(raw)) if raw else {}

    async def _save_done(self, done: dict[str, str]) -> None:
        value = json.dumps(done)
        async with self._db.write() as conn:
            updated = await conn.execute(
                chain_settings.update().where(chain_settings.c.key == DONE_KEY).values(value=value)
            )
            if not updated.rowcount:
                await conn.execute(
                    self._db.insert_ignore(chain_settings).values(key=DONE_KEY, value=value)
                )

    async def run(self, interval: float) -> None:
        """Forever: wait ``interval``, then one run (the first run waits too, so a starting
        worker does not add load while others are busy starting)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run_once()
            except Exception:
                log.exception("scheduler_error")


class Campaigns:
    """Bulk messages: an admin's template sent to every member a simple filter selects."""

    def __init__(self, db: Database, clock: Clock, notifications: Notifications) -> None:
        self._db = db
        self._clock = clock
        self._notifications = notifications

    async def queue(
        self,
        *,
        key: str,
        name: str,
        channel: str,
        subject: str | None,
        text: str,
        member_filter: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Queue the campaign for every matching active member, once per ``key`` (posting
        the same key again answers the first campaign and queues nothing)."""
        Template.parse(text)
        if subject:
            Template.parse(subject)
        c = notification_campaigns
        async with self._db.write() as conn:
            existing = (await conn.execute(sa.select(c).where(c.c.key == key))).first()
            if existing is not None:
                return _campaign_out(existing, repeated=True)
            campaign_id = await conn.scalar(
                c.insert()
                .values(
                    key=key,
                    name=name,
                    channel=channel,
                    subject=subject,
                    text=text,
                    filter=json.dumps(dict(member_filter), ensure_ascii=False),
                    queued=0,
                    created_at=to_millis(self._clock.now()),
                )
                .returning(c.c.id)
            )
        if member_filter.get("store") is not None:
            await fold(self._db)  # the store filter reads the visits folded so far
        async with self._db.read() as conn:
            ids = list((await conn.execute(_member_query(member_filter))).scalars())
        queued = 0
        store = member_filter.get("store")
        for chunk in _chunks(ids, EMIT_CHUNK):
            async with self._db.write() as conn:
                for member_id in chunk:
                    queued += await self._notifications.enqueue_for_member(
                        conn,
                        kind="campaign",
                        member_id=member_id,
                        store_id=store,
                        data={},
                        key=f"campaign:{campaign_id}:{member_id}",
                        template=(subject, text),
                        channels=(channel,),
                    )
        async with self._db.write() as conn:
            await conn.execute(c.update().where(c.c.id == campaign_id).values(queued=queued))
            row = (await conn.execute(sa.select(c).where(c.c.id == campaign_id))).one()
        log.info("campaign_queued", campaign_id=campaign_id, members=len(ids), queued=queued)
        return _campaign_out(row, repeated=False)


def _member_query(member_filter: Mapping[str, Any]) -> Any:
    """Active members matching level, store (identified there at least once) and birthday
    month; every given condition must hold."""
    m = members
    query = sa.select(m.c.id).where(m.c.active.is_(True)).order_by(m.c.id)
    if member_filter.get("level") is not None:
        query = query.where(m.c.level == member_filter["level"])
    if member_filter.get("birthday_month") is not None:
        query = query.where(sa.extract("month", m.c.birthday) == member_filter["birthday_month"])
    if member_filter.get("store") is not None:  # (the caller folds identifications first)
        v = member_store_visits.c
        seen = sa.select(v.member_id).where(
            v.member_id == m.c.id, v.store_id == member_filter["store"]
        )
        query = query.where(seen.exists())
    return query


def _campaign_out(row: Any, *, repeated: bool) -> dict[str, Any]:
    return {
        "id": row.id,
        "key": row.key,
        "name": row.name,
        "channel": row.channel,
        "queued": row.queued,
        "filter": json.loads(row.filter),
        "created_at": iso(row.created_at),
        "repeated": repeated,
    }


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class NotifyLoops:
    """The dispatcher and scheduler tasks of one worker, started and stopped together."""

    def __init__(self, dispatcher: Dispatcher | None, scheduler: Scheduler | None) -> None:
        self.dispatcher = dispatcher
        self.scheduler = scheduler
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, poll: float, interval: float) -> None:
        if self.dispatcher is not None:
            self._tasks.append(asyncio.create_task(self.dispatcher.run(poll)))
        if self.scheduler is not None:
            self._tasks.append(asyncio.create_task(self.scheduler.run(interval)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()


def build_notify_loops(
    settings: CentralSettings,
    db: Database,
    clock: Clock,
    notifications: Notifications,
    events: MemberEvents,
    plans: ServicePlans,
) -> NotifyLoops:
    """This worker's loops (started by the app unless ``notify_loops`` is 0). Without any
    sender there is nothing to dispatch, so only the scheduler (service plans) runs."""
    dispatcher = None
    if notifications.senders.channels:
        dispatcher = Dispatcher(
            db,
            clock,
            notifications,
            max_attempts=settings.notify_max_attempts,
            backoff=settings.notify_backoff,
            lease=settings.notify_lease,
        )
    return NotifyLoops(dispatcher, Scheduler(db, clock, notifications, events, plans))
