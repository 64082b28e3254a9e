"""Migrations and bulk seeding on both backends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gatewayd.central.app import SchemaOutdated, build_app
from gatewayd.central.clock import ManualClock
from gatewayd.central.config import CentralSettings
from gatewayd.central.db import Database, DatabaseError, normalise_url
from gatewayd.central.errors import Conflict
from gatewayd.central.migrate import current_revision, head_revision, upgrade
from gatewayd.central.models import cards, identifications, members, metadata, payment_bindings
from gatewayd.central.models_members_ext import member_store_visits
from gatewayd.central.seed import bulk_members, seed
from gatewayd.central.testing import ThrowawayPostgres, start_app


async def test_migrated_schema_matches_the_models(db_url: str) -> None:
    db = Database.from_url(db_url)
    try:
        assert await current_revision(db) == head_revision()
        await upgrade(db)  # idempotent
        async with db.read() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
        assert diff == []
    finally:
        await db.close()


async def test_sqlite_uses_wal(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        await upgrade(db)
        async with db.read() as conn:
            mode = await conn.scalar(sa.text("PRAGMA journal_mode"))
        assert mode == "wal"
    finally:
        await db.close()


async def test_app_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    from gatewayd.central.config import CentralSettings

    settings = CentralSettings(db=f"sqlite:///{tmp_path / 'empty.db'}", secret="s")
    with pytest.raises(SchemaOutdated, match="gatewayd central migrate"):
        await start_app(build_app(settings, clock=ManualClock()))


def test_database_urls() -> None:
    assert normalise_url("sqlite:///a.db") == "sqlite+aiosqlite:///a.db"
    assert normalise_url("postgresql://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert normalise_url("postgres://u@h/d") == "postgresql+asyncpg://u@h/d"
    with pytest.raises(DatabaseError):
        normalise_url("mysql://u@h/d")


async def test_bulk_seed_then_identify_every_seeded_kind(central: Any) -> None:
    svc = central.services
    await bulk_members(svc.db, svc.settings, central.clock, 120)
    async with svc.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(members)) == 120
        assert await conn.scalar(sa.select(sa.func.count()).select_from(cards)) == 144
        assert await conn.scalar(sa.select(sa.func.count()).select_from(payment_bindings)) == 40
        rows = (await conn.execute(sa.select(cards).where(cards.c.member_id == 70))).all()
    main = next(r for r in rows if r.is_main)
    second = next(r for r in rows if not r.is_main)
    for token, method in (
        (main.member_code, "barcode"),
        (main.number, "barcode"),
        (main.ic_uid, "ic_card"),  # member 70 is a multiple of 7: an IC card
        ("13900000070", "manual"),
    ):
        status, body = await central.identify(token, method=method)
        assert status == 200 and body["member"]["id"] == 70, (token, body)
    status, body = await central.identify(second.member_code)
    assert body["card"]["main"] is False and body["member"]["id"] == 70
    # A new member after the bulk load gets the next id on both backends.
    created = await central.ok("POST", "/v1/members", json={"name": "After"})
    assert created["id"] == 121
    with pytest.raises(Conflict, match="already has"):
        await bulk_members(svc.db, svc.settings, central.clock, 5)


async def test_demo_seed_creates_a_usable_chain(db_url: str) -> None:
    from gatewayd.central.config import CentralSettings

    settings = CentralSettings(db=db_url, secret="demo")
    db = Database.from_url(db_url)
    try:
        result = await seed(db, settings, ManualClock(), members_count=50)
    finally:
        await db.close()
    data = result.as_dict()
    assert data["stores"] == ["store-1", "store-2", "store-3"]
    assert set(data["gateways"]) == {"gw-1", "gw-2", "gw-3"}
    assert all(g["api_key"].startswith("ckg_") for g in data["gateways"].values())
    assert data["admin_key"].startswith("cka_") and len(data["terminals"]) == 9
    assert len(data["samples"]["member_codes"]) == 5


async def test_the_visits_table_is_filled_from_past_identifications(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # 0011 drops the index on identifications.member_id; the campaign store filter reads
    # member_store_visits instead, which the migration fills from what was recorded.
    if backend == "postgresql":
        cluster: ThrowawayPostgres = request.getfixturevalue("pg_cluster")
        await asyncio.to_thread(cluster.create_database, "visits_backfill")
        url = cluster.url("visits_backfill")
    else:
        url = f"sqlite:///{tmp_path / 'visits.db'}"
    db = Database.from_url(url)
    try:
        await upgrade(db, "0010")
        clock = ManualClock()
        await bulk_members(db, CentralSettings(db=url, secret="s"), clock, 3)
        seen = [(1, "store-1", 100), (1, "store-1", 300), (1, "store-2", 200), (2, "store-1", 50)]
        unknown = [(None, "store-3", 400)]  # a 404: no member, no visit
        async with db.write() as conn:
            for member_id, store, at in seen + unknown:
                await conn.execute(
                    identifications.insert().values(
                        store_id=store,
                        terminal_id="pos-1",
                        token_kind="member_code",
                        token_last4="0000",
                        method="barcode",
                        member_id=member_id,
                        status=200 if member_id else 404,
                        response="{}",
                        created_at=at,
                    )
                )
        await upgrade(db)
        async with db.read() as conn:
            visits = (
                await conn.execute(
                    sa.select(member_store_visits).order_by(
                        member_store_visits.c.member_id, member_store_visits.c.store_id
                    )
                )
            ).all()
            indexes = await conn.run_sync(
                lambda sync: sa.inspect(sync).get_indexes("identifications")
            )
        assert [tuple(v) for v in visits] == [
            (1, "store-1", 300),
            (1, "store-2", 200),
            (2, "store-1", 50),
        ]
        assert not any(index["column_names"] == ["member_id"] for index in indexes)
    finally:
        await db.close()
