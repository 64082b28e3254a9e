"""The ledger core: entries and cached balances move together, never below zero, once per
request_id, and ``gatewayd central ledger verify`` recomputes everything (both backends)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa

from gatewayd.central import ledger
from gatewayd.central.db import Database
from gatewayd.central.errors import Conflict
from gatewayd.central.models import members
from gatewayd.central.models_programme import ledger_entries, recharge_rules, upgrade_rules
from gatewayd.central.routes_programme import history

NOW = 1_767_225_600_000


async def new_member(db: Database, points: int = 0, balance_fen: int = 0) -> int:
    async with db.write() as conn:
        member_id = await conn.scalar(
            members.insert()
            .values(
                name="Wallet",
                level="default",
                points=0,
                balance_fen=0,
                active=True,
                created_at=NOW,
                updated_at=NOW,
            )
            .returning(members.c.id)
        )
        assert member_id is not None
        await ledger.set_balances(
            conn, member_id, points=points, balance_fen=balance_fen, kind="opening", now=NOW
        )
    return member_id


async def debit(db: Database, member_id: int, request_id: str, fen: int) -> ledger.Replay:
    async def work(conn: Any) -> tuple[int, Any]:
        posted = await ledger.post(
            conn,
            member_id=member_id,
            store="store-1",
            account="stored_value",
            amount=-fen,
            kind="debit",
            now=NOW,
        )
        return 201, {"entry": posted.entry_id, "balance_fen": posted.balance_after}

    return await ledger.run_idempotent(
        db,
        store="store-1",
        request_id=request_id,
        operation="debit",
        body={"member": member_id, "fen": fen},
        now=NOW,
        work=work,
    )


@pytest.fixture
async def db(db_url: str) -> Any:
    database = Database.from_url(db_url)
    yield database
    await database.close()


async def test_postings_move_cache_and_refuse_to_go_negative(db: Database) -> None:
    member_id = await new_member(db, points=50, balance_fen=1000)
    async with db.write() as conn:
        assert await ledger.balances(conn, member_id) == {
            "points": 50,
            "balance_fen": 1000,
            "earned_points": 0,
        }
    with pytest.raises(ledger.Insufficient) as info:
        async with db.write() as conn:
            await ledger.post(
                conn,
                member_id=member_id,
                store="store-1",
                account="points",
                amount=-30,
                kind="redeem",
                now=NOW,
            )
            # The second posting fails: the first one must be rolled back with it.
            await ledger.post(
                conn,
                member_id=member_id,
                store="store-1",
                account="stored_value",
                amount=-1001,
                kind="debit",
                now=NOW,
            )
    assert info.value.code == "insufficient_balance" and info.value.status == 409
    async with db.write() as conn:
        assert (await ledger.balances(conn, member_id))["points"] == 50
        posted = await ledger.post(
            conn,
            member_id=member_id,
            store="store-2",
            account="stored_value",
            amount=-400,
            kind="debit",
            now=NOW,
        )
        assert posted.balance_after == 600
        back = await ledger.reverse(conn, posted.entry_id, store="_hq", now=NOW)
        assert (back.amount, back.balance_after) == (400, 1000)
    with pytest.raises(Conflict):
        async with db.write() as conn:
            await ledger.reverse(conn, posted.entry_id, store="_hq", now=NOW)
    assert await ledger.verify(db) == []
    kinds = [e["kind"] for e in await history(db, member_id)]
    assert kinds == ["reversal", "debit", "opening", "opening"]


async def test_verify_finds_a_tampered_cache_and_a_broken_chain(db: Database) -> None:
    first = await new_member(db, points=10, balance_fen=500)
    second = await new_member(db, points=0, balance_fen=0)
    assert await ledger.verify(db) == []
    async with db.write() as conn:
        await conn.execute(members.update().where(members.c.id == first).values(points=11))
        await conn.execute(
            ledger_entries.insert().values(
                member_id=second,
                store_id="store-1",
                account="stored_value",
                amount=-5,
                balance_after=-5,
                kind="forged",
                created_at=NOW,
            )
        )
    found = {(m.account, m.owner, m.cached, m.ledger) for m in await ledger.verify(db)}
    assert ("points", first, 11, 10) in found
    assert ("stored_value", second, 0, -5) in found
    assert any(account == "entry:stored_value" for account, *_ in found)


async def test_same_request_id_applies_once_and_replays_the_first_answer(db: Database) -> None:
    member_id = await new_member(db, balance_fen=1000)
    first = await debit(db, member_id, "r-1", 300)
    again = await debit(db, member_id, "r-1", 300)
    assert first == again and first.status == 201
    assert json.loads(first.body)["balance_fen"] == 700
    with pytest.raises(Conflict) as info:
        await debit(db, member_id, "r-1", 200)
    assert info.value.code == "request_id_reused"
    # A failed request leaves nothing behind: the same id works once the wallet allows it.
    with pytest.raises(ledger.Insufficient):
        await debit(db, member_id, "r-2", 5000)
    assert json.loads((await debit(db, member_id, "r-2", 700)).body)["balance_fen"] == 0
    async with db.read() as conn:
        assert (
            await conn.scalar(sa.select(members.c.balance_fen).where(members.c.id == member_id))
            == 0
        )
    assert await ledger.verify(db) == []


async def test_100_concurrent_debits_on_one_wallet(db_url: str, db: Database) -> None:
    """Several engines (SQLite: separate connections contending for the write lock;
    PostgreSQL: separate pools) debit one wallet at once: exactly the affordable ones win."""
    member_id = await new_member(db, balance_fen=5000)
    others = [Database.from_url(db_url) for _ in range(3)]
    engines = [db, *others]
    try:
        tasks = [
            debit(engines[n % len(engines)], member_id, f"c-{n % 100}", 100) for n in range(150)
        ]
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for other in others:
            await other.close()
    ok = [r for r in results if isinstance(r, ledger.Replay)]
    refused = [r for r in results if isinstance(r, ledger.Insufficient)]
    assert len(ok) + len(refused) == 150, [r for r in results if isinstance(r, BaseException)][:3]
    applied = {json.loads(r.body)["entry"] for r in ok}
    assert len(applied) == 50  # 5000 fen / 100: retries of a winner replay its answer
    async with db.read() as conn:
        balance = await conn.scalar(
            sa.select(members.c.balance_fen).where(members.c.id == member_id)
        )
        debits = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(ledger_entries)
            .where(ledger_entries.c.member_id == member_id, ledger_entries.c.kind == "debit")
        )
    assert balance == 0 and debits == 50
    assert await ledger.verify(db) == []


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAYD_CENTRAL_SECRET": "test-secret-not-for-production"}
    return subprocess.run(
        [sys.executable, "-m", "gatewayd", "central", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_cli_verify_on_a_seeded_database(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'seeded.db'}"
    seeded = await asyncio.to_thread(_cli, "seed", "--db", url, "--members", "500")
    assert seeded.returncode == 0, seeded.stderr
    checked = await asyncio.to_thread(_cli, "ledger", "verify", "--db", url)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 mismatches" in checked.stderr
    db = Database.from_url(url)
    try:
        async with db.read() as conn:  # the demo programme: seed 004's tables
            assert await conn.scalar(sa.select(sa.func.count()).select_from(upgrade_rules)) == 3
            assert await conn.scalar(sa.select(sa.func.count()).select_from(recharge_rules)) == 3
        async with db.write() as conn:
            await conn.execute(
                members.update()
                .where(members.c.id == 7)
                .values(balance_fen=members.c.balance_fen + 1)
            )
    finally:
        await db.close()
    broken = await asyncio.to_thread(_cli, "ledger", "verify", "--db", url)
    assert broken.returncode == 1
    assert json.loads(broken.stdout.splitlines()[0])["owner"] == 7
