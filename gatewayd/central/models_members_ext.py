"""Member management tables: custom fields, per-member spending stats, saved searches.

On the shared ``metadata`` of ``models.py``; migration ``0008`` mirrors them.

Custom field values are rows, not a JSON blob: one row per (entity, entity id, field) with
one typed column filled (``value_text`` for text and choice, ``value_number`` for numbers
and booleans, ``value_date`` for dates). The composite indexes ``(field_id, value_*,
entity_id)`` make "field = x" and "field between a and b" an index range scan on SQLite and
PostgreSQL alike, which a JSON column cannot offer on both.

``member_stats`` keeps one row per member with the spending aggregates search filters on
(visits, amount, last visit, home store), each indexed, so "spent over 1 000 yuan" or "not
seen for 90 days" never aggregates the orders table at query time. It is kept current
(the functions at the end of this module) three ways:

* in the writer's transaction: ``member_created`` (members.py), ``order_committed`` (one
  marked call in orders.py, and imported sales), refunds through the ``refunded`` event;
* ``fold``, run before every search and report: gives members loaded in bulk (seed) their
  row, and folds identifications recorded since the last fold into ``last_visit_at``.
  Identifications are recorded on the identify hot path (group commit, no transaction to
  join), and "last visit" is a maximum, so folding them later and twice is harmless: each
  fold re-reads ``FOLD_OVERLAP`` ids behind its watermark, which catches rows whose ids were
  handed out before the watermark but committed after it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import Database
from .member_events import MemberEvent, MemberEvents
from .models import identifications, members, metadata

DAY_MS: Final = 86_400_000
FOLD_OVERLAP: Final = 1_000
FOLD_BATCH: Final = 20_000

ENTITIES = ("member", "item", "staff", "gift")

custom_field_defs = sa.Table(
    "custom_field_defs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # member | item | staff | gift
    sa.Column("entity", sa.String(16), nullable=False),
    # The name in API bodies (``custom: {key: value}``) and import column headers.
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    # text | number | choice | date | boolean
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("required", sa.Boolean, nullable=False),
    sa.Column("searchable", sa.Boolean, nullable=False),
    # JSON text: the default value (applied on create when the field is not given) and the
    # list of allowed choices (choice fields only).
    sa.Column("default_json", sa.Text),
    sa.Column("choices_json", sa.Text),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # Members may change their own value in the portal (member fields only; migration 0010).
    sa.Column("member_editable", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("entity", "key"),
)

custom_values = sa.Table(
    "custom_values",
    metadata,
    sa.Column("entity", sa.String(16), primary_key=True),
    # Member ids as decimal text, item ids as they are: one column for every entity.
    sa.Column("entity_id", sa.String(64), primary_key=True),
    sa.Column("field_id", sa.Integer, sa.ForeignKey("custom_field_defs.id"), primary_key=True),
    sa.Column("value_text", sa.String(500)),
    sa.Column("value_number", sa.Float),
    sa.Column("value_date", sa.Date),
    sa.Index("ix_custom_values_text", "field_id", "value_text", "entity_id"),
    sa.Index("ix_custom_values_number", "field_id", "value_number", "entity_id"),
    sa.Index("ix_custom_values_date", "field_id", "value_date", "entity_id"),
)

member_stats = sa.Table(
    "member_stats",
    metadata,
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), primary_key=True),
    # Orders with this member (refunds do not undo a visit).
    sa.Column("visits", sa.BigInteger, nullable=False),
    # Order totals minus refunds, in fen.
    sa.Column("spent_fen", sa.BigInteger, nullable=False),
    # Last order or identification (epoch ms); None when never seen at a store.
    sa.Column("last_visit_at", sa.BigInteger, index=True),
    # max(registration, last visit): "not seen for N days" compares this one column.
    sa.Column("last_seen_at", sa.BigInteger, nullable=False, index=True),
    # The store of the member's first visit; None until then.
    sa.Column("home_store", sa.String(64), index=True),
    sa.Column("birthday_month", sa.SmallInteger, index=True),
    sa.Index("ix_member_stats_spent_fen", "spent_fen"),
    sa.Index("ix_member_stats_visits", "visits"),
)

# The stores where each member was identified, and when last (epoch ms): folded from
# ``identifications`` with ``member_stats``, for "members seen at this store" (campaign
# filters). identify's insert then needs no index on ``identifications.member_id``, which
# dirtied one random page per identification (most of the WAL it wrote).
member_store_visits = sa.Table(
    "member_store_visits",
    metadata,
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), primary_key=True),
    sa.Column("store_id", sa.String(64), primary_key=True),
    sa.Column("last_seen_at", sa.BigInteger, nullable=False),
)

# Watermarks of the incremental folds (``stats.identifications`` = last identification id
# folded into ``last_visit_at``; ``stats.members`` = last member id given a stats row).
member_stats_state = sa.Table(
    "member_stats_state",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

saved_searches = sa.Table(
    "saved_searches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    # The search body as JSON text (validated again whenever it runs).
    sa.Column("query_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# Search filters and sorts on these member columns (created by migration 0008). On
# PostgreSQL the name index uses varchar_pattern_ops, so ``name LIKE 'prefix%'`` uses it
# whatever the database's collation (SQLite's search uses a binary range on it instead).
for _column in ("level", "points", "balance_fen"):
    sa.Index(f"ix_members_{_column}", members.c[_column])
sa.Index("ix_members_name", members.c.name, postgresql_ops={"name": "varchar_pattern_ops"})


# --- member stats --------------------------------------------------------------------------


def _month(birthday: dt.date | None) -> int | None:
    return birthday.month if birthday is not None else None


async def member_created(
    conn: AsyncConnection, member_id: int, now_ms: int, birthday: dt.date | None
) -> None:
    """The new member's stats row, in the creating transaction."""
    await conn.execute(
        member_stats.insert().values(
            member_id=member_id,
            visits=0,
            spent_fen=0,
            last_visit_at=None,
            last_seen_at=now_ms,
            home_store=None,
            birthday_month=_month(birthday),
        )
    )


async def birthday_changed(conn: AsyncConnection, member_id: int, birthday: dt.date | None) -> None:
    await conn.execute(
        member_stats.update()
        .where(member_stats.c.member_id == member_id)
        .values(birthday_month=_month(birthday))
    )


def _fold_visits(conn: AsyncConnection, recorded: tuple[Any, ...]) -> Any:
    """Upsert the (member, store, latest time) pairs of the ``recorded`` identifications."""
    i, v = identifications.c, member_store_visits.c
    pairs = (
        sa.select(i.member_id, i.store_id, sa.func.max(i.created_at))
        .where(*recorded)
        .group_by(i.member_id, i.store_id)
    )
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    insert = dialect.insert(member_store_visits).from_select(
        ["member_id", "store_id", "last_seen_at"], pairs
    )
    return insert.on_conflict_do_update(
        index_elements=[v.member_id, v.store_id],
        set_={"last_seen_at": _greatest(conn)(v.last_seen_at, insert.excluded.last_seen_at)},
    )


def _greatest(conn: AsyncConnection) -> Any:
    """SQLite's two-argument max() is PostgreSQL's greatest() (NULL handled by callers)."""
    return sa.func.max if conn.dialect.name == "sqlite" else sa.func.greatest


async def _ensure_row(conn: AsyncConnection, member_id: int) -> None:
    """A stats row for a member loaded in bulk before any fold (rare; cheap when present)."""
    exists = await conn.scalar(
        sa.select(member_stats.c.member_id).where(member_stats.c.member_id == member_id)
    )
    if exists is None:
        row = (
            await conn.execute(
                sa.select(members.c.created_at, members.c.birthday).where(members.c.id == member_id)
            )
        ).one()
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
            member_stats
        )
        await conn.execute(
            insert.values(
                member_id=member_id,
                visits=0,
                spent_fen=0,
                last_seen_at=row.created_at,
                birthday_month=_month(row.birthday),
            ).on_conflict_do_nothing()
        )


async def order_committed(
    conn: AsyncConnection, member_id: int, store_id: str, total_fen: int, now_ms: int
) -> None:
    """One visit and its amount, in the order's transaction (called from orders.py)."""
    await _ensure_row(conn, member_id)
    s = member_stats.c
    greatest = _greatest(conn)
    await conn.execute(
        member_stats.update()
        .where(s.member_id == member_id)
        .values(
            visits=s.visits + 1,
            spent_fen=s.spent_fen + total_fen,
            last_visit_at=sa.func.coalesce(greatest(s.last_visit_at, now_ms), now_ms),
            last_seen_at=greatest(s.last_seen_at, now_ms),
            home_store=sa.func.coalesce(s.home_store, store_id),
        )
    )


def subscribe(events: MemberEvents) -> None:
    """Refunds take their amount back from ``spent_fen`` (a visit stays a visit)."""

    async def on_event(conn: AsyncConnection, event: MemberEvent) -> None:
        if event.kind == "refunded":
            amount = int(event.data.get("amount_fen") or 0)
            await _ensure_row(conn, event.member_id)
            await conn.execute(
                member_stats.update()
                .where(member_stats.c.member_id == event.member_id)
                .values(spent_fen=member_stats.c.spent_fen - amount)
            )

    events.subscribe(on_event)


def _watermark(key: str) -> Any:
    return (
        sa.select(member_stats_state.c.value)
        .where(member_stats_state.c.key == key)
        .scalar_subquery()
    )


async def _set_watermark(db: Database, conn: AsyncConnection, key: str, value: int) -> None:
    await conn.execute(db.insert_ignore(member_stats_state).values(key=key, value=0))
    await conn.execute(
        member_stats_state.update()
        .where(member_stats_state.c.key == key, member_stats_state.c.value < value)
        .values(value=value)
    )


async def fold(db: Database) -> None:
    """Bring ``member_stats`` up to date with bulk-loaded members and new identifications."""
    async with db.read() as conn:  # one round trip when there is nothing to fold
        marks = (
            await conn.execute(
                sa.select(
                    sa.select(sa.func.max(members.c.id)).scalar_subquery(),
                    sa.select(sa.func.max(identifications.c.id)).scalar_subquery(),
                    _watermark("stats.members"),
                    _watermark("stats.identifications"),
                )
            )
        ).one()
    top_member, top_ident = marks[0], marks[1]
    member_mark, ident_mark = int(marks[2] or 0), int(marks[3] or 0)
    if top_member is not None and top_member > member_mark:
        async with db.write() as conn:
            missing = sa.select(
                members.c.id,
                sa.literal(0),
                sa.literal(0),
                sa.null(),
                members.c.created_at,
                sa.null(),
                sa.cast(sa.extract("month", members.c.birthday), sa.SmallInteger),
            ).where(members.c.id > member_mark, members.c.id <= top_member)
            columns = [
                "member_id",
                "visits",
                "spent_fen",
                "last_visit_at",
                "last_seen_at",
                "home_store",
                "birthday_month",
            ]
            await conn.execute(db.insert_ignore(member_stats).from_select(columns, missing))
            await _set_watermark(db, conn, "stats.members", top_member)
    if top_ident is not None and top_ident > ident_mark:
        start = max(0, ident_mark - FOLD_OVERLAP)
        while start < top_ident:
            end = min(top_ident, start + FOLD_BATCH)
            await _fold_identifications(db, start, end)
            start = end


async def _fold_identifications(db: Database, after: int, upto: int) -> None:
    i = identifications.c
    recorded = (i.id > after, i.id <= upto, i.member_id.is_not(None), i.status == 200)
    async with db.write() as conn:
        seen = (
            await conn.execute(
                sa.select(i.member_id, sa.func.max(i.created_at), sa.func.min(i.store_id))
                .where(*recorded)
                .group_by(i.member_id)
            )
        ).all()
        await conn.execute(_fold_visits(conn, recorded))
        s = member_stats.c
        greatest = _greatest(conn)
        for member_id, at, store in seen:
            await conn.execute(
                member_stats.update()
                .where(s.member_id == member_id)
                .values(
                    last_visit_at=sa.func.coalesce(greatest(s.last_visit_at, at), at),
                    last_seen_at=greatest(s.last_seen_at, at),
                    home_store=sa.func.coalesce(s.home_store, store),
                )
            )
        await _set_watermark(db, conn, "stats.identifications", upto)
