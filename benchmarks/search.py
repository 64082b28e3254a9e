"""Benchmark: member search on PostgreSQL over ``--members`` members (default 1 000 000).

The script starts a throwaway PostgreSQL cluster (``ThrowawayPostgres``), migrates it, loads
the members with ``gatewayd central seed``'s bulk loader, gives them spending stats (one
``fold`` for the stats rows, then one bulk UPDATE with spread-out visits, amounts, last
visits and home stores) and a searchable custom field on every tenth member, runs
``ANALYZE``, then times representative searches through ``MemberSearch.page`` (the code the
HTTP handler runs, without HTTP): ``--repeat`` runs each, p50/p99 in milliseconds, and the
query's ``EXPLAIN`` plan lines that name an index, to show the search is index-backed.

    .venv/bin/python benchmarks/search.py --members 100000 --repeat 20   # quick
    .venv/bin/python benchmarks/search.py                                # the full run

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import sqlalchemy as sa

from gatewayd.central import logs
from gatewayd.central.clock import SystemClock, to_millis
from gatewayd.central.config import CentralSettings
from gatewayd.central.custom_fields import CustomFields, FieldCreate
from gatewayd.central.db import Database
from gatewayd.central.migrate import upgrade
from gatewayd.central.models_members_ext import fold
from gatewayd.central.search import MemberSearch, SearchRequest, conditions, page_query
from gatewayd.central.seed import bulk_members
from gatewayd.central.testing import ThrowawayPostgres

SECRET = "benchmark-secret"
DAY_MS = 86_400_000
SEARCHES: dict[str, dict[str, Any]] = {
    "dormant_90_days": {"filter": {"not_seen_days": 90}},
    "big_spenders_by_amount": {"filter": {"spent_fen": {"min": 900_000}}, "sort": "-spent_fen"},
    "gold_born_in_march": {"filter": {"level": ["gold"], "birthday_month": [3]}},
    "custom_shoe_size_42": {"filter": {"custom": [{"key": "shoe_size", "eq": 42}]}},
    "store_2_regulars": {"filter": {"home_store": "store-2", "visits": {"min": 30}}},
    "name_prefix": {"filter": {"name_prefix": "Member 00012"}},
    "points_range_by_points": {"filter": {"points": {"min": 4000, "max": 4100}}, "sort": "-points"},
    "last_visit_window_counted": {
        "filter": {"last_visit": {"from": "2026-01-01", "to": "2026-01-07"}},
        "count": True,
    },
    "recently_seen_by_last_seen": {"sort": "-last_seen_at"},
}


async def _prepare(db: Database, count: int, clock: SystemClock) -> dict[str, float]:
    settings = CentralSettings(db="postgresql://unused", secret=SECRET)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    await bulk_members(db, settings, clock, count)
    timings["seed_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    await fold(db)
    now = to_millis(clock.now())
    async with db.write() as conn:
        # Spread-out spending: visits 0..59, up to 10 000 yuan, last seen within 400 days.
        await conn.execute(
            sa.text(
                "UPDATE member_stats SET visits = member_id % 60,"
                " spent_fen = (CAST(member_id AS BIGINT) * 7919) % 1000000,"
                " last_visit_at = CASE WHEN member_id % 60 = 0 THEN NULL"
                "   ELSE CAST(:now AS BIGINT)"
                "     - ((CAST(member_id AS BIGINT) * 104729) % 400) * CAST(:day AS BIGINT) END,"
                " last_seen_at = CAST(:now AS BIGINT)"
                "   - ((CAST(member_id AS BIGINT) * 104729) % 400) * CAST(:day AS BIGINT),"
                " home_store = 'store-' || (member_id % 3 + 1)"
            ),
            {"now": now, "day": DAY_MS},
        )
    fields = CustomFields(db, clock)
    field = await fields.create(
        FieldCreate(entity="member", key="shoe_size", label="Shoe", type="number", searchable=True)
    )
    async with db.write() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO custom_values (entity, entity_id, field_id, value_number)"
                " SELECT 'member', CAST(id AS VARCHAR), :field, 34 + id % 13"
                " FROM members WHERE id % 10 = 0"
            ),
            {"field": field["id"]},
        )
    async with db.write() as conn:
        await conn.execute(sa.text("ANALYZE"))
    timings["stats_s"] = round(time.perf_counter() - started, 1)
    return timings


async def _plan(db: Database, request: SearchRequest, now: int) -> list[str]:
    async with db.read() as conn:
        where = await conditions(conn, request.filter, now)
        query = page_query(where, request.sort, request.limit, request.cursor)
        compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        rows = await conn.execute(sa.text(f"EXPLAIN {compiled}"))
        return [line for (line,) in rows if "Index" in line or "Seq Scan" in line]


async def run(count: int, repeat: int) -> dict[str, Any]:
    logs.configure("warning")
    clock = SystemClock()
    cluster = ThrowawayPostgres()
    cluster.start()
    try:
        cluster.create_database("bench")
        db = Database.from_url(cluster.url("bench"))
        try:
            await upgrade(db)
            report: dict[str, Any] = {"members": count, "backend": "postgresql"}
            report.update(await _prepare(db, count, clock))
            search = MemberSearch(db, clock)
            results = {}
            for name, body in SEARCHES.items():
                request = SearchRequest.model_validate(body)
                first = await search.page(request)  # warm the cache once
                samples = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    await search.page(request)
                    samples.append((time.perf_counter() - started) * 1000)
                samples.sort()
                results[name] = {
                    "rows": len(first["items"]),
                    "p50_ms": round(statistics.median(samples), 2),
                    "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
                    "plan": await _plan(db, request, to_millis(clock.now())),
                }
            report["searches"] = results
            report["worst_p99_ms"] = max(r["p99_ms"] for r in results.values())
            return report
        finally:
            await db.close()
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.members, args.repeat)), indent=2))


if __name__ == "__main__":
    main()
