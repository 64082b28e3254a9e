"""What the HQ dashboard shows: gateway health recorded from heartbeats, and the queries.

Every heartbeat (the HTTP one and the one forwarded through a gateway's outbox) lands in
``record_health`` inside the same transaction that updates ``gateways.last_seen_at``. It keeps
per device the time its state began (alerts need "failed for N minutes"), derives the event
rate from the previous heartbeat's counter total, and bumps ``changed_at`` only when something
the overview shows as a state changes, so the live stream stays small with 10 000 gateways.

States are derived from ``last_seen_at`` at query time: ``online`` (heard within
``stale_after``), ``stale`` (within ``offline_after``), ``offline``, ``never_seen``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .clock import Clock, iso, to_millis
from .db import Database
from .errors import NotFound
from .models import gateways, stores
from .models_dashboard import alert_incidents, alert_rules, gateway_health

BAD_DEVICE_STATES: Final = frozenset({"failed", "offline"})
MAX_DEVICES: Final = 256
MAX_ERRORS: Final = 20
MAX_MESSAGE: Final = 200
HISTORY_LENGTH: Final = 20
STATES: Final = ("online", "stale", "offline", "never_seen")
CHANGE_OVERLAP_MS: Final = 2_000


@dataclass(frozen=True, kw_only=True)
class HealthReport:
    """A heartbeat's contents, bounded and normalised (whatever path it came by)."""

    version: str | None = None
    uptime_s: int | None = None
    devices: list[dict[str, str]] = field(default_factory=list)
    events_total: int = 0
    backlog: int = 0
    dropped: int = 0
    last_identification_at: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


def _text(value: Any, limit: int) -> str:
    return str(value)[:limit]


def _count(value: Any) -> int:
    try:
        return max(0, min(int(value), 2**62))
    except (TypeError, ValueError):
        return 0


def _error_entry(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        return {"message": _text(record, MAX_MESSAGE)}
    entry = {k: _text(record[k], 64) for k in ("ts", "timestamp", "level", "device") if k in record}
    entry["event"] = _text(record.get("event", ""), 100)
    message = record.get("message") or record.get("error") or record.get("reason")
    if message is not None:
        entry["message"] = _text(message, MAX_MESSAGE)
    return entry


def report_from_payload(payload: dict[str, Any]) -> HealthReport:
    """A gateway outbox heartbeat (``gatewayd/central_link.py``) as a ``HealthReport``.

    Tolerant: unknown fields are ignored and oversized ones cut, because refusing a heartbeat
    would leave HQ blind to a gateway that is merely a version ahead or behind."""
    raw_devices = payload.get("devices") or {}
    devices: list[dict[str, str]] = []
    if isinstance(raw_devices, dict):
        for name, state in list(raw_devices.items())[:MAX_DEVICES]:
            devices.append({"id": _text(name, 128), "state": _text(state, 16)})
    counters = payload.get("counters") or {}
    outbox = payload.get("outbox") or {}
    last_id = payload.get("last_identification")
    raw_errors = payload.get("errors") or []
    uptime = payload.get("uptime")
    return HealthReport(
        version=_text(payload["version"], 64) if payload.get("version") else None,
        uptime_s=_count(uptime) if uptime is not None else None,
        devices=devices,
        events_total=sum(_count(v) for v in counters.values()) if isinstance(counters, dict) else 0,
        backlog=_count(outbox.get("depth", 0)) if isinstance(outbox, dict) else 0,
        dropped=_count(outbox.get("dropped", 0)) if isinstance(outbox, dict) else 0,
        last_identification_at=_parse_time(last_id),
        errors=[_error_entry(r) for r in list(raw_errors)[-MAX_ERRORS:]]
        if isinstance(raw_errors, list)
        else [],
    )


def _parse_time(value: Any) -> int | None:
    """An RFC 3339 string or epoch seconds as epoch milliseconds (None if unparseable)."""
    import datetime as dt

    if isinstance(value, int | float) and not isinstance(value, bool):
        return to_millis(float(value))
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return to_millis(parsed.timestamp())
    return None


def health_values(
    report: HealthReport, now: int, prev: Any, previous_seen: int | None, stale_ms: int
) -> dict[str, Any]:
    """The gateway's new ``gateway_health`` values from a heartbeat and the previous row."""
    old_devices = {d["id"]: d for d in json.loads(prev.devices)} if prev is not None else {}
    devices = []
    for device in report.devices:
        old = old_devices.get(device["id"])
        since = old["since"] if old is not None and old["state"] == device["state"] else now
        devices.append({**device, "since": since})
    bad = sum(1 for d in devices if d["state"] in BAD_DEVICE_STATES)
    rate: float | None = None
    if prev is not None and report.events_total >= prev.events_total and now > prev.updated_at:
        rate = round(
            (report.events_total - prev.events_total) * 60_000 / (now - prev.updated_at), 2
        )
    history = json.loads(prev.history) if prev is not None else []
    history = [*history, {"at": now, "rate": rate, "backlog": report.backlog, "bad": bad}]
    came_back = previous_seen is None or now - previous_seen > stale_ms
    changed = (
        prev is None
        or came_back
        or [(d["id"], d["state"]) for d in devices]
        != [(d["id"], d["state"]) for d in json.loads(prev.devices)]
        or report.version != prev.version
    )
    # Strictly increasing, so two changes within one millisecond are still two changes.
    changed_at = now if prev is None else prev.changed_at
    if changed and prev is not None:
        changed_at = max(now, prev.changed_at + 1)
    return {
        "version": report.version,
        "uptime_s": report.uptime_s,
        "backlog": report.backlog,
        "dropped": report.dropped,
        "events_total": report.events_total,
        "event_rate": rate,
        "last_identification_at": report.last_identification_at
        or (prev.last_identification_at if prev is not None else None),
        "devices": json.dumps(devices, ensure_ascii=False),
        "devices_bad": bad,
        "errors": json.dumps(report.errors, ensure_ascii=False)
        if report.errors or prev is None
        else prev.errors,
        "history": json.dumps(history[-HISTORY_LENGTH:]),
        "updated_at": now,
        "changed_at": changed_at,
    }


@dataclass
class _Beat:
    gateway_id: str
    status: str
    report: HealthReport
    now: int
    done: asyncio.Future[None]


class HeartbeatWriter:
    """Group commit for heartbeats: 10 000 gateways every 30 s are 333 a second.

    Heartbeats that arrive while a batch is being written wait and go together in the next:
    one read of the previous rows and one transaction (two ``executemany``) per batch,
    instead of a transaction each. Every caller returns once its heartbeat is committed.
    A gateway's second heartbeat within one batch waits for the next batch."""

    def __init__(self, db: Database, stale_ms: int, max_batch: int = 500) -> None:
        self._db = db
        self._stale_ms = stale_ms
        self._max_batch = max_batch
        self._pending: list[_Beat] = []
        self._writer: asyncio.Task[None] | None = None
        names = [c.name for c in gateway_health.c if c.name != "gateway_id"]
        self._update_health = (
            gateway_health.update()
            .where(gateway_health.c.gateway_id == sa.bindparam("b_gateway_id"))
            .values({name: sa.bindparam("b_" + name) for name in names})
        )
        self._update_gateway = (
            gateways.update()
            .where(gateways.c.id == sa.bindparam("b_gateway_id"))
            .values(last_seen_at=sa.bindparam("b_seen"), status=sa.bindparam("b_status"))
        )

    async def record(self, gateway_id: str, status: str, report: HealthReport, now: int) -> None:
        """Record one heartbeat (``NotFound`` for an unknown gateway)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Beat(gateway_id, status, report, now, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch: dict[str, _Beat] = {}
                later: list[_Beat] = []
                for beat in self._pending:
                    if beat.gateway_id in batch or len(batch) >= self._max_batch:
                        later.append(beat)
                    else:
                        batch[beat.gateway_id] = beat
                self._pending = later
                try:
                    await self._write(batch)
                except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                    for beat in batch.values():
                        if not beat.done.done():
                            beat.done.set_exception(exc)
        finally:
            self._writer = None

    async def _write(self, batch: dict[str, _Beat]) -> None:
        query = (
            sa.select(
                gateways.c.id.label("gid"),
                gateways.c.last_seen_at.label("previous_seen"),
                *gateway_health.c,
            )
            .select_from(
                gateways.outerjoin(gateway_health, gateway_health.c.gateway_id == gateways.c.id)
            )
            .where(gateways.c.id.in_(list(batch)))
        )
        async with self._db.read() as conn:
            previous = {r.gid: r for r in await conn.execute(query)}
        gateway_rows, inserts, updates = [], [], []
        for gateway_id, beat in batch.items():
            row = previous.get(gateway_id)
            if row is None:
                beat.done.set_exception(
                    NotFound(f"no gateway {gateway_id}", code="gateway_not_found")
                )
                continue
            prev = row if row.gateway_id is not None else None
            values = health_values(beat.report, beat.now, prev, row.previous_seen, self._stale_ms)
            gateway_rows.append(
                {"b_gateway_id": gateway_id, "b_seen": beat.now, "b_status": beat.status}
            )
            if prev is None:
                inserts.append({"gateway_id": gateway_id, **values})
            else:
                updates.append(
                    {"b_gateway_id": gateway_id, **{"b_" + k: v for k, v in values.items()}}
                )
        if gateway_rows:
            async with self._db.write() as conn:
                await conn.execute(self._update_gateway, gateway_rows)
                if inserts:  # another worker may have inserted first: its row stands
                    await conn.execute(self._db.insert_ignore(gateway_health), inserts)
                if updates:
                    await conn.execute(self._update_health, updates)
        for beat in batch.values():
            if not beat.done.done():
                beat.done.set_result(None)


class Dashboard:
    """Read side of the dashboard: counts, the paginated overview, one gateway, changes."""

    def __init__(self, db: Database, clock: Clock, stale_after: float, offline_after: float):
        self._db = db
        self._clock = clock
        self.stale_ms = to_millis(stale_after)
        self.offline_ms = to_millis(offline_after)

    def now(self) -> int:
        return to_millis(self._clock.now())

    def state_expr(self, now: int) -> Any:
        seen = gateways.c.last_seen_at
        return sa.case(
            (seen.is_(None), "never_seen"),
            (seen >= now - self.stale_ms, "online"),
            (seen >= now - self.offline_ms, "stale"),
            else_="offline",
        )

    def state_of(self, last_seen: int | None, now: int) -> str:
        if last_seen is None:
            return "never_seen"
        if last_seen >= now - self.stale_ms:
            return "online"
        return "stale" if last_seen >= now - self.offline_ms else "offline"

    def _columns(self) -> list[Any]:
        return [
            gateways.c.id,
            gateways.c.name,
            gateways.c.store_id,
            stores.c.name.label("store_name"),
            gateways.c.last_seen_at,
            gateway_health.c.version,
            gateway_health.c.uptime_s,
            gateway_health.c.backlog,
            gateway_health.c.event_rate,
            gateway_health.c.last_identification_at,
            gateway_health.c.devices,
            gateway_health.c.devices_bad,
        ]

    def _from(self) -> Any:
        return gateways.join(stores, stores.c.id == gateways.c.store_id).outerjoin(
            gateway_health, gateway_health.c.gateway_id == gateways.c.id
        )

    def _summary(self, row: Any, now: int) -> dict[str, Any]:
        devices = json.loads(row.devices) if row.devices else []
        return {
            "id": row.id,
            "name": row.name,
            "store": row.store_id,
            "store_name": row.store_name,
            "state": self.state_of(row.last_seen_at, now),
            "last_seen_at": iso(row.last_seen_at),
            "version": row.version,
            "uptime_s": row.uptime_s,
            "backlog": row.backlog or 0,
            "event_rate": row.event_rate,
            "last_identification_at": iso(row.last_identification_at),
            "devices": [
                {"id": d["id"], "state": d["state"], "since": iso(d["since"])} for d in devices
            ],
            "devices_bad": row.devices_bad or 0,
        }

    async def counts(self, conn: AsyncConnection, now: int) -> dict[str, int]:
        state = self.state_expr(now).label("state")
        rows = (await conn.execute(sa.select(state, sa.func.count()).group_by(state))).all()
        counts = dict.fromkeys(STATES, 0)
        counts.update({r[0]: int(r[1]) for r in rows})
        counts["total"] = sum(counts[s] for s in STATES)
        counts["devices_bad"] = int(
            await conn.scalar(sa.select(sa.func.count()).where(gateway_health.c.devices_bad > 0))
            or 0
        )
        return counts

    async def overview(
        self,
        *,
        state: str | None = None,
        store: str | None = None,
        search: str | None = None,
        problems: bool = False,
        page: int = 1,
        per_page: int = 50,
    ) -> dict[str, Any]:
        """Counts for the whole chain, then one page of gateways (by store, then id)."""
        now = self.now()
        conditions: list[Any] = []
        if state is not None:
            conditions.append(self.state_expr(now) == state)
        if store is not None:
            conditions.append(gateways.c.store_id == store)
        if search:
            needle = search.lower()
            conditions.append(
                sa.or_(
                    sa.func.lower(gateways.c.id).contains(needle, autoescape=True),
                    sa.func.lower(gateways.c.name).contains(needle, autoescape=True),
                    sa.func.lower(stores.c.name).contains(needle, autoescape=True),
                    sa.func.lower(gateways.c.store_id).contains(needle, autoescape=True),
                )
            )
        if problems:
            conditions.append(gateway_health.c.devices_bad > 0)
        where = sa.and_(sa.true(), *conditions)
        async with self._db.read() as conn:
            counts = await self.counts(conn, now)
            matching = int(
                await conn.scalar(sa.select(sa.func.count()).select_from(self._from()).where(where))
                or 0
            )
            rows = (
                await conn.execute(
                    sa.select(*self._columns())
                    .select_from(self._from())
                    .where(where)
                    .order_by(gateways.c.store_id, gateways.c.id)
                    .limit(per_page)
                    .offset((page - 1) * per_page)
                )
            ).all()
            store_rows = (
                await conn.execute(sa.select(stores.c.id, stores.c.name).order_by(stores.c.id))
            ).all()
            open_alerts = int(
                await conn.scalar(
                    sa.select(sa.func.count()).where(alert_incidents.c.resolved_at.is_(None))
                )
                or 0
            )
        return {
            "generated_at": iso(now),
            "counts": counts,
            "open_alerts": open_alerts,
            "stores": [{"id": r.id, "name": r.name} for r in store_rows],
            "matching": matching,
            "page": page,
            "per_page": per_page,
            "items": [self._summary(r, now) for r in rows],
        }

    async def gateway(self, gateway_id: str) -> dict[str, Any]:
        """One gateway with its devices, counters, recent errors, history and incidents."""
        now = self.now()
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        *self._columns(),
                        gateways.c.status,
                        gateway_health.c.errors,
                        gateway_health.c.history,
                        gateway_health.c.dropped,
                        gateway_health.c.events_total,
                    )
                    .select_from(self._from())
                    .where(gateways.c.id == gateway_id)
                )
            ).first()
            if row is None:
                raise NotFound(f"no gateway {gateway_id}", code="gateway_not_found")
            incidents = (
                await conn.execute(
                    sa.select(alert_incidents, alert_rules.c.name.label("rule_name"))
                    .join(alert_rules, alert_rules.c.id == alert_incidents.c.rule_id)
                    .where(
                        sa.or_(
                            alert_incidents.c.subject == gateway_id,
                            alert_incidents.c.subject.startswith(gateway_id + "/"),
                        )
                    )
                    .order_by(alert_incidents.c.fired_at.desc())
                    .limit(20)
                )
            ).all()
        status = json.loads(row.status) if row.status else {}
        return {
            **self._summary(row, now),
            "generated_at": iso(now),
            "counters": status.get("counters", {}),
            "events_total": row.events_total or 0,
            "dropped": row.dropped or 0,
            "recent_errors": json.loads(row.errors) if row.errors else [],
            "history": [
                {**h, "at": iso(h["at"])} for h in (json.loads(row.history) if row.history else [])
            ],
            "incidents": [incident_out(r) for r in incidents],
        }

    async def changes(self, cursor: ChangeCursor, gateway_id: str | None = None) -> dict[str, Any]:
        """What the live stream sends each tick: counts and the gateways whose shown state
        changed since the cursor's last tick, including those that merely aged into stale
        or offline. With ``gateway_id``: that gateway whenever it sent a heartbeat."""
        now = self.now()
        since = cursor.since
        seen = gateways.c.last_seen_at
        marker = gateway_health.c.changed_at if gateway_id is None else gateway_health.c.updated_at
        crossed = sa.or_(
            sa.and_(seen > since - self.stale_ms, seen <= now - self.stale_ms),
            sa.and_(seen > since - self.offline_ms, seen <= now - self.offline_ms),
        )
        # Rows committed in the same millisecond as the last poll, or by a worker whose clock
        # is slightly behind, are caught by the overlap; ``cursor.sent`` drops the repeats.
        where = sa.or_(marker >= since - CHANGE_OVERLAP_MS, crossed)
        if gateway_id is not None:
            where = sa.and_(gateways.c.id == gateway_id, where)
        async with self._db.read() as conn:
            counts = await self.counts(conn, now)
            rows = (
                await conn.execute(
                    sa.select(*self._columns(), marker.label("marker"))
                    .select_from(self._from())
                    .where(where)
                    .limit(1000)
                )
            ).all()
        changed = []
        for row in rows:
            aged = self.state_of(row.last_seen_at, since) != self.state_of(row.last_seen_at, now)
            if aged or (row.marker is not None and cursor.sent.get(row.id) != row.marker):
                changed.append(self._summary(row, now))
                cursor.sent[row.id] = row.marker
        if len(cursor.sent) > 50_000:
            cursor.sent.clear()
        cursor.since = now
        return {"at": iso(now), "counts": counts, "changed": changed}


@dataclass
class ChangeCursor:
    """Where one live stream is: its last poll time and what it already sent."""

    since: int
    sent: dict[str, int | None] = field(default_factory=dict)


def incident_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule": row.rule_id,
        "rule_name": getattr(row, "rule_name", None),
        "subject": row.subject,
        "store": row.store_id,
        "detail": row.detail,
        "fired_at": iso(row.fired_at),
        "resolved_at": iso(row.resolved_at),
        "notified": row.notified,
        "delivery_error": row.delivery_error,
    }


def report_from_heartbeat(beat: Any) -> HealthReport:
    """The HTTP heartbeat (``schemas.Heartbeat``: devices, counters, version) as a report."""
    return HealthReport(
        version=beat.version,
        devices=[{"id": d.id, "state": d.state} for d in beat.devices],
        events_total=sum(beat.counters.values()),
    )
