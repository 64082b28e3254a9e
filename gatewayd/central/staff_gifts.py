"""Staff and gift registries: HQ's minimal lists of who works where and what can be given.

They exist so custom fields have something to hang on (issue 8): each write carries
``custom`` and validates it with ``custom_fields.write_values`` in the same transaction as
the row, exactly as member writes do, so a required staff or gift field is enforced and a
refused write stores nothing. Rows are deactivated (``DELETE``), never removed. Gift
redemption by members is not here; a gift is only its name, price in points and stock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncConnection

from . import custom_fields
from .clock import Clock, iso, to_millis
from .custom_fields import Scalar
from .db import Database
from .errors import NotFound
from .logs import get_logger
from .models import stores
from .models_staff_gifts import gifts, staff
from .schemas import MAX_FEN, Body, EntityId, Name, Out

log = get_logger(__name__)
Role = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="the chain's role name: cashier…")
]
Points = Annotated[int, Field(ge=0, le=MAX_FEN, description="whole points")]
Pieces = Annotated[int, Field(ge=0, le=MAX_FEN, description="pieces on hand")]
CUSTOM_DOC: Final = "custom fields by key (see /v1/custom-fields); on PATCH null clears one"


class StaffCreate(Body):
    store: EntityId = Field(description="the store they work at")
    name: Name
    role: Role
    active: bool = True
    custom: dict[str, Scalar] | None = Field(default=None, description=CUSTOM_DOC)


class StaffUpdate(Body):
    """PATCH: only the fields sent change; none of the built-in ones may be null."""

    store: EntityId = Field(default=None)  # type: ignore[assignment]
    name: Name = Field(default=None)  # type: ignore[assignment]
    role: Role = Field(default=None)  # type: ignore[assignment]
    active: bool = Field(default=None)  # type: ignore[assignment]
    custom: dict[str, Scalar] | None = Field(default=None, description=CUSTOM_DOC)


class StaffOut(Out):
    id: int
    store: str
    name: str
    role: str
    active: bool
    created_at: str
    updated_at: str
    custom: dict[str, Scalar]


class StaffList(Out):
    items: list[StaffOut]


class GiftCreate(Body):
    name: Name
    points_cost: Points = Field(description="points a member would pay for one")
    stock: Pieces = 0
    active: bool = True
    custom: dict[str, Scalar] | None = Field(default=None, description=CUSTOM_DOC)


class GiftUpdate(Body):
    """PATCH: only the fields sent change; none of the built-in ones may be null."""

    name: Name = Field(default=None)  # type: ignore[assignment]
    points_cost: Points = Field(default=None)  # type: ignore[assignment]
    stock: Pieces = Field(default=None)  # type: ignore[assignment]
    active: bool = Field(default=None)  # type: ignore[assignment]
    custom: dict[str, Scalar] | None = Field(default=None, description=CUSTOM_DOC)


class GiftOut(Out):
    id: int
    name: str
    points_cost: int
    stock: int
    active: bool
    created_at: str
    updated_at: str
    custom: dict[str, Scalar]


class GiftList(Out):
    items: list[GiftOut]


def _staff_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "store": row.store_id,
        "name": row.name,
        "role": row.role,
        "active": row.active,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def _gift_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "points_cost": row.points_cost,
        "stock": row.stock,
        "active": row.active,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


class StaffGifts:
    """Create, read, change and deactivate staff and gifts, with their custom values."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def _now(self) -> int:
        return to_millis(self._clock.now())

    # --- staff -----------------------------------------------------------------------------

    async def create_staff(self, data: StaffCreate) -> dict[str, Any]:
        now = self._now()
        values = {"store_id": data.store, "name": data.name, "role": data.role}
        async with self._db.write() as conn:
            await _require_store(conn, data.store)
            staff_id = await self._insert(conn, staff, "staff", values, data, now)
        log.info("staff_created", staff_id=staff_id, store=data.store, role=data.role)
        return await self.get_staff(staff_id)

    async def get_staff(self, staff_id: int) -> dict[str, Any]:
        return await self._get(staff, "staff", staff_id, _staff_out)

    async def list_staff(self, store: str | None, active: bool | None) -> list[dict[str, Any]]:
        where = [] if store is None else [staff.c.store_id == store]
        return await self._list(staff, "staff", where, active, _staff_out)

    async def update_staff(self, staff_id: int, data: StaffUpdate) -> dict[str, Any]:
        fields = data.model_fields_set - {"custom"}
        values = {("store_id" if f == "store" else f): getattr(data, f) for f in fields}
        async with self._db.write() as conn:
            if data.store is not None:
                await _require_store(conn, data.store)
            await self._update(conn, staff, "staff", staff_id, values, data)
        log.info("staff_updated", staff_id=staff_id, fields=sorted(data.model_fields_set))
        return await self.get_staff(staff_id)

    async def deactivate_staff(self, staff_id: int) -> dict[str, Any]:
        return await self.update_staff(staff_id, StaffUpdate(active=False))

    # --- gifts -----------------------------------------------------------------------------

    async def create_gift(self, data: GiftCreate) -> dict[str, Any]:
        now = self._now()
        values = {"name": data.name, "points_cost": data.points_cost, "stock": data.stock}
        async with self._db.write() as conn:
            gift_id = await self._insert(conn, gifts, "gift", values, data, now)
        log.info("gift_created", gift_id=gift_id, points_cost=data.points_cost)
        return await self.get_gift(gift_id)

    async def get_gift(self, gift_id: int) -> dict[str, Any]:
        return await self._get(gifts, "gift", gift_id, _gift_out)

    async def list_gifts(self, active: bool | None) -> list[dict[str, Any]]:
        return await self._list(gifts, "gift", [], active, _gift_out)

    async def update_gift(self, gift_id: int, data: GiftUpdate) -> dict[str, Any]:
        values = {f: getattr(data, f) for f in data.model_fields_set - {"custom"}}
        async with self._db.write() as conn:
            await self._update(conn, gifts, "gift", gift_id, values, data)
        log.info("gift_updated", gift_id=gift_id, fields=sorted(data.model_fields_set))
        return await self.get_gift(gift_id)

    async def deactivate_gift(self, gift_id: int) -> dict[str, Any]:
        return await self.update_gift(gift_id, GiftUpdate(active=False))

    # --- shared ----------------------------------------------------------------------------

    async def _insert(
        self,
        conn: AsyncConnection,
        table: sa.Table,
        entity: str,
        values: dict[str, Any],
        data: StaffCreate | GiftCreate,
        now: int,
    ) -> int:
        """Insert the row and its custom values (defaults applied, required enforced)."""
        row_id = await conn.scalar(
            table.insert()
            .values(**values, active=data.active, created_at=now, updated_at=now)
            .returning(table.c.id)
        )
        assert row_id is not None
        await custom_fields.write_values(conn, entity, row_id, data.custom, creating=True)
        return int(row_id)

    async def _update(
        self,
        conn: AsyncConnection,
        table: sa.Table,
        entity: str,
        row_id: int,
        values: dict[str, Any],
        data: StaffUpdate | GiftUpdate,
    ) -> None:
        """Change the fields sent (404 for a missing row) and the custom values sent."""
        result = await conn.execute(
            table.update().where(table.c.id == row_id).values(**values, updated_at=self._now())
        )
        if result.rowcount == 0:
            raise NotFound(f"no {entity} {row_id}", code=f"{entity}_not_found")
        if data.custom is not None:
            await custom_fields.write_values(conn, entity, row_id, data.custom, creating=False)

    async def _get(
        self, table: sa.Table, entity: str, row_id: int, out: Callable[[Any], dict[str, Any]]
    ) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (await conn.execute(sa.select(table).where(table.c.id == row_id))).first()
            if row is None:
                raise NotFound(f"no {entity} {row_id}", code=f"{entity}_not_found")
            custom = await custom_fields.read_values(conn, entity, row_id)
        return {**out(row), "custom": custom}

    async def _list(
        self,
        table: sa.Table,
        entity: str,
        where: list[Any],
        active: bool | None,
        out: Callable[[Any], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        if active is not None:
            where = [*where, table.c.active.is_(active)]
        async with self._db.read() as conn:
            rows = (await conn.execute(sa.select(table).where(*where).order_by(table.c.id))).all()
            custom = await custom_fields.read_many(conn, entity, [int(r.id) for r in rows])
        return [{**out(r), "custom": custom[int(r.id)]} for r in rows]


async def _require_store(conn: AsyncConnection, store_id: str) -> None:
    """404 ``store_not_found`` unless the store exists."""
    if await conn.scalar(sa.select(stores.c.id).where(stores.c.id == store_id)) is None:
        raise NotFound(f"no store {store_id}", code="store_not_found")
