"""Stored-value recharges, recharge rules per level, and the scheduler that pays returns.

A rule reads "recharge 1000.00 → first time +100.00 and +100 points, then every 30 days
+50.00, 2 times". A recharge picks, for the member's level, the rule with the largest
``amount_fen`` not above the amount recharged (a level's own rules before the chain-wide
ones, ``level`` None). The bonus money and points are posted with the recharge; the
periodic returns are written at once as ``scheduled_bonuses`` rows (visible to the member
and the till beforehand) and paid by ``BonusScheduler`` (``bonus_scheduler.py``) when due.

Every central process runs a scheduler (``--workers N`` means N of them): each bonus is
claimed by one conditional UPDATE (``paid_at IS NULL``), and the rows are unique per
(recharge, period), a recharge being one rule and one member, so a return is paid exactly
once however many schedulers race for it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncConnection

from . import ledger
from .bonus_scheduler import BATCH as BATCH
from .bonus_scheduler import SCHEDULER_INTERVAL as SCHEDULER_INTERVAL
from .bonus_scheduler import BonusScheduler
from .clock import Clock, iso, to_millis
from .db import Database
from .errors import NotFound
from .levels import LevelIn, LevelService, UpgradeRuleIn
from .member_events import MemberEvent, MemberEvents
from .members import MemberService
from .models import members
from .models_programme import levels, recharge_rules, recharges, scheduled_bonuses
from .orders import OrderService
from .passes import DAY_MS, PassService
from .schemas import MAX_FEN, Body, EntityId, Out, RowId

RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
PositiveFen = Annotated[int, Field(ge=1, le=MAX_FEN)]
Count = Annotated[int, Field(ge=0, le=1000)]


class RechargeRuleIn(Body):
    level: Annotated[str, Field(min_length=1, max_length=32)] | None = Field(
        default=None, description="None: for every level without rules of its own"
    )
    amount_fen: PositiveFen
    bonus_fen: Annotated[int, Field(ge=0, le=MAX_FEN)] = 0
    bonus_points: Annotated[int, Field(ge=0, le=MAX_FEN)] = 0
    every_days: Count = 0
    periodic_fen: Annotated[int, Field(ge=0, le=MAX_FEN)] = 0
    times: Count = 0


class RechargeRuleOut(Out):
    id: int
    level: str | None
    amount_fen: int
    bonus_fen: int
    bonus_points: int
    every_days: int
    periodic_fen: int
    times: int
    active: bool
    created_at: str


class RechargeRuleList(Out):
    items: list[RechargeRuleOut]


class RechargeCreate(Body):
    request_id: RequestId
    store: EntityId
    terminal: EntityId
    member: RowId
    amount_fen: PositiveFen
    method: Literal["cash", "wechat", "alipay"]


class ScheduledBonusOut(Out):
    id: int
    recharge_id: int
    rule_id: int
    period: int
    due_at: str
    amount_fen: int
    paid_at: str | None
    store: str


class ScheduledBonusList(Out):
    items: list[ScheduledBonusOut]


class RechargeOut(Out):
    id: int
    member: int
    store: str
    amount_fen: int
    method: str
    rule_id: int | None
    bonus_fen: int
    bonus_points: int
    scheduled: list[ScheduledBonusOut]
    balance_fen: int
    points: int
    created_at: str


def _rule(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "level": row.level,
        "amount_fen": row.amount_fen,
        "bonus_fen": row.bonus_fen,
        "bonus_points": row.bonus_points,
        "every_days": row.every_days,
        "periodic_fen": row.periodic_fen,
        "times": row.times,
        "active": row.active,
        "created_at": iso(row.created_at),
    }


def _bonus(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "recharge_id": row.recharge_id,
        "rule_id": row.rule_id,
        "period": row.period,
        "due_at": iso(row.due_at),
        "amount_fen": row.amount_fen,
        "paid_at": iso(row.paid_at),
        "store": row.store_id,
    }


async def matching_rule(conn: AsyncConnection, level: str, amount_fen: int) -> Any:
    """The rule for a recharge: the level's own first, then chain-wide; largest amount ≤."""
    for condition in (recharge_rules.c.level == level, recharge_rules.c.level.is_(None)):
        row = (
            await conn.execute(
                sa.select(recharge_rules)
                .where(
                    condition,
                    recharge_rules.c.active.is_(True),
                    recharge_rules.c.amount_fen <= amount_fen,
                )
                .order_by(recharge_rules.c.amount_fen.desc(), recharge_rules.c.id.desc())
                .limit(1)
            )
        ).first()
        if row is not None:
            return row
    return None


class RechargeService:
    """Recharge rules (admin), recharges, and the member's scheduled returns."""

    def __init__(self, db: Database, clock: Clock, events: MemberEvents) -> None:
        self._db = db
        self._clock = clock
        self._events = events

    async def create_rule(self, data: RechargeRuleIn) -> dict[str, Any]:
        now = to_millis(self._clock.now())
        async with self._db.write() as conn:
            if data.level is not None:
                known = await conn.scalar(
                    sa.select(levels.c.code).where(levels.c.code == data.level)
                )
                if known is None:
                    raise NotFound(f"no level {data.level}", code="level_not_found")
            rule_id = await conn.scalar(
                recharge_rules.insert()
                .values(**data.model_dump(), active=True, created_at=now)
                .returning(recharge_rules.c.id)
            )
            row = (
                await conn.execute(sa.select(recharge_rules).where(recharge_rules.c.id == rule_id))
            ).one()
        return _rule(row)

    async def list_rules(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(recharge_rules).order_by(
                        recharge_rules.c.level, recharge_rules.c.amount_fen
                    )
                )
            ).all()
        return [_rule(r) for r in rows]

    async def deactivate_rule(self, rule_id: int) -> dict[str, Any]:
        """Stop using a rule for new recharges; returns already scheduled are still paid."""
        async with self._db.write() as conn:
            await conn.execute(
                recharge_rules.update().where(recharge_rules.c.id == rule_id).values(active=False)
            )
            row = (
                await conn.execute(sa.select(recharge_rules).where(recharge_rules.c.id == rule_id))
            ).first()
        if row is None:
            raise NotFound(f"no recharge rule {rule_id}", code="rule_not_found")
        return _rule(row)

    async def recharge(self, data: RechargeCreate) -> ledger.Replay:
        now = to_millis(self._clock.now())

        async def work(conn: AsyncConnection) -> tuple[int, Any]:
            member = (
                await conn.execute(
                    sa.select(members.c.level, members.c.active).where(members.c.id == data.member)
                )
            ).first()
            if member is None or not member.active:
                raise NotFound(f"no active member {data.member}", code="member_not_found")
            rule = await matching_rule(conn, member.level, data.amount_fen)
            recharge_id = await conn.scalar(
                recharges.insert()
                .values(
                    member_id=data.member,
                    store_id=data.store,
                    terminal_id=data.terminal,
                    rule_id=rule.id if rule is not None else None,
                    amount_fen=data.amount_fen,
                    method=data.method,
                    created_at=now,
                )
                .returning(recharges.c.id)
            )
            assert recharge_id is not None
            ref = f"recharge:{recharge_id}"
            common: dict[str, Any] = {
                "member_id": data.member,
                "store": data.store,
                "now": now,
                "ref": ref,
            }
            await ledger.post(
                conn, account="stored_value", amount=data.amount_fen, kind="recharge", **common
            )
            bonus_fen = rule.bonus_fen if rule is not None else 0
            bonus_points = rule.bonus_points if rule is not None else 0
            if bonus_fen:
                await ledger.post(
                    conn, account="stored_value", amount=bonus_fen, kind="recharge_bonus", **common
                )
            if bonus_points:
                await ledger.post(
                    conn, account="points", amount=bonus_points, kind="recharge_bonus", **common
                )
            if rule is not None and rule.every_days and rule.periodic_fen and rule.times:
                await conn.execute(
                    scheduled_bonuses.insert(),
                    [
                        {
                            "recharge_id": recharge_id,
                            "rule_id": rule.id,
                            "member_id": data.member,
                            "store_id": data.store,
                            "period": period,
                            "due_at": now + period * rule.every_days * DAY_MS,
                            "amount_fen": rule.periodic_fen,
                        }
                        for period in range(1, rule.times + 1)
                    ],
                )
            scheduled = (
                await conn.execute(
                    sa.select(scheduled_bonuses)
                    .where(scheduled_bonuses.c.recharge_id == recharge_id)
                    .order_by(scheduled_bonuses.c.period)
                )
            ).all()
            balances = await ledger.balances(conn, data.member)
            await self._events.emit(
                conn,
                MemberEvent(
                    kind="recharged",
                    member_id=data.member,
                    key=ref,
                    store_id=data.store,
                    data={
                        "amount_fen": data.amount_fen,
                        "bonus_fen": bonus_fen,
                        "bonus_points": bonus_points,
                        "balance_fen": balances["balance_fen"],
                    },
                ),
            )
            body = {
                "id": recharge_id,
                "member": data.member,
                "store": data.store,
                "amount_fen": data.amount_fen,
                "method": data.method,
                "rule_id": rule.id if rule is not None else None,
                "bonus_fen": bonus_fen,
                "bonus_points": bonus_points,
                "scheduled": [_bonus(r) for r in scheduled],
                "balance_fen": balances["balance_fen"],
                "points": balances["points"],
                "created_at": iso(now),
            }
            return 201, RechargeOut.model_validate(body).model_dump(mode="json")

        return await ledger.run_idempotent(
            self._db,
            store=data.store,
            request_id=data.request_id,
            operation="recharge",
            body=data.model_dump(mode="json"),
            now=now,
            work=work,
        )

    async def scheduled(self, member_id: int) -> list[dict[str, Any]]:
        """The member's returns, paid and still to come, in due order."""
        async with self._db.read() as conn:
            exists = await conn.scalar(sa.select(members.c.id).where(members.c.id == member_id))
            if exists is None:
                raise NotFound(f"no member {member_id}", code="member_not_found")
            rows = (
                await conn.execute(
                    sa.select(scheduled_bonuses)
                    .where(scheduled_bonuses.c.member_id == member_id)
                    .order_by(scheduled_bonuses.c.due_at, scheduled_bonuses.c.id)
                )
            ).all()
        return [_bonus(r) for r in rows]


@dataclass(frozen=True, kw_only=True)
class Programme:
    """The programme's services, one field of ``Services`` (``services.programme``)."""

    levels: LevelService
    orders: OrderService
    recharges: RechargeService
    passes: PassService
    scheduler: BonusScheduler


def build_programme(
    db: Database,
    clock: Clock,
    events: MemberEvents,
    members_service: MemberService,
    code_key: bytes,
) -> Programme:
    """Wire the programme over one database; ``code_key`` verifies consumption codes."""
    spend = ledger.SpendAuthorizer(members_service, code_key)
    level_service = LevelService(db, clock, events)
    passes = PassService(db, clock, events, spend)
    return Programme(
        levels=level_service,
        orders=OrderService(db, clock, events, level_service, spend),
        recharges=RechargeService(db, clock, events),
        passes=passes,
        scheduler=BonusScheduler(db, clock, events, passes),
    )


# Seed 004's recharge rules: amount, first bonus, points, every N days, M, K times (fen).
DEMO_RECHARGE_RULES: Final = (
    (500, 200, 2, 1, 100, 10),
    (10_000, 0, 0, 0, 0, 0),
    (100_000, 10_000, 100, 30, 5_000, 2),
)


async def seed_demo_programme(db: Database, clock: Clock, level_codes: tuple[str, ...]) -> None:
    """A demo chain's programme: the levels (lowest first), seed 004's upgrade table (each
    level to the next at 100 cumulative points, deduct 0) and its recharge rules."""
    events = MemberEvents()
    level_service = LevelService(db, clock, events)
    for rank, code in enumerate(level_codes):
        await level_service.put_level(LevelIn(code=code, name=code.title(), rank=rank))
    for lower, higher in itertools.pairwise(level_codes):
        await level_service.create_rule(
            UpgradeRuleIn(from_level=lower, to_level=higher, min_earned_points=100)
        )
    recharges_service = RechargeService(db, clock, events)
    for amount, bonus, points, every, periodic, times in DEMO_RECHARGE_RULES:
        await recharges_service.create_rule(
            RechargeRuleIn(
                amount_fen=amount,
                bonus_fen=bonus,
                bonus_points=points,
                every_days=every,
                periodic_fen=periodic,
                times=times,
            )
        )
