"""Recharge rules from the domain page, the scheduler that pays returns (once, however many
run), and cross-store settlement; real HTTP on both backends."""

from __future__ import annotations

import asyncio
from typing import Any

from gatewayd.central import ledger
from gatewayd.central.db import Database
from gatewayd.central.member_events import MemberEvent, MemberEvents
from gatewayd.central.passes import PassService
from gatewayd.central.recharge import BonusScheduler

DAY = 86_400.0
# The domain page's table (seed 004): amount, first bonus, points, every N days, M, K times.
DOMAIN_RULES = (
    (500, 200, 2, 1, 100, 10),
    (10_000, 0, 0, 0, 0, 0),
    (100_000, 10_000, 100, 30, 5_000, 2),
)


async def define_domain_rules(central: Any, level: str | None = None) -> None:
    for amount, bonus, points, every, periodic, times in DOMAIN_RULES:
        await central.ok(
            "POST",
            "/v1/programme/recharge-rules",
            json={
                "level": level,
                "amount_fen": amount,
                "bonus_fen": bonus,
                "bonus_points": points,
                "every_days": every,
                "periodic_fen": periodic,
                "times": times,
            },
        )


async def recharge(
    central: Any, member: int, request_id: str, amount: int, store: str = "store-1"
) -> Any:
    key = "gw-1" if store == "store-1" else "gw-2"
    return await central.ok(
        "POST",
        "/v1/recharges",
        key,
        {
            "request_id": request_id,
            "store": store,
            "terminal": "pos-1",
            "member": member,
            "amount_fen": amount,
            "method": "cash",
        },
    )


async def test_recharge_5_pays_2_and_2_points_then_1_a_day_for_10_days(central: Any) -> None:
    events: list[MemberEvent] = []

    async def subscriber(_conn: Any, event: MemberEvent) -> None:
        events.append(event)

    central.services.events.subscribe(subscriber)
    await define_domain_rules(central)
    member = (await central.member())["id"]
    body = await recharge(central, member, "rc-1", 500)
    assert (body["bonus_fen"], body["bonus_points"]) == (200, 2)
    assert (body["balance_fen"], body["points"]) == (700, 2)
    assert [s["period"] for s in body["scheduled"]] == list(range(1, 11))
    assert all(s["amount_fen"] == 100 and s["paid_at"] is None for s in body["scheduled"])
    # Visible beforehand, and a retry changes nothing.
    listed = await central.ok("GET", f"/v1/members/{member}/scheduled-bonuses", "gw-2")
    assert len(listed["items"]) == 10
    assert await recharge(central, member, "rc-1", 500) == body
    scheduler = central.services.programme.scheduler
    assert (await scheduler.run_once())["bonuses"] == 0
    central.clock.advance(DAY)
    assert (await scheduler.run_once())["bonuses"] == 1
    central.clock.advance(30 * DAY)
    assert (await scheduler.run_once())["bonuses"] == 9
    assert (await scheduler.run_once())["bonuses"] == 0
    balances = (await central.ok("GET", f"/v1/members/{member}/ledger"))["balances"]
    assert balances["balance_fen"] == 500 + 200 + 10 * 100 and balances["points"] == 2
    paid = [e for e in events if e.kind == "recharge_bonus_paid"]
    assert len(paid) == 10 and len({e.key for e in paid}) == 10
    assert [e.kind for e in events].count("recharged") == 1
    assert await ledger.verify(central.services.db) == []


async def test_recharge_1000_and_the_rule_in_between(central: Any) -> None:
    await define_domain_rules(central)
    member = (await central.member())["id"]
    body = await recharge(central, member, "big", 100_000)
    assert (body["bonus_fen"], body["bonus_points"]) == (10_000, 100)
    due = [(s["period"], s["amount_fen"]) for s in body["scheduled"]]
    assert due == [(1, 5_000), (2, 5_000)]
    # 500.00 is below 1000.00: the 100.00 rule applies, which gives nothing.
    middle = await recharge(central, member, "middle", 50_000)
    assert middle["bonus_fen"] == 0 and middle["scheduled"] == []
    # 3.00 matches no rule at all: a plain recharge.
    small = await recharge(central, member, "small", 300)
    assert small["rule_id"] is None and small["balance_fen"] == 110_000 + 50_000 + 300
    scheduler = central.services.programme.scheduler
    central.clock.advance(29 * DAY)
    assert (await scheduler.run_once())["bonuses"] == 0
    central.clock.advance(DAY)
    assert (await scheduler.run_once())["bonuses"] == 1
    central.clock.advance(30 * DAY)
    assert (await scheduler.run_once())["bonuses"] == 1
    final = (await central.ok("GET", f"/v1/members/{member}/ledger"))["balances"]
    assert final["balance_fen"] == 160_300 + 10_000
    assert await ledger.verify(central.services.db) == []


async def test_a_levels_own_rules_come_first(central: Any) -> None:
    await central.ok(
        "PUT", "/v1/programme/levels", json={"code": "gold", "name": "Gold", "rank": 2}
    )
    await define_domain_rules(central)
    await central.ok(
        "POST",
        "/v1/programme/recharge-rules",
        json={"level": "gold", "amount_fen": 500, "bonus_fen": 500},
    )
    gold = (await central.member(level="gold"))["id"]
    plain = (await central.member(phone="13900000002"))["id"]
    assert (await recharge(central, gold, "g", 500))["bonus_fen"] == 500
    assert (await recharge(central, plain, "p", 500))["bonus_fen"] == 200
    status, _, _ = await central.call(
        "POST", "/v1/programme/recharge-rules", "gw-1", {"amount_fen": 100}
    )
    assert status == 403


async def test_schedulers_racing_pay_each_return_once(central: Any) -> None:
    """Four schedulers on their own engines (as four workers would be) pay 30 returns."""
    await central.ok(
        "POST",
        "/v1/programme/recharge-rules",
        json={"amount_fen": 100, "every_days": 1, "periodic_fen": 7, "times": 10},
    )
    members = [(await central.member(phone=f"1390000010{n}"))["id"] for n in range(3)]
    for n, member in enumerate(members):
        await recharge(central, member, f"race-{n}", 100)
    url = central.services.settings.db
    dbs = [Database.from_url(url) for _ in range(4)]
    try:
        schedulers = []
        for db in dbs:
            events = MemberEvents()
            passes = PassService(db, central.clock, events, None)  # type: ignore[arg-type]
            schedulers.append(BonusScheduler(db, central.clock, events, passes))
        central.clock.advance(11 * DAY)
        paid = await asyncio.gather(*(s.pay_due() for s in schedulers))
    finally:
        for db in dbs:
            await db.close()
    assert sum(paid) == 30
    for member in members:
        balances = (await central.ok("GET", f"/v1/members/{member}/ledger"))["balances"]
        assert balances["balance_fen"] == 100 + 70
    assert await ledger.verify(central.services.db) == []


async def test_the_background_loop_pays_when_due(central: Any) -> None:
    await central.ok(
        "POST",
        "/v1/programme/recharge-rules",
        json={"amount_fen": 100, "every_days": 1, "periodic_fen": 11, "times": 1},
    )
    member = (await central.member())["id"]
    await recharge(central, member, "loop", 100)
    scheduler = central.services.programme.scheduler
    await scheduler.stop()
    scheduler.interval = 0.05
    scheduler.start()
    central.clock.advance(DAY)
    for _ in range(100):
        items = (await central.ok("GET", f"/v1/members/{member}/scheduled-bonuses"))["items"]
        if items[0]["paid_at"] is not None:
            break
        await asyncio.sleep(0.05)
    assert items[0]["paid_at"] is not None


async def test_settlement_shows_recharge_at_one_store_spent_at_another(central: Any) -> None:
    member = await central.member(password="pw-123456")
    await recharge(central, member["id"], "s-a", 10_000, store="store-1")
    order = {
        "request_id": "s-b",
        "store": "store-2",
        "terminal": "pos-1",
        "member": member["id"],
        "amount_fen": 4_000,
        "payments": [{"method": "stored_value", "amount_fen": 4_000, "password": "pw-123456"}],
    }
    await central.ok("POST", "/v1/orders", "gw-2", order)
    report = await central.ok("GET", "/v1/ledger/settlement")
    rows = {(r["store"], r["account"]): r for r in report["items"]}
    assert rows[("store-1", "stored_value")]["credit"] == 10_000
    assert rows[("store-2", "stored_value")]["debit"] == 4_000
    assert rows[("store-2", "points")]["credit"] == 40
    status, _, _ = await central.call("GET", "/v1/ledger/settlement", "gw-1")
    assert status == 403
