"""Member search: a typed filter over profile, custom fields and spending, keyset-paginated.

Every filter maps to an indexed column: profile columns on ``members`` (level, points,
balance, name prefix: migration 0008 adds their indexes), custom fields on the typed value
indexes of ``custom_values``, spending on ``member_stats`` (visits, spent, last seen, home
store, birthday month). Pages are keyset-paginated on ``(sort column, id)``, so page 1000
costs what page 1 costs; totals are counted only on request and capped.

``member_stats`` (one row per member) is kept current by ``models_members_ext``; ``fold``
runs before each search so bulk-loaded members and recent identifications are included.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final, Literal

import sqlalchemy as sa
from pydantic import Field, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from . import custom_fields
from .clock import Clock, iso, to_millis
from .db import Database
from .errors import Conflict, Invalid, NotFound
from .models import members
from .models_members_ext import custom_values, fold, member_stats, saved_searches
from .schemas import Body, EntityId, Gender, IsoDate, Out

MAX_PAGE: Final = 500
COUNT_CAP: Final = 10_000
DAY_MS: Final = 86_400_000
SortKey = Literal[
    "id", "name", "points", "balance_fen", "visits", "spent_fen", "last_seen_at", "created_at"
]
Sort = Annotated[
    str,
    Field(
        pattern=r"^-?(id|name|points|balance_fen|visits|spent_fen|last_seen_at|created_at)$",
        description="a column, '-' first for descending; ties break on id",
    ),
]
BigInt = Annotated[int, Field(ge=0, le=10**15)]
_SORT_COLUMNS: Final = {
    "id": members.c.id,
    "name": members.c.name,
    "points": members.c.points,
    "balance_fen": members.c.balance_fen,
    "visits": member_stats.c.visits,
    "spent_fen": member_stats.c.spent_fen,
    "last_seen_at": member_stats.c.last_seen_at,
    "created_at": members.c.created_at,
}


class IntRange(Body):
    min: BigInt | None = None
    max: BigInt | None = None


class DateRange(Body):
    start: IsoDate | None = Field(default=None, alias="from")
    end: IsoDate | None = Field(default=None, alias="to")


class CustomFilter(Body):
    """One custom-field condition: ``eq``, ``in`` (text/choice) or ``min``/``max``."""

    key: Annotated[str, Field(min_length=1, max_length=64)]
    eq: str | int | float | bool | None = None
    any_of: list[str] | None = Field(default=None, alias="in", max_length=100)
    min: str | int | float | None = None
    max: str | int | float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> CustomFilter:
        kinds = sum(
            (self.eq is not None, self.any_of is not None, (self.min, self.max) != (None, None))
        )
        if kinds != 1:
            raise ValueError("give exactly one of eq, in, or min/max")
        return self


class MemberFilter(Body):
    """Every condition given must hold (AND). Dates are the chain's UTC days."""

    name_prefix: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    phone: Annotated[str, Field(pattern=r"^[0-9]{3,20}$")] | None = None
    gender: Gender | None = None
    level: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = Field(
        default=None, max_length=50
    )
    active: bool | None = True
    points: IntRange | None = None
    balance_fen: IntRange | None = None
    visits: IntRange | None = None
    spent_fen: IntRange | None = None
    last_visit: DateRange | None = None
    not_seen_days: Annotated[int, Field(ge=1, le=36_500)] | None = Field(
        default=None, description="no order or identification (or registration) for N days"
    )
    home_store: EntityId | None = Field(default=None, description="store of the first visit")
    birthday_month: list[Annotated[int, Field(ge=1, le=12)]] | None = Field(
        default=None, max_length=12
    )
    created: DateRange | None = None
    custom: list[CustomFilter] | None = Field(default=None, max_length=20)


class SearchRequest(Body):
    filter: MemberFilter = Field(default_factory=MemberFilter)
    sort: Sort = "id"
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 50
    cursor: Annotated[str, Field(max_length=200)] | None = None
    count: bool = Field(default=False, description=f"count matches (capped at {COUNT_CAP})")


class MemberRow(Out):
    id: int
    name: str
    phone: str | None
    gender: str | None
    birthday: dt.date | None
    level: str
    points: int
    balance_fen: int
    active: bool
    created_at: str
    visits: int
    spent_fen: int
    last_visit_at: str | None
    home_store: str | None
    custom: dict[str, str | int | float | bool | None]


class SearchPage(Out):
    items: list[MemberRow]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at end")
    total: int | None = None
    total_capped: bool | None = None


class SavedSearchCreate(Body):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    query: SearchRequest


class SavedSearchOut(Out):
    id: int
    name: str
    query: dict[str, Any]
    created_at: str
    updated_at: str


class SavedSearchList(Out):
    items: list[SavedSearchOut]


def _day_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def _range(column: Any, value: IntRange | None) -> list[Any]:
    if value is None:
        return []
    out = []
    if value.min is not None:
        out.append(column >= value.min)
    if value.max is not None:
        out.append(column <= value.max)
    return out


def _dates(column: Any, value: DateRange | None) -> list[Any]:
    if value is None:
        return []
    out = []
    if value.start is not None:
        out.append(column >= _day_ms(value.start))
    if value.end is not None:
        out.append(column < _day_ms(value.end) + DAY_MS)
    return out


def _custom_condition(field: custom_fields.Definition, cond: CustomFilter) -> Any:
    """``members.id IN (ids from the field's typed value index)``."""
    column = {
        "text": custom_values.c.value_text,
        "choice": custom_values.c.value_text,
        "number": custom_values.c.value_number,
        "boolean": custom_values.c.value_number,
        "date": custom_values.c.value_date,
    }[field.type]

    def typed(value: Any) -> Any:
        checked = custom_fields.coerce(field, value)
        return custom_fields._columns(field, checked)[column.key]

    where = [custom_values.c.field_id == field.id]
    if cond.eq is not None:
        where.append(column == typed(cond.eq))
    elif cond.any_of is not None:
        where.append(column.in_([typed(v) for v in cond.any_of]))
    else:
        if field.type in ("choice", "boolean"):
            raise Invalid(f"custom.{field.key}: no ranges on {field.type}", code="invalid_filter")
        if cond.min is not None:
            where.append(column >= typed(cond.min))
        if cond.max is not None:
            where.append(column <= typed(cond.max))
    ids = sa.select(sa.cast(custom_values.c.entity_id, sa.Integer)).where(*where)
    return members.c.id.in_(ids)


def _name_prefix(conn: AsyncConnection, prefix: str) -> Any:
    """Case-sensitive prefix match on both backends, through ``ix_members_name``.

    PostgreSQL: ``LIKE 'prefix%'`` (its pattern-ops index serves it). SQLite's LIKE ignores
    ASCII case and cannot use a BINARY index, so there a binary range selects and ``substr``
    confirms.
    """
    if conn.dialect.name == "postgresql":
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return members.c.name.like(escaped + "%", escape="\\")
    return sa.and_(
        members.c.name >= prefix,
        members.c.name < prefix + "\U0010ffff",
        sa.func.substr(members.c.name, 1, len(prefix)) == prefix,
    )


async def conditions(conn: AsyncConnection, f: MemberFilter, now_ms: int) -> list[Any]:
    """The WHERE clauses of a filter (custom fields are checked against their definitions)."""
    where: list[Any] = []
    if f.name_prefix is not None:
        where.append(_name_prefix(conn, f.name_prefix))
    if f.phone is not None:
        where.append(members.c.phone == f.phone)
    if f.gender is not None:
        where.append(members.c.gender == f.gender)
    if f.level is not None:
        where.append(members.c.level.in_(f.level))
    if f.active is not None:
        where.append(members.c.active == f.active)
    where += _range(members.c.points, f.points)
    where += _range(members.c.balance_fen, f.balance_fen)
    where += _range(member_stats.c.visits, f.visits)
    where += _range(member_stats.c.spent_fen, f.spent_fen)
    where += _dates(member_stats.c.last_visit_at, f.last_visit)
    where += _dates(members.c.created_at, f.created)
    if f.not_seen_days is not None:
        where.append(member_stats.c.last_seen_at < now_ms - f.not_seen_days * DAY_MS)
    if f.home_store is not None:
        where.append(member_stats.c.home_store == f.home_store)
    if f.birthday_month is not None:
        where.append(member_stats.c.birthday_month.in_(f.birthday_month))
    if f.custom:
        defs = await custom_fields.definitions(conn, "member")
        for cond in f.custom:
            field = defs.get(cond.key)
            if field is None or not field.searchable:
                raise Invalid(
                    f"custom.{cond.key}: no such searchable member field", code="invalid_filter"
                )
            where.append(_custom_condition(field, cond))
    return where


def encode_cursor(value: Any, member_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, member_id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        value, member_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(member_id, int) or not isinstance(value, (int, str)):
            raise ValueError(cursor)
    except (ValueError, TypeError) as exc:
        raise Invalid("cursor is not one this API gave", code="invalid_cursor") from exc
    return value, member_id


def _row_out(row: Any, custom: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "phone": row.phone,
        "gender": row.gender,
        "birthday": row.birthday,
        "level": row.level,
        "points": row.points,
        "balance_fen": row.balance_fen,
        "active": row.active,
        "created_at": iso(row.created_at),
        "visits": row.visits,
        "spent_fen": row.spent_fen,
        "last_visit_at": iso(row.last_visit_at),
        "home_store": row.home_store,
        "custom": custom,
    }


def base_query(where: list[Any]) -> Any:
    joined = members.join(member_stats, member_stats.c.member_id == members.c.id)
    return (
        sa.select(
            members,
            member_stats.c.visits,
            member_stats.c.spent_fen,
            member_stats.c.last_visit_at,
            member_stats.c.last_seen_at,
            member_stats.c.home_store,
        )
        .select_from(joined)
        .where(*where)
    )


def page_query(where: list[Any], sort: str, limit: int, cursor: str | None) -> Any:
    """The keyset page: ``(sort column, id)`` after the cursor, ``limit + 1`` rows."""
    descending = sort.startswith("-")
    column = _SORT_COLUMNS[sort.lstrip("-")]
    query = base_query(where)
    if cursor is not None:
        value, member_id = _decode_cursor(cursor)
        if column is members.c.id:
            query = query.where(
                members.c.id < member_id if descending else members.c.id > member_id
            )
        elif descending:
            query = query.where(sa.tuple_(column, members.c.id) < sa.tuple_(value, member_id))
        else:
            query = query.where(sa.tuple_(column, members.c.id) > sa.tuple_(value, member_id))
    if column is members.c.id:
        order = [members.c.id.desc() if descending else members.c.id]
    else:
        order = [column.desc(), members.c.id.desc()] if descending else [column, members.c.id]
    return query.order_by(*order).limit(limit + 1)


class MemberSearch:
    """Searches, their exports' row source, and saved searches."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def page(self, request: SearchRequest) -> dict[str, Any]:
        await fold(self._db)
        now = to_millis(self._clock.now())
        async with self._db.read() as conn:
            where = await conditions(conn, request.filter, now)
            query = page_query(where, request.sort, request.limit, request.cursor)
            rows = (await conn.execute(query)).all()
            more = len(rows) > request.limit
            rows = rows[: request.limit]
            defs = await custom_fields.definitions(conn, "member")
            custom = await custom_fields.read_many(conn, "member", [r.id for r in rows], defs)
            out: dict[str, Any] = {
                "items": [_row_out(r, custom[r.id]) for r in rows],
                "next_cursor": None,
            }
            if more and rows:
                last = rows[-1]
                key = request.sort.lstrip("-")
                out["next_cursor"] = encode_cursor(getattr(last, key), last.id)
            if request.count:
                capped = base_query(where).with_only_columns(members.c.id).limit(COUNT_CAP + 1)
                total = await conn.scalar(sa.select(sa.func.count()).select_from(capped.subquery()))
                out["total"] = min(int(total or 0), COUNT_CAP)
                out["total_capped"] = int(total or 0) > COUNT_CAP
        return out

    async def rows(self, request: SearchRequest, limit: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Every match in pages of ``MAX_PAGE`` (exports), at most ``limit`` rows."""
        sent = 0
        page = request.model_copy(update={"limit": MAX_PAGE, "cursor": None, "count": False})
        while sent < limit:
            body = await self.page(page)
            items = body["items"][: limit - sent]
            if items:
                yield items
            sent += len(items)
            if body["next_cursor"] is None:
                return
            page = page.model_copy(update={"cursor": body["next_cursor"]})

    async def custom_keys(self) -> list[str]:
        async with self._db.read() as conn:
            return list(await custom_fields.definitions(conn, "member"))

    # --- saved searches ----------------------------------------------------------------

    async def save(self, data: SavedSearchCreate) -> dict[str, Any]:
        now = to_millis(self._clock.now())
        try:
            async with self._db.write() as conn:
                search_id = await conn.scalar(
                    saved_searches.insert()
                    .values(
                        name=data.name,
                        query_json=data.query.model_dump_json(by_alias=True, exclude_none=True),
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(saved_searches.c.id)
                )
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"a saved search named {data.name!r} exists", code="name_taken") from exc
        assert search_id is not None
        return await self.saved(search_id)

    async def saved(self, search_id: int) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(saved_searches).where(saved_searches.c.id == search_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"no saved search {search_id}", code="saved_search_not_found")
        return _saved_out(row)

    async def list_saved(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = (
                await conn.execute(sa.select(saved_searches).order_by(saved_searches.c.name))
            ).all()
        return [_saved_out(row) for row in rows]

    async def delete_saved(self, search_id: int) -> None:
        async with self._db.write() as conn:
            result = await conn.execute(
                saved_searches.delete().where(saved_searches.c.id == search_id)
            )
        if result.rowcount == 0:
            raise NotFound(f"no saved search {search_id}", code="saved_search_not_found")

    async def saved_request(self, search_id: int) -> SearchRequest:
        stored = await self.saved(search_id)
        return SearchRequest.model_validate(stored["query"])


def _saved_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "query": json.loads(row.query_json),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }
