"""Reports: members, member behaviour, sales per store and day, items, recharges with the
stored-value liability, and cross-store settlement.

Every report has one shape, ``{report, from, to, store, tables, charts}``: ``tables`` are
what the Excel export writes (one sheet each) and what the page shows; ``charts`` say which
columns the page draws as bar, pie, ring or line charts. Figures come straight from the
programme's tables (orders, refunds, recharges, ledger entries) with SQL aggregates; money is
integer fen. Days are UTC days.

Settlement: stored value is money a store took in (a recharge at store A is a credit entry
attributed to A) and owes in goods wherever the member spends it (a debit at store B). A
store's net position is credits + debits: positive, it holds money the pool still owes to
members (it pays that into settlement); negative, it delivered more than it took in (it is
paid). The positions sum to the chain's total liability, which equals the members'
balances.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any, Final, Literal

import sqlalchemy as sa

from .clock import Clock, to_millis
from .db import Database
from .errors import Invalid
from .models import members
from .models_members_ext import fold, member_stats
from .models_programme import ledger_entries, orders, recharges, refunds
from .schemas import Out

DAY_MS: Final = 86_400_000
MAX_DAYS: Final = 366
MAX_ITEM_ORDERS: Final = 200_000
ReportName = Literal["members", "behaviour", "sales", "items", "recharges", "settlement"]
REPORTS: Final = ("members", "behaviour", "sales", "items", "recharges", "settlement")


class Table(Out):
    title: str
    columns: list[str]
    rows: list[list[Any]]


class Chart(Out):
    type: Literal["bar", "pie", "ring", "line"]
    title: str
    table: int
    label_column: int
    value_columns: list[int]


class ReportOut(Out):
    report: str
    start: str
    end: str
    store: str | None
    tables: list[Table]
    charts: list[Chart]


def _day(number: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(number))).isoformat()


def _ms(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_MS


def _cell(value: Any) -> Any:
    """PostgreSQL's SUM of BIGINT is NUMERIC (a Decimal): money and counts go out as ints."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _table(title: str, columns: list[str], rows: Any) -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": [[_cell(v) for v in r] for r in rows]}


def _chart(kind: str, title: str, table: int, values: list[int], label: int = 0) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "table": table,
        "label_column": label,
        "value_columns": values,
    }


def _add_lines(totals: dict[str, list[Any]], lines: list[dict[str, Any]]) -> None:
    """Per product: [name, quantity, amount_fen, lines]."""
    for line in lines:
        key = line.get("product") or "(no product)"
        entry = totals.setdefault(key, [line.get("name") or key, 0.0, 0, 0])
        entry[1] += float(line.get("quantity") or 0)
        entry[2] += int(line.get("price_fen") or 0)
        entry[3] += 1


class Reports:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def period(self, start: str | None, end: str | None) -> tuple[dt.date, dt.date]:
        """``from``/``to`` query values (inclusive days); the last 30 days by default."""
        try:
            today = dt.datetime.fromtimestamp(self._clock.now(), dt.UTC).date()
            last = dt.date.fromisoformat(end) if end else today
            first = dt.date.fromisoformat(start) if start else last - dt.timedelta(days=29)
        except ValueError as exc:
            raise Invalid("from/to: dates as YYYY-MM-DD", code="invalid_request") from exc
        if first > last or (last - first).days >= MAX_DAYS:
            raise Invalid(f"from ≤ to, at most {MAX_DAYS} days", code="invalid_request")
        return first, last

    async def build(
        self, name: str, start: str | None, end: str | None, store: str | None
    ) -> dict[str, Any]:
        if name not in REPORTS:
            raise Invalid(f"report: one of {', '.join(REPORTS)}", code="invalid_request")
        first, last = self.period(start, end)
        lo, hi = _ms(first), _ms(last) + DAY_MS
        await fold(self._db)
        async with self._db.read() as conn:
            builder = getattr(self, "_" + name)
            tables, charts = await builder(conn, lo, hi, store)
        return {
            "report": name,
            "start": first.isoformat(),
            "end": last.isoformat(),
            "store": store,
            "tables": tables,
            "charts": charts,
        }

    async def _members(self, conn: Any, lo: int, hi: int, store: str | None) -> Any:
        m = members.c
        by_level = await conn.execute(
            sa.select(m.level, sa.func.count(), sa.func.sum(m.points), sa.func.sum(m.balance_fen))
            .where(m.active)
            .group_by(m.level)
            .order_by(m.level)
        )
        gender = sa.func.coalesce(m.gender, "unknown")  # one object: one bound parameter
        by_gender = await conn.execute(
            sa.select(gender, sa.func.count()).where(m.active).group_by(gender).order_by(gender)
        )
        day = m.created_at // DAY_MS
        new = await conn.execute(
            sa.select(day, sa.func.count())
            .where(m.created_at >= lo, m.created_at < hi)
            .group_by(day)
            .order_by(day)
        )
        tables = [
            _table("Members by level", ["level", "members", "points", "balance_fen"], by_level),
            _table("Members by gender", ["gender", "members"], by_gender),
            _table("New members per day", ["day", "new members"], [(_day(d), n) for d, n in new]),
        ]
        charts = [
            _chart("bar", "Members by level", 0, [1]),
            _chart("pie", "Members by gender", 1, [1]),
            _chart("line", "New members per day", 2, [1]),
        ]
        return tables, charts

    async def _behaviour(self, conn: Any, lo: int, hi: int, store: str | None) -> Any:
        s = member_stats.c
        bucket = sa.case(
            (s.visits == 0, "0"),
            (s.visits == 1, "1"),
            (s.visits <= 5, "2-5"),
            (s.visits <= 10, "6-10"),
            else_="11+",
        )
        joined = member_stats.join(members, members.c.id == s.member_id)
        active: Any = members.c.active
        if store is not None:
            active = active & (s.home_store == store)
        visits = await conn.execute(
            sa.select(bucket, sa.func.count(), sa.func.sum(s.spent_fen))
            .select_from(joined)
            .where(active)
            .group_by(bucket)
        )
        order = {"0": 0, "1": 1, "2-5": 2, "6-10": 3, "11+": 4}
        visit_rows = sorted(visits, key=lambda r: order[r[0]])
        now = to_millis(self._clock.now())
        dormant = []
        for days in (30, 90, 180, 365):
            count = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(joined)
                .where(active, s.last_seen_at < now - days * DAY_MS)
            )
            dormant.append((f"{days}+ days", count))
        top = await conn.execute(
            sa.select(members.c.id, members.c.name, s.visits, s.spent_fen, s.home_store)
            .select_from(joined)
            .where(active)
            .order_by(s.spent_fen.desc(), members.c.id)
            .limit(20)
        )
        tables = [
            _table("Members by visits", ["visits", "members", "spent_fen"], visit_rows),
            _table("Not seen for", ["not seen for", "members"], dormant),
            _table("Top spenders", ["id", "name", "visits", "spent_fen", "home store"], top),
        ]
        charts = [
            _chart("ring", "Members by visits", 0, [1]),
            _chart("bar", "Dormant members", 1, [1]),
        ]
        return tables, charts

    async def _sales(self, conn: Any, lo: int, hi: int, store: str | None) -> Any:
        o, r = orders.c, refunds.c
        where = [o.created_at >= lo, o.created_at < hi]
        refund_where = [r.created_at >= lo, r.created_at < hi]
        if store is not None:
            where.append(o.store_id == store)
            refund_where.append(r.store_id == store)
        day = o.created_at // DAY_MS
        rows = await conn.execute(
            sa.select(o.store_id, day, sa.func.count(), sa.func.sum(o.total_fen))
            .where(*where)
            .group_by(o.store_id, day)
        )
        refund_day = r.created_at // DAY_MS
        refunded = {
            (s, d): int(v)
            for s, d, v in await conn.execute(
                sa.select(r.store_id, refund_day, sa.func.sum(r.amount_fen))
                .where(*refund_where)
                .group_by(r.store_id, refund_day)
            )
        }
        cells: dict[tuple[str, int], list[int]] = {k: [0, 0, v] for k, v in refunded.items()}
        for s, d, n, total in rows:
            cells.setdefault((s, d), [0, 0, 0])[:2] = [int(n), int(total)]
        per_day = [
            (s, _day(d), n, total, back, total - back)
            for (s, d), (n, total, back) in sorted(
                cells.items(), key=lambda kv: (kv[0][1], kv[0][0])
            )
        ]
        by_store: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        by_day: dict[str, int] = defaultdict(int)
        for s, day_text, n, total, back, net in per_day:
            for i, v in enumerate((n, total, back, net)):
                by_store[s][i] += v
            by_day[day_text] += net
        tables = [
            _table("Sales per store and day",
                   ["store", "day", "orders", "sales_fen", "refunds_fen", "net_fen"], per_day),
            _table("Sales per store", ["store", "orders", "sales_fen", "refunds_fen", "net_fen"],
                   [(s, *v) for s, v in sorted(by_store.items())]),
            _table("Net sales per day", ["day", "net_fen"], sorted(by_day.items())),
        ]  # fmt: skip
        charts = [
            _chart("bar", "Net sales per store", 1, [4]),
            _chart("pie", "Share of net sales", 1, [4]),
            _chart("line", "Net sales per day", 2, [1]),
        ]
        return tables, charts

    async def _items(self, conn: Any, lo: int, hi: int, store: str | None) -> Any:
        """Per product: quantity and amount from the orders' priced lines (quote JSON)."""
        o = orders.c
        where = [o.created_at >= lo, o.created_at < hi, o.kind == "product"]
        if store is not None:
            where.append(o.store_id == store)
        totals: dict[str, list[Any]] = {}
        last, seen = 0, 0
        while seen < MAX_ITEM_ORDERS:  # keyset batches: bounded memory on both backends
            batch = (
                await conn.execute(
                    sa.select(o.id, o.quote).where(*where, o.id > last).order_by(o.id).limit(2000)
                )
            ).all()
            if not batch:
                break
            last, seen = batch[-1].id, seen + len(batch)
            for _, quote in batch:
                _add_lines(totals, json.loads(quote).get("lines", []))
        rows = sorted(
            ((k, v[0], round(v[1], 3), v[2], v[3]) for k, v in totals.items()),
            key=lambda r: (-r[3], r[0]),
        )
        tables = [
            _table("Items sold", ["product", "name", "quantity", "amount_fen", "lines"], rows)
        ]
        charts = [_chart("bar", "Amount per item", 0, [3], label=1)]
        return tables, charts

    async def _recharges(self, conn: Any, lo: int, hi: int, store: str | None) -> Any:
        c, e = recharges.c, ledger_entries.c
        where = [c.created_at >= lo, c.created_at < hi]
        if store is not None:
            where.append(c.store_id == store)
        day = c.created_at // DAY_MS
        per_day = await conn.execute(
            sa.select(c.store_id, day, sa.func.count(), sa.func.sum(c.amount_fen))
            .where(*where)
            .group_by(c.store_id, day)
            .order_by(day, c.store_id)
        )
        liability_where = [e.account == "stored_value"]
        if store is not None:
            liability_where.append(e.store_id == store)
        liability = await conn.execute(
            sa.select(e.store_id, sa.func.sum(e.amount))
            .where(*liability_where)
            .group_by(e.store_id)
            .order_by(e.store_id)
        )
        tables = [
            _table("Recharges per store and day",
                   ["store", "day", "recharges", "amount_fen"],
                   [(s, _day(d), n, int(v)) for s, d, n, v in per_day]),
            _table("Stored-value liability per store (all time)", ["store", "liability_fen"],
                   [(s, int(v)) for s, v in liability]),
        ]  # fmt: skip
        charts = [
            _chart("bar", "Recharged per store and day", 0, [3], label=1),
            _chart("ring", "Liability per store", 1, [1]),
        ]
        return tables, charts

    async def _settlement(self, conn: Any, lo: int, hi: int, store: str | None) -> Any:
        e = ledger_entries.c
        where = [e.account == "stored_value", e.created_at >= lo, e.created_at < hi]
        credit = sa.func.sum(sa.case((e.amount > 0, e.amount), else_=0))
        debit = sa.func.sum(sa.case((e.amount < 0, -e.amount), else_=0))
        rows = await conn.execute(
            sa.select(e.store_id, credit, debit)
            .where(*where)
            .group_by(e.store_id)
            .order_by(e.store_id)
        )
        out = [(s, int(c), int(d), int(c) - int(d)) for s, c, d in rows]
        if store is not None:
            out = [r for r in out if r[0] == store]
        tables = [
            _table("Stored-value settlement",
                   ["store", "taken_in_fen", "redeemed_fen", "net_position_fen"], out),
        ]  # fmt: skip
        charts = [_chart("bar", "Net position per store", 0, [3])]
        return tables, charts
