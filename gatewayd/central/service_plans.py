"""Service plans per member ("service in 60 days, remind 3 days before").

When a plan's remind day starts (store-local midnight), the scheduler claims it with one
conditional ``UPDATE … WHERE status = 'open'`` and, in that same transaction, posts a
``service_reminder`` to the store's terminals (the central → gateway channel) and emits the
member event ``service_due`` (whose subscriber queues the member's SMS). Either all three
happen or none, and only the worker whose UPDATE matched does them: exactly once, however
many workers run the scheduler.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import Field, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.protocols.tokens import mask

from .auth import Principal
from .clock import Clock, iso, to_millis
from .db import Database
from .errors import Conflict, Invalid, NotFound
from .logs import get_logger
from .member_events import MemberEvent, MemberEvents
from .models import channel_messages, members, stores
from .models_notify import service_plans
from .notifications import Notifications, local_date
from .schemas import Body, EntityId, IsoDate, Out

log = get_logger(__name__)
REMIND_BATCH = 100
PlanStatus = Literal["open", "reminded", "completed", "cancelled"]


class ServicePlanCreate(Body):
    store: EntityId = Field(description="the store that does the service and gets the reminder")
    text: Annotated[str, Field(min_length=1, max_length=500)]
    due_date: IsoDate | None = Field(default=None, description="YYYY-MM-DD; or due_in_days")
    due_in_days: Annotated[int, Field(ge=0, le=3650)] | None = Field(
        default=None, description="days from today (store-local); or due_date"
    )
    remind_days_before: Annotated[int, Field(ge=0, le=365)] = 3

    @model_validator(mode="after")
    def _one_due(self) -> Self:
        if (self.due_date is None) == (self.due_in_days is None):
            raise ValueError("give exactly one of due_date and due_in_days")
        return self


class ServicePlanOut(Out):
    id: int
    member_id: int
    store: str
    text: str
    due_date: str
    remind_days_before: int
    remind_on: str = Field(description="the store-local day the reminder goes out")
    status: PlanStatus
    created_at: str
    reminded_at: str | None
    completed_at: str | None


class ServicePlanList(Out):
    items: list[ServicePlanOut]


def plan_out(row: Any) -> dict[str, Any]:
    remind_on = row.due_date - dt.timedelta(days=row.remind_days_before)
    return {
        "id": row.id,
        "member_id": row.member_id,
        "store": row.store_id,
        "text": row.text,
        "due_date": row.due_date.isoformat(),
        "remind_days_before": row.remind_days_before,
        "remind_on": remind_on.isoformat(),
        "status": row.status,
        "created_at": iso(row.created_at),
        "reminded_at": iso(row.reminded_at),
        "completed_at": iso(row.completed_at),
    }


def start_of_day(day: dt.date, timezone: str) -> int:
    """Local midnight of ``day`` in ``timezone`` as epoch milliseconds."""
    return to_millis(dt.datetime.combine(day, dt.time(), ZoneInfo(timezone)).timestamp())


class ServicePlans:
    """Create, list, complete and cancel plans; post their reminders when due."""

    def __init__(
        self, db: Database, clock: Clock, events: MemberEvents, notifications: Notifications
    ) -> None:
        self._db = db
        self._clock = clock
        self._events = events
        self._notifications = notifications

    async def create(
        self, member_id: int, caller: Principal, body: ServicePlanCreate
    ) -> dict[str, Any]:
        caller.require_store(body.store)
        settings = await self._notifications.settings()
        timezone = settings.timezone_of(body.store)
        now_s = self._clock.now()
        today = local_date(now_s, timezone)
        due = body.due_date or today + dt.timedelta(days=body.due_in_days or 0)
        if due < today:
            raise Invalid(f"due_date {due} is in the past", code="due_in_past")
        remind_on = due - dt.timedelta(days=body.remind_days_before)
        async with self._db.write() as conn:
            active = await conn.scalar(sa.select(members.c.active).where(members.c.id == member_id))
            if active is None:
                raise NotFound(f"no member {member_id}", code="member_not_found")
            if await conn.scalar(sa.select(stores.c.id).where(stores.c.id == body.store)) is None:
                raise NotFound(f"no store {body.store}", code="store_not_found")
            plan_id = await conn.scalar(
                service_plans.insert()
                .values(
                    member_id=member_id,
                    store_id=body.store,
                    text=body.text,
                    due_date=due,
                    remind_days_before=body.remind_days_before,
                    status="open",
                    remind_at=start_of_day(remind_on, timezone),
                    created_at=to_millis(now_s),
                )
                .returning(service_plans.c.id)
            )
        log.info("service_plan_created", plan_id=plan_id, member_id=member_id, store=body.store)
        assert plan_id is not None
        return await self.get(plan_id)

    async def get(self, plan_id: int) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(service_plans).where(service_plans.c.id == plan_id))
            ).first()
        if row is None:
            raise NotFound(f"no service plan {plan_id}", code="plan_not_found")
        return plan_out(row)

    async def for_member(self, member_id: int) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            if await conn.scalar(sa.select(members.c.id).where(members.c.id == member_id)) is None:
                raise NotFound(f"no member {member_id}", code="member_not_found")
            rows = (
                await conn.execute(
                    sa.select(service_plans)
                    .where(service_plans.c.member_id == member_id)
                    .order_by(service_plans.c.due_date, service_plans.c.id)
                )
            ).all()
        return [plan_out(r) for r in rows]

    async def finish(self, plan_id: int, caller: Principal, status: PlanStatus) -> dict[str, Any]:
        """Mark a plan completed or cancelled (from open or reminded; else 409)."""
        plan = await self.get(plan_id)
        caller.require_store(plan["store"])
        async with self._db.write() as conn:
            result = await conn.execute(
                service_plans.update()
                .where(
                    service_plans.c.id == plan_id,
                    service_plans.c.status.in_(["open", "reminded"]),
                )
                .values(status=status, completed_at=to_millis(self._clock.now()))
            )
        if not result.rowcount:
            raise Conflict(
                f"service plan {plan_id} is already {plan['status']}", code="plan_closed"
            )
        log.info("service_plan_finished", plan_id=plan_id, status=status)
        return await self.get(plan_id)

    # --- reminders ------------------------------------------------------------------------

    async def remind_due(self) -> int:
        """Post every reminder whose day has come; returns how many this worker posted."""
        now = to_millis(self._clock.now())
        async with self._db.read() as conn:
            due = list(
                (
                    await conn.execute(
                        sa.select(service_plans.c.id)
                        .where(service_plans.c.status == "open", service_plans.c.remind_at <= now)
                        .order_by(service_plans.c.remind_at)
                        .limit(REMIND_BATCH)
                    )
                ).scalars()
            )
        posted = 0
        for plan_id in due:
            async with self._db.write() as conn:
                posted += await self._remind(conn, plan_id, now)
        return posted

    async def _remind(self, conn: AsyncConnection, plan_id: int, now: int) -> int:
        claimed = await conn.execute(
            service_plans.update()
            .where(service_plans.c.id == plan_id, service_plans.c.status == "open")
            .values(status="reminded", reminded_at=now)
        )
        if claimed.rowcount != 1:
            return 0  # another worker reminded it, or it was completed meanwhile
        row = (
            await conn.execute(
                sa.select(service_plans, members.c.name, members.c.phone)
                .join(members, members.c.id == service_plans.c.member_id)
                .where(service_plans.c.id == plan_id)
            )
        ).one()
        due_date = row.due_date.isoformat()
        payload = {
            "plan_id": plan_id,
            "member_id": row.member_id,
            "member_name": row.name,
            "phone_masked": mask(row.phone) if row.phone else None,
            "text": row.text,
            "due_date": due_date,
            "message": f"会员{row.name}的服务“{row.text}”将于{due_date}到期",
        }
        # The channel's own table, in this transaction (GatewayLink.post_message commits on
        # its own); gateways poll it, so the message reaches them within the channel's poll.
        await conn.execute(
            channel_messages.insert().values(
                store_id=row.store_id,
                gateway_id=None,
                terminal_id=None,
                kind="service_reminder",
                payload=json.dumps(payload, ensure_ascii=False),
                created_at=now,
            )
        )
        await self._events.emit(
            conn,
            MemberEvent(
                kind="service_due",
                member_id=row.member_id,
                key=f"plan:{plan_id}",
                store_id=row.store_id,
                data={"plan_id": plan_id, "plan_text": row.text, "due_date": due_date},
            ),
        )
        log.info("service_plan_reminded", plan_id=plan_id, store=row.store_id)
        return 1
