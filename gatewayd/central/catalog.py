"""The catalog and pricing rules in storage, and the per-process snapshot quotes price from.

Every catalog write bumps ``catalog_version`` in its own transaction. Before each quote a
process reads that one row (a primary-key look-up on the hot path, no transaction) and
reloads its snapshot (rules, level factors, store zones) when the number moved, so a change
made through any worker applies to the very next quote everywhere: there is no staleness
window to tune. Products are cached in the snapshot as quotes ask for them and dropped with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import custom_fields
from .clock import Clock, iso, to_millis
from .db import Database
from .errors import Conflict, NotFound
from .logs import get_logger
from .models import members, stores
from .models_catalog import (
    catalog_categories,
    catalog_products,
    catalog_version,
    level_factors,
    pricing_rules,
    store_pricing,
)
from .pricing import LevelFactors, MemberFacts, Product, Rule, RuleBook, plain
from .schemas_catalog import (
    CategoryIn,
    LevelIn,
    ProductIn,
    RuleIn,
    StorePricingIn,
    minutes_of,
    time_of,
)

log = get_logger(__name__)
DEFAULT_TIMEZONE: Final = "Asia/Shanghai"
PRODUCT_CACHE_MAX: Final = 200_000


@dataclass(slots=True)
class Snapshot:
    """What quotes need from storage at one catalog version (products filled on demand)."""

    version: int
    book: RuleBook
    timezones: dict[str, ZoneInfo]
    stores: set[str]
    products: dict[str, Product] = field(default_factory=dict)


def _product_of(row: Any) -> Product:
    return Product(row.id, row.name, row.category_id, row.price_fen, row.unit, row.active)


def rule_of(row: Any) -> Rule:
    """A stored rule as the engine's value."""
    days = frozenset(int(d) for d in row.slot_days.split(",")) if row.slot_days else frozenset()
    return Rule(
        id=row.id,
        kind=row.kind,
        name=row.name,
        discount=Decimal(row.discount),
        points=Decimal(row.points),
        store=row.store_id,
        level=row.level,
        members_only=row.members_only,
        product=row.product_id,
        category=row.category_id,
        birthday_window=row.birthday_window,
        slot=row.slot,
        slot_days=days,
        slot_date=row.slot_date,
        time_from=row.time_from,
        time_until=row.time_until,
        min_fen=row.min_fen,
        max_fen=row.max_fen,
    )


def rule_out(row: Any) -> dict[str, Any]:
    discount, points = Decimal(row.discount), Decimal(row.points)
    is_order = row.kind == "order_amount"
    return {
        "id": row.id,
        "kind": row.kind,
        "name": row.name,
        "store": row.store_id,
        "level": row.level,
        "members_only": row.members_only,
        "active": row.active,
        "discount": discount,
        "points": points,
        "product": row.product_id,
        "category": row.category_id,
        "birthday_window": row.birthday_window,
        "slot": row.slot,
        "days": sorted(int(d) for d in row.slot_days.split(",")) if row.slot_days else None,
        "date": row.slot_date,
        "from_time": time_of(row.time_from),
        "until_time": time_of(row.time_until),
        "min_fen": row.min_fen,
        "max_fen": row.max_fen,
        "extra_discount_percent": plain((1 - discount) * 100) if is_order else None,
        "extra_points_percent": plain((points - 1) * 100) if is_order else None,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def rule_columns(data: RuleIn) -> dict[str, Any]:
    """The columns of a rule body; a whole-order rule's percentages become its factors."""
    discount, points = data.discount, data.points
    if data.kind == "order_amount":
        discount = 1 - data.extra_discount_percent / 100
        points = 1 + data.extra_points_percent / 100
    return {
        "kind": data.kind,
        "name": data.name,
        "store_id": data.store,
        "level": data.level,
        "members_only": data.members_only,
        "active": data.active,
        "discount": str(discount),
        "points": str(points),
        "product_id": data.product,
        "category_id": data.category,
        "birthday_window": data.birthday_window,
        "slot": data.slot,
        "slot_days": ",".join(str(d) for d in sorted(set(data.days))) if data.days else None,
        "slot_date": data.date,
        "time_from": minutes_of(data.from_time),
        "time_until": minutes_of(data.until_time),
        "min_fen": data.min_fen,
        "max_fen": data.max_fen,
    }


class Catalog:
    """Products, categories, level factors, rules and store settings; the quote snapshot."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._version = db.prepare(
            sa.select(catalog_version.c.version).where(catalog_version.c.id == 1)
        )
        # The member and the catalog version in one round trip (a member's quote needs both).
        version = sa.select(catalog_version.c.version).where(catalog_version.c.id == 1)
        self._member = db.prepare(
            sa.select(
                members.c.id,
                members.c.level,
                members.c.birthday,
                members.c.active,
                version.scalar_subquery().label("catalog_version"),
            ).where(members.c.id == sa.bindparam("member_id"))
        )
        self._snapshot: Snapshot | None = None
        self._loading = asyncio.Lock()

    def now_ms(self) -> int:
        return to_millis(self._clock.now())

    # --- what quotes read ------------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        """The snapshot at the current catalog version (reloaded when it moved)."""
        row = await self._db.fetch_row(self._version, {})
        return await self._snapshot_at(row.version if row is not None else 0)

    async def snapshot_and_member(self, member_id: int) -> tuple[Snapshot, MemberFacts]:
        """``snapshot()`` and ``member_facts()`` with one database round trip."""
        row = await self._db.fetch_row(self._member, {"member_id": member_id})
        facts = self._member_of(member_id, row)
        return await self._snapshot_at(row.catalog_version or 0), facts

    async def _snapshot_at(self, version: int) -> Snapshot:
        current = self._snapshot
        if current is not None and current.version == version:
            return current
        async with self._loading:
            current = self._snapshot
            if current is None or current.version != version:
                current = await self._load()
                self._snapshot = current
        return current

    async def _load(self) -> Snapshot:
        async with self._db.read() as conn:
            # The version first: data read after it is at least as new, never older.
            version = await conn.scalar(sa.select(catalog_version.c.version)) or 0
            rule_rows = await conn.execute(
                sa.select(pricing_rules)
                .where(pricing_rules.c.active.is_(True))
                .order_by(pricing_rules.c.id)
            )
            rules = [rule_of(r) for r in rule_rows]
            levels = {
                r.level: LevelFactors(r.level, r.name, Decimal(r.discount), Decimal(r.points))
                for r in await conn.execute(sa.select(level_factors))
            }
            zones = {
                r.store_id: ZoneInfo(r.timezone)
                for r in await conn.execute(sa.select(store_pricing))
            }
            store_ids = set((await conn.scalars(sa.select(stores.c.id))).all())
        log.debug("catalog_loaded", version=version, rules=len(rules))
        return Snapshot(version, RuleBook.build(rules, levels), zones, store_ids)

    async def store_timezone(self, snapshot: Snapshot, store_id: str) -> ZoneInfo:
        """The store's zone (Asia/Shanghai unless set); 404 for an unknown store."""
        if store_id not in snapshot.stores:
            async with self._db.read() as conn:  # a store registered since the snapshot
                found = await conn.scalar(sa.select(stores.c.id).where(stores.c.id == store_id))
            if found is None:
                raise NotFound(f"no store {store_id}", code="store_not_found")
            snapshot.stores.add(store_id)
        return snapshot.timezones.get(store_id) or ZoneInfo(DEFAULT_TIMEZONE)

    async def member_facts(self, member_id: int) -> MemberFacts:
        """A member's level and birthday; 404 unknown, 409 deactivated."""
        return self._member_of(
            member_id, await self._db.fetch_row(self._member, {"member_id": member_id})
        )

    @staticmethod
    def _member_of(member_id: int, row: Any) -> MemberFacts:
        if row is None:
            raise NotFound(f"no member {member_id}", code="member_not_found")
        if not row.active:
            raise Conflict(f"member {member_id} is deactivated", code="member_inactive")
        return MemberFacts(row.id, row.level, row.birthday)

    async def products_for_quote(
        self, snapshot: Snapshot, product_ids: Iterable[str]
    ) -> dict[str, Product]:
        """The products asked for; 404 for an unknown one, 409 for an inactive one."""
        wanted = set(product_ids)
        missing = wanted - snapshot.products.keys()
        if missing:
            async with self._db.read() as conn:
                rows = await conn.execute(
                    sa.select(catalog_products).where(catalog_products.c.id.in_(sorted(missing)))
                )
                if len(snapshot.products) > PRODUCT_CACHE_MAX:
                    snapshot.products.clear()
                for row in rows:
                    snapshot.products[row.id] = _product_of(row)
        found = {pid: snapshot.products[pid] for pid in wanted if pid in snapshot.products}
        unknown = sorted(wanted - found.keys())
        if unknown:
            raise NotFound(f"no product {', '.join(unknown)[:200]}", code="product_not_found")
        inactive = sorted(pid for pid, p in found.items() if not p.active)
        if inactive:
            raise Conflict(
                f"product {', '.join(inactive)[:200]} is inactive", code="product_inactive"
            )
        return found

    # --- writes ----------------------------------------------------------------------------

    async def _bump(self, conn: AsyncConnection) -> None:
        """Move the catalog version; first thing in every catalog write transaction, so its
        row lock also queues concurrent catalog writers on PostgreSQL (no upsert races)."""
        await conn.execute(
            catalog_version.update()
            .where(catalog_version.c.id == 1)
            .values(version=catalog_version.c.version + 1)
        )
        self._snapshot = None

    async def _upsert(
        self, conn: AsyncConnection, table: sa.Table, key: sa.Column[Any], values: dict[str, Any]
    ) -> None:
        """Update the row with this key, or insert it (after ``_bump``)."""
        key_value = values[key.key]
        result = await conn.execute(table.update().where(key == key_value).values(**values))
        if result.rowcount == 0:
            await conn.execute(table.insert().values(**values))

    async def _require(
        self, conn: AsyncConnection, column: sa.Column[Any], value: Any, what: str
    ) -> None:
        """404 ``<what>_not_found`` unless a row with this key exists."""
        if await conn.scalar(sa.select(column).where(column == value)) is None:
            raise NotFound(f"no {what} {value}", code=f"{what}_not_found")

    async def put_category(self, category_id: str, data: CategoryIn) -> dict[str, Any]:
        values: dict[str, Any] = {"id": category_id, "name": data.name, "updated_at": self.now_ms()}
        async with self._db.write() as conn:
            await self._bump(conn)
            await self._upsert(conn, catalog_categories, catalog_categories.c.id, values)
        return {"id": category_id, "name": data.name, "updated_at": iso(values["updated_at"])}

    async def list_categories(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = await conn.execute(
                sa.select(catalog_categories).order_by(catalog_categories.c.id)
            )
            return [{"id": r.id, "name": r.name, "updated_at": iso(r.updated_at)} for r in rows]

    async def put_product(self, product_id: str, data: ProductIn) -> dict[str, Any]:
        values = {
            "id": product_id,
            "name": data.name,
            "category_id": data.category,
            "price_fen": data.price_fen,
            "unit": data.unit,
            "active": data.active,
            "updated_at": self.now_ms(),
        }
        async with self._db.write() as conn:
            await self._bump(conn)
            if data.category is not None:
                await self._require(conn, catalog_categories.c.id, data.category, "category")
            existed = await conn.scalar(
                sa.select(catalog_products.c.id).where(catalog_products.c.id == product_id)
            )
            await self._upsert(conn, catalog_products, catalog_products.c.id, values)
            # Custom item fields (issue 8), validated as members' are: a new product takes
            # defaults and must fill required fields; a replaced one changes only those sent.
            await custom_fields.write_values(
                conn, "item", product_id, data.custom, creating=existed is None
            )
        return await self.get_product(product_id)

    async def get_product(self, product_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(catalog_products).where(catalog_products.c.id == product_id)
                )
            ).first()
            if row is None:
                raise NotFound(f"no product {product_id}", code="product_not_found")
            custom = await custom_fields.read_values(conn, "item", product_id)
        return {**_product_out(row), "custom": custom}

    async def list_products(self, category: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(catalog_products).order_by(catalog_products.c.id)
        if category is not None:
            query = query.where(catalog_products.c.category_id == category)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
            custom = await custom_fields.read_many(conn, "item", [str(r.id) for r in rows])
        return [{**_product_out(r), "custom": custom[r.id]} for r in rows]

    async def put_level(self, level: str, data: LevelIn) -> dict[str, Any]:
        values: dict[str, Any] = {
            "level": level,
            "name": data.name,
            "discount": str(data.discount),
            "points": str(data.points),
            "updated_at": self.now_ms(),
        }
        async with self._db.write() as conn:
            await self._bump(conn)
            await self._upsert(conn, level_factors, level_factors.c.level, values)
        return {**values, "updated_at": iso(values["updated_at"])}

    async def list_levels(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = await conn.execute(sa.select(level_factors).order_by(level_factors.c.level))
            return [
                {
                    "level": r.level,
                    "name": r.name,
                    "discount": Decimal(r.discount),
                    "points": Decimal(r.points),
                    "updated_at": iso(r.updated_at),
                }
                for r in rows
            ]

    async def get_store_pricing(self, store_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            if await conn.scalar(sa.select(stores.c.id).where(stores.c.id == store_id)) is None:
                raise NotFound(f"no store {store_id}", code="store_not_found")
            row = (
                await conn.execute(
                    sa.select(store_pricing).where(store_pricing.c.store_id == store_id)
                )
            ).first()
        if row is None:
            return {"store": store_id, "timezone": DEFAULT_TIMEZONE, "updated_at": None}
        return {"store": store_id, "timezone": row.timezone, "updated_at": iso(row.updated_at)}

    async def put_store_pricing(self, store_id: str, data: StorePricingIn) -> dict[str, Any]:
        values = {"store_id": store_id, "timezone": data.timezone, "updated_at": self.now_ms()}
        async with self._db.write() as conn:
            await self._bump(conn)
            await self._require_store(conn, store_id)
            await self._upsert(conn, store_pricing, store_pricing.c.store_id, values)
        return await self.get_store_pricing(store_id)

    async def _require_store(self, conn: AsyncConnection, store_id: str) -> None:
        await self._require(conn, stores.c.id, store_id, "store")

    async def _check_rule_refs(self, conn: AsyncConnection, data: RuleIn) -> None:
        if data.store is not None:
            await self._require_store(conn, data.store)
        if data.product is not None:
            await self._require(conn, catalog_products.c.id, data.product, "product")
        if data.category is not None:
            await self._require(conn, catalog_categories.c.id, data.category, "category")

    async def create_rule(self, data: RuleIn) -> dict[str, Any]:
        now = self.now_ms()
        async with self._db.write() as conn:
            await self._bump(conn)
            await self._check_rule_refs(conn, data)
            rule_id = await conn.scalar(
                pricing_rules.insert()
                .values(**rule_columns(data), created_at=now, updated_at=now)
                .returning(pricing_rules.c.id)
            )
        log.info("pricing_rule_created", rule_id=rule_id, kind=data.kind, store=data.store)
        assert rule_id is not None
        return await self.get_rule(rule_id)

    async def replace_rule(self, rule_id: int, data: RuleIn) -> dict[str, Any]:
        async with self._db.write() as conn:
            await self._bump(conn)
            await self._check_rule_refs(conn, data)
            result = await conn.execute(
                pricing_rules.update()
                .where(pricing_rules.c.id == rule_id)
                .values(**rule_columns(data), updated_at=self.now_ms())
            )
            if result.rowcount == 0:
                raise NotFound(f"no rule {rule_id}", code="rule_not_found")
        log.info("pricing_rule_replaced", rule_id=rule_id, kind=data.kind)
        return await self.get_rule(rule_id)

    async def deactivate_rule(self, rule_id: int) -> dict[str, Any]:
        """Rules are never deleted (past quotes name them); they stop applying."""
        async with self._db.write() as conn:
            await self._bump(conn)
            result = await conn.execute(
                pricing_rules.update()
                .where(pricing_rules.c.id == rule_id)
                .values(active=False, updated_at=self.now_ms())
            )
            if result.rowcount == 0:
                raise NotFound(f"no rule {rule_id}", code="rule_not_found")
        log.info("pricing_rule_deactivated", rule_id=rule_id)
        return await self.get_rule(rule_id)

    async def get_rule(self, rule_id: int) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(pricing_rules).where(pricing_rules.c.id == rule_id))
            ).first()
        if row is None:
            raise NotFound(f"no rule {rule_id}", code="rule_not_found")
        return rule_out(row)

    async def list_rules(
        self, store: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        query = sa.select(pricing_rules).order_by(pricing_rules.c.id)
        if store is not None:
            query = query.where(pricing_rules.c.store_id == store)
        if kind is not None:
            query = query.where(pricing_rules.c.kind == kind)
        async with self._db.read() as conn:
            return [rule_out(r) for r in await conn.execute(query)]


def _product_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "category": row.category_id,
        "price_fen": row.price_fen,
        "unit": row.unit,
        "active": row.active,
        "updated_at": iso(row.updated_at),
    }
