"""Member levels, upgrade rules ("default → silver at 100 cumulative points, deduct 0") and
the chain-wide programme settings.

Upgrades follow ``member_programme.earned_points`` (points earned by spending, minus what
refunds took back), never the current balance: redeeming points must not cost a level
(Open Loyalty issue #131). Rules are checked when an order commits, inside its transaction;
thresholds are absolute, so one order may climb several levels, each step with its own
deduction and its own ``level_upgraded`` event.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncConnection

from . import ledger
from .clock import Clock, iso, to_millis
from .db import Database, is_unique_violation
from .errors import Conflict, NotFound
from .member_events import MemberEvent, MemberEvents
from .models import members
from .models_programme import levels, programme_settings, upgrade_rules
from .schemas import MAX_FEN, Body, Name, Out

LevelCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")]
MAX_STEPS: Final = 32  # a rule table with a cycle cannot loop for ever


class LevelIn(Body):
    code: LevelCode
    name: Name
    rank: Annotated[int, Field(ge=0, le=1000, description="higher is better")]


class LevelOut(Out):
    code: str
    name: str
    rank: int
    created_at: str


class LevelList(Out):
    items: list[LevelOut]


class UpgradeRuleIn(Body):
    from_level: LevelCode
    to_level: LevelCode
    min_earned_points: Annotated[int, Field(ge=0, le=MAX_FEN)]
    deduct_points: Annotated[int, Field(ge=0, le=MAX_FEN)] = 0


class UpgradeRuleOut(Out):
    id: int
    from_level: str
    to_level: str
    min_earned_points: int
    deduct_points: int
    created_at: str


class UpgradeRuleList(Out):
    items: list[UpgradeRuleOut]


class Upgrade(Out):
    """One step a member climbed."""

    from_level: str
    to_level: str
    earned_points: int
    deducted_points: int


def _level(row: Any) -> dict[str, Any]:
    return {"code": row.code, "name": row.name, "rank": row.rank, "created_at": iso(row.created_at)}


def _rule(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "from_level": row.from_level,
        "to_level": row.to_level,
        "min_earned_points": row.min_earned_points,
        "deduct_points": row.deduct_points,
        "created_at": iso(row.created_at),
    }


class LevelService:
    """Define levels and upgrade rules (admin), and apply the rules to a member."""

    def __init__(self, db: Database, clock: Clock, events: MemberEvents) -> None:
        self._db = db
        self._clock = clock
        self._events = events

    async def put_level(self, data: LevelIn) -> dict[str, Any]:
        """Create a level or rename / re-rank it (the code is its identity)."""
        now = to_millis(self._clock.now())
        async with self._db.write() as conn:
            await conn.execute(
                self._db.insert_ignore(levels).values(
                    code=data.code, name=data.name, rank=data.rank, created_at=now
                )
            )
            await conn.execute(
                levels.update()
                .where(levels.c.code == data.code)
                .values(name=data.name, rank=data.rank)
            )
            row = (await conn.execute(sa.select(levels).where(levels.c.code == data.code))).one()
        return _level(row)

    async def list_levels(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = (await conn.execute(sa.select(levels).order_by(levels.c.rank))).all()
        return [_level(r) for r in rows]

    async def create_rule(self, data: UpgradeRuleIn) -> dict[str, Any]:
        if data.from_level == data.to_level:
            raise Conflict("a level cannot upgrade to itself", code="invalid_rule")
        now = to_millis(self._clock.now())
        try:
            async with self._db.write() as conn:
                known = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(levels)
                    .where(levels.c.code.in_([data.from_level, data.to_level]))
                )
                if known != 2:
                    raise NotFound("define both levels first", code="level_not_found")
                rule_id = await conn.scalar(
                    upgrade_rules.insert()
                    .values(**data.model_dump(), created_at=now)
                    .returning(upgrade_rules.c.id)
                )
                row = (
                    await conn.execute(
                        sa.select(upgrade_rules).where(upgrade_rules.c.id == rule_id)
                    )
                ).one()
        except sa.exc.IntegrityError as exc:
            if is_unique_violation(exc):
                raise Conflict(
                    f"level {data.from_level} already has an upgrade rule", code="rule_exists"
                ) from exc
            raise
        return _rule(row)

    async def list_rules(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = (await conn.execute(sa.select(upgrade_rules).order_by(upgrade_rules.c.id))).all()
        return [_rule(r) for r in rows]

    async def delete_rule(self, rule_id: int) -> None:
        async with self._db.write() as conn:
            result = await conn.execute(upgrade_rules.delete().where(upgrade_rules.c.id == rule_id))
        if result.rowcount == 0:
            raise NotFound(f"no upgrade rule {rule_id}", code="rule_not_found")

    async def apply(
        self, conn: AsyncConnection, member_id: int, *, store: str, now: int, key: str
    ) -> list[dict[str, Any]]:
        """Climb every rule the member's cumulative earned points satisfy (in ``conn``).

        Each step sets the level, deducts the configured points (at most what the member
        has) and emits ``level_upgraded``; ``key`` makes the events' keys unique per cause.
        """
        climbed: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(MAX_STEPS):
            level = await conn.scalar(sa.select(members.c.level).where(members.c.id == member_id))
            if level is None or level in seen:
                break
            seen.add(level)
            rule = (
                await conn.execute(
                    sa.select(upgrade_rules).where(upgrade_rules.c.from_level == level)
                )
            ).first()
            if rule is None:
                break
            current = await ledger.balances(conn, member_id)
            if current["earned_points"] < rule.min_earned_points:
                break
            await conn.execute(
                members.update()
                .where(members.c.id == member_id)
                .values(level=rule.to_level, updated_at=now)
            )
            deducted = min(rule.deduct_points, current["points"])
            if deducted:
                await ledger.post(
                    conn,
                    member_id=member_id,
                    store=store,
                    account="points",
                    amount=-deducted,
                    kind="upgrade_deduction",
                    now=now,
                    ref=f"upgrade:{rule.id}",
                )
            step = {
                "from_level": level,
                "to_level": rule.to_level,
                "earned_points": current["earned_points"],
                "deducted_points": deducted,
            }
            climbed.append(step)
            await self._events.emit(
                conn,
                MemberEvent(
                    kind="level_upgraded",
                    member_id=member_id,
                    key=f"{key}:upgrade:{rule.to_level}",
                    store_id=store,
                    data=step,
                ),
            )
        return climbed


# --- chain-wide programme settings --------------------------------------------------------

SETTING_DEFAULTS: Final[dict[str, Any]] = {
    # What one point is worth when redeemed as payment (fen).
    "fen_per_point": 1,
    # Whether the share of an order paid with points earns points too.
    "earn_on_points_payment": False,
}


class ProgrammeSettings(Out):
    fen_per_point: int = Field(description="what one redeemed point pays, in fen")
    earn_on_points_payment: bool = Field(
        description="whether the part of an order paid with points earns points"
    )


class ProgrammeSettingsUpdate(Body):
    fen_per_point: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    earn_on_points_payment: bool | None = None


async def programme_settings_in(conn: AsyncConnection) -> dict[str, Any]:
    """The chain-wide programme settings (defaults for what was never set)."""
    rows = (await conn.execute(sa.select(programme_settings))).all()
    values = dict(SETTING_DEFAULTS)
    values.update({r.key: json.loads(r.value) for r in rows if r.key in SETTING_DEFAULTS})
    return values


async def update_programme_settings(db: Database, changes: dict[str, Any]) -> dict[str, Any]:
    async with db.write() as conn:
        for key, value in changes.items():
            if key not in SETTING_DEFAULTS or value is None:
                continue
            await conn.execute(
                db.insert_ignore(programme_settings).values(key=key, value=json.dumps(value))
            )
            await conn.execute(
                programme_settings.update()
                .where(programme_settings.c.key == key)
                .values(value=json.dumps(value))
            )
        return await programme_settings_in(conn)
