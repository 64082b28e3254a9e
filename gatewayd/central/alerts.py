"""Alert rules: admin-defined conditions on gateways, evaluated periodically, fired once.

Three kinds: ``gateway_offline`` (no heartbeat for ``threshold`` minutes), ``device_failed``
(a device failed or offline for ``threshold`` minutes) and ``backlog_over`` (an outbox
backlog above ``threshold`` items), each for the whole chain or one store.

Every worker process may run the evaluation; an incident is one row whose ``open_key``
("<rule>:<subject>") is unique while it is open, so whichever worker inserts it first is the
one that delivers the "fired" notification, and whichever clears it first delivers "resolved".
Delivery goes through the notification senders (``services.notifications.send_to``) at one
call site, ``_deliver``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Final, Literal, Protocol

import sqlalchemy as sa
from pydantic import Field

from .clock import Clock, iso, to_millis
from .dashboard import BAD_DEVICE_STATES, Dashboard, incident_out
from .db import Database
from .errors import NotFound
from .logs import get_logger
from .models import gateways, stores
from .models_dashboard import alert_incidents, alert_rules, gateway_health
from .notifications import check_address
from .schemas import Body, EntityId, Name, Out

log = get_logger(__name__)
AlertKind = Literal["gateway_offline", "device_failed", "backlog_over"]
MINUTES: Final = 60_000


class Recipient(Body):
    channel: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="sms, email…")]
    address: Annotated[str, Field(min_length=1, max_length=320)]


class AlertRuleCreate(Body):
    name: Name
    kind: AlertKind
    threshold: Annotated[
        int, Field(ge=1, le=1_000_000, description="minutes (offline, device) or items (backlog)")
    ]
    store: EntityId | None = Field(default=None, description="one store; omitted: the chain")
    recipients: Annotated[list[Recipient], Field(min_length=1, max_length=20)]
    enabled: bool = True


class AlertRuleOut(Out):
    id: int
    name: str
    kind: AlertKind
    threshold: int
    store: str | None
    recipients: list[dict[str, str]]
    enabled: bool
    created_at: str


class AlertRuleList(Out):
    items: list[AlertRuleOut]


class IncidentOut(Out):
    id: int
    rule: int
    rule_name: str | None
    subject: str = Field(description="a gateway id, or gateway/device")
    store: str | None
    detail: str
    fired_at: str
    resolved_at: str | None
    notified: int = Field(description="notifications handed to the senders")
    delivery_error: str | None


class IncidentList(Out):
    items: list[IncidentOut]


class AlertSender(Protocol):
    """The notification senders' contract (``services.notifications``)."""

    async def send_to(
        self, *, channel: str, address: str, template: str, data: dict[str, Any], dedupe_key: str
    ) -> Any: ...


def _rule_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "threshold": row.threshold,
        "store": row.store_id,
        "recipients": json.loads(row.recipients),
        "enabled": row.enabled,
        "created_at": iso(row.created_at),
    }


class Alerts:
    """Rules, their evaluation, and the firing/resolved history."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        dashboard: Dashboard,
        sender: AlertSender | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._dashboard = dashboard
        self._sender = sender

    def use_sender(self, sender: AlertSender | None) -> None:
        """Deliver through ``sender`` (the notification senders) from now on."""
        self._sender = sender

    # --- rules ---------------------------------------------------------------------------

    async def create_rule(self, data: AlertRuleCreate) -> dict[str, Any]:
        for recipient in data.recipients:  # refused now, not at the first incident
            check_address(recipient.channel, recipient.address)
        if data.store is not None:
            async with self._db.read() as conn:
                if (
                    await conn.scalar(sa.select(stores.c.id).where(stores.c.id == data.store))
                    is None
                ):
                    raise NotFound(f"no store {data.store}", code="store_not_found")
        async with self._db.write() as conn:
            rule_id = await conn.scalar(
                alert_rules.insert()
                .values(
                    name=data.name,
                    kind=data.kind,
                    threshold=data.threshold,
                    store_id=data.store,
                    recipients=json.dumps([r.model_dump() for r in data.recipients]),
                    enabled=data.enabled,
                    created_at=to_millis(self._clock.now()),
                )
                .returning(alert_rules.c.id)
            )
        log.info("alert_rule_created", rule=rule_id, kind=data.kind)
        return await self.get_rule(int(rule_id or 0))

    async def get_rule(self, rule_id: int) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(alert_rules).where(alert_rules.c.id == rule_id))
            ).first()
        if row is None:
            raise NotFound(f"no alert rule {rule_id}", code="alert_rule_not_found")
        return _rule_out(row)

    async def list_rules(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = (await conn.execute(sa.select(alert_rules).order_by(alert_rules.c.id))).all()
        return [_rule_out(r) for r in rows]

    async def disable_rule(self, rule_id: int) -> dict[str, Any]:
        """Stop a rule (kept for its history); its open incidents resolve at the next run."""
        async with self._db.write() as conn:
            result = await conn.execute(
                alert_rules.update().where(alert_rules.c.id == rule_id).values(enabled=False)
            )
        if result.rowcount == 0:
            raise NotFound(f"no alert rule {rule_id}", code="alert_rule_not_found")
        return await self.get_rule(rule_id)

    async def incidents(self, *, open_only: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        query = (
            sa.select(alert_incidents, alert_rules.c.name.label("rule_name"))
            .join(alert_rules, alert_rules.c.id == alert_incidents.c.rule_id)
            .order_by(alert_incidents.c.fired_at.desc(), alert_incidents.c.id.desc())
            .limit(limit)
        )
        if open_only:
            query = query.where(alert_incidents.c.resolved_at.is_(None))
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [incident_out(r) for r in rows]

    # --- evaluation ----------------------------------------------------------------------

    async def _matching(self, rule: Any, now: int) -> dict[str, tuple[str, str]]:
        """subject → (store, detail) for every subject the rule's condition holds for."""
        scope = [gateways.c.store_id == rule.store_id] if rule.store_id else []
        found: dict[str, tuple[str, str]] = {}
        async with self._db.read() as conn:
            if rule.kind == "gateway_offline":
                rows = await conn.execute(
                    sa.select(gateways.c.id, gateways.c.store_id, gateways.c.last_seen_at).where(
                        gateways.c.last_seen_at < now - rule.threshold * MINUTES, *scope
                    )
                )
                for r in rows:
                    found[r.id] = (r.store_id, f"gateway {r.id} silent since {iso(r.last_seen_at)}")
            elif rule.kind == "backlog_over":
                rows = await conn.execute(
                    sa.select(gateways.c.id, gateways.c.store_id, gateway_health.c.backlog)
                    .join(gateway_health, gateway_health.c.gateway_id == gateways.c.id)
                    .where(gateway_health.c.backlog > rule.threshold, *scope)
                )
                for r in rows:
                    found[r.id] = (r.store_id, f"gateway {r.id} outbox backlog {r.backlog} items")
            else:
                rows = await conn.execute(
                    sa.select(gateways.c.id, gateways.c.store_id, gateway_health.c.devices)
                    .join(gateway_health, gateway_health.c.gateway_id == gateways.c.id)
                    .where(gateway_health.c.devices_bad > 0, *scope)
                )
                for r in rows:
                    for device in json.loads(r.devices):
                        since = device["since"]
                        if (
                            device["state"] in BAD_DEVICE_STATES
                            and since <= now - rule.threshold * MINUTES
                        ):
                            found[f"{r.id}/{device['id']}"] = (
                                r.store_id,
                                f"device {device['id']} on gateway {r.id} {device['state']} "
                                f"since {iso(since)}",
                            )
        return found

    async def evaluate(self) -> dict[str, int]:
        """One pass over every rule: fire new incidents, resolve cleared ones."""
        now = to_millis(self._clock.now())
        fired = resolved = 0
        async with self._db.read() as conn:
            rules = (await conn.execute(sa.select(alert_rules))).all()
            open_rows = (
                await conn.execute(
                    sa.select(alert_incidents).where(alert_incidents.c.resolved_at.is_(None))
                )
            ).all()
        open_by_rule: dict[int, dict[str, Any]] = {}
        for row in open_rows:
            open_by_rule.setdefault(row.rule_id, {})[row.subject] = row
        for rule in rules:
            matching = await self._matching(rule, now) if rule.enabled else {}
            already = open_by_rule.get(rule.id, {})
            for subject, (store, detail) in matching.items():
                if subject not in already and await self._fire(rule, subject, store, detail, now):
                    fired += 1
            for subject, row in already.items():
                if subject not in matching and await self._resolve(rule, row, now):
                    resolved += 1
        return {"fired": fired, "resolved": resolved}

    async def _fire(self, rule: Any, subject: str, store: str, detail: str, now: int) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(
                self._db.insert_ignore(alert_incidents).values(
                    rule_id=rule.id,
                    subject=subject,
                    store_id=store,
                    open_key=f"{rule.id}:{subject}",
                    detail=detail[:500],
                    fired_at=now,
                    notified=0,
                )
            )
            if result.rowcount != 1:
                return False  # another worker fired it
            incident_id = await conn.scalar(
                sa.select(alert_incidents.c.id).where(
                    alert_incidents.c.open_key == f"{rule.id}:{subject}"
                )
            )
        log.warning("alert_fired", rule=rule.id, kind=rule.kind, subject=subject)
        await self._deliver(rule, int(incident_id or 0), "fired", subject, detail, now)
        return True

    async def _resolve(self, rule: Any, row: Any, now: int) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(
                alert_incidents.update()
                .where(alert_incidents.c.id == row.id, alert_incidents.c.resolved_at.is_(None))
                .values(resolved_at=now, open_key=None)
            )
        if result.rowcount != 1:
            return False
        log.info("alert_resolved", rule=rule.id, subject=row.subject)
        await self._deliver(rule, row.id, "resolved", row.subject, row.detail, now)
        return True

    async def _deliver(
        self, rule: Any, incident_id: int, event: str, subject: str, detail: str, now: int
    ) -> None:
        """Hand the incident to every recipient's channel; the one delivery call site."""
        sent, problem = 0, None
        data = {
            "event": event,
            "rule": rule.name,
            "kind": rule.kind,
            "threshold": rule.threshold,
            "store": rule.store_id,
            "subject": subject,
            "detail": detail,
            "at": iso(now),
        }
        for recipient in json.loads(rule.recipients):
            if self._sender is None:
                problem = "no notification senders configured"
                break
            try:
                await self._sender.send_to(
                    channel=recipient["channel"],
                    address=recipient["address"],
                    template=f"alert_{event}",
                    data=data,
                    dedupe_key=f"alert:{incident_id}:{event}:{recipient['channel']}:"
                    f"{recipient['address']}",
                )
                sent += 1
            except Exception as exc:  # noqa: BLE001 - one failing channel must not stop others
                problem = f"{recipient['channel']}: {type(exc).__name__}: {exc}"[:500]
                log.warning("alert_delivery_failed", incident=incident_id, error=problem)
        async with self._db.write() as conn:
            await conn.execute(
                alert_incidents.update()
                .where(alert_incidents.c.id == incident_id)
                .values(notified=alert_incidents.c.notified + sent, delivery_error=problem)
            )

    async def run(self, interval: float) -> None:
        """Evaluate every ``interval`` seconds until cancelled; a failed pass is logged.

        The first pass comes one interval after start, when gateways that were waiting for
        central have had a chance to report again."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.evaluate()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert_evaluation_failed")
