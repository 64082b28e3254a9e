"""Property: under random interleavings of orders, refunds, recharges, pass sales and uses,
scheduled returns and expiries, every cached balance equals its ledger sum and no balance
ever goes negative (``ledger.verify`` checks both, entry by entry). Real services on real
SQLite and PostgreSQL databases; hypothesis drives them from a worker thread."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewayd.central import ledger
from gatewayd.central.catalog import Catalog
from gatewayd.central.clock import ManualClock
from gatewayd.central.codes import ConsumptionCodes
from gatewayd.central.db import Database
from gatewayd.central.errors import CentralError
from gatewayd.central.member_events import MemberEvents
from gatewayd.central.members import MemberService
from gatewayd.central.orders import OrderCreate, RefundCreate
from gatewayd.central.passes import PassProductIn, PassSale
from gatewayd.central.pricing import Pricing
from gatewayd.central.recharge import Programme, RechargeCreate, RechargeRuleIn, build_programme
from gatewayd.central.registry import Registry
from gatewayd.central.schemas import MemberCreate, StoreCreate, TerminalCreate

KEY = b"k" * 32
STORES = ("store-a", "store-b")

member_ix = st.integers(min_value=0, max_value=1)
store_ix = st.integers(min_value=0, max_value=1)
fen = st.integers(min_value=1, max_value=30_000)
operation = st.one_of(
    st.tuples(
        st.just("recharge"), member_ix, store_ix, st.sampled_from([300, 500, 10_000, 100_000])
    ),
    st.tuples(st.just("cash"), member_ix, store_ix, fen),
    st.tuples(st.just("stored_value"), member_ix, store_ix, fen),
    st.tuples(st.just("points"), member_ix, store_ix, st.integers(min_value=1, max_value=60)),
    st.tuples(st.just("refund"), st.integers(0, 20), store_ix, st.integers(1, 100)),
    st.tuples(st.just("buy_pass"), member_ix, store_ix, st.just(0)),
    st.tuples(st.just("use_pass"), member_ix, store_ix, st.integers(1, 4)),
    st.tuples(st.just("days"), st.just(0), st.just(0), st.integers(1, 40)),
)


class World:
    """Two members at two stores, driven through the real services."""

    def __init__(self, db: Database, clock: ManualClock, programme: Programme, codes: Any) -> None:
        self.db, self.clock, self.programme, self.codes = db, clock, programme, codes
        self.members: list[int] = []
        self.orders: list[int] = []
        self.passes: dict[int, int] = {}
        self.pricing: Pricing | None = None
        self.n = 0

    def rid(self) -> str:
        self.n += 1
        return f"r{self.n}"

    async def apply(self, op: tuple[str, int, int, int]) -> bool:
        """Run one operation; False when it had nothing to act on (no order, no pass)."""
        kind, who, where, value = op
        store = STORES[where]
        p = self.programme
        if kind == "days":
            self.clock.advance(value * 86_400)
            await p.scheduler.run_once()
            return True
        if kind == "refund":
            if self.orders:
                order_id = self.orders[who % len(self.orders)]
                total = (await p.orders.get(order_id))["total_fen"]
                amount = max(1, total * value // 100)
                await p.orders.refund(
                    order_id,
                    RefundCreate(
                        request_id=self.rid(), store=store, terminal="t", amount_fen=amount
                    ),
                )
            return bool(self.orders)
        member = self.members[who]
        if kind == "recharge":
            await p.recharges.recharge(
                RechargeCreate(
                    request_id=self.rid(),
                    store=store,
                    terminal="t",
                    member=member,
                    amount_fen=value,
                    method="cash",
                )
            )
        elif kind == "buy_pass":
            sale = PassSale(
                request_id=self.rid(),
                store=store,
                terminal="t",
                member=member,
                product=1,
                method="cash",
            )
            replay = await p.passes.sell(sale)
            self.passes[member] = json.loads(replay.body)["id"]
        else:
            payment: dict[str, Any]
            amount = value
            if kind == "cash":
                payment = {"method": "cash", "amount_fen": value}
            elif kind == "stored_value":
                issued = await self.codes.issue(member)
                payment = {"method": kind, "amount_fen": value, "consumption_code": issued.code}
            elif kind == "points":
                payment = {"method": "points", "points": value}
            else:  # use_pass
                if member not in self.passes:
                    return False
                amount = 0
                payment = {
                    "method": "count_card",
                    "pass_id": self.passes[member],
                    "uses": value,
                    "amount_fen": 0,
                }
            data = OrderCreate.model_validate(
                {
                    "request_id": self.rid(),
                    "store": store,
                    "terminal": "t",
                    "member": member,
                    "amount_fen": amount,
                    "payments": [payment],
                }
            )
            assert self.pricing is not None
            replay = await p.orders.commit(data, self.pricing.quote)
            self.orders.append(json.loads(replay.body)["id"])
        return True


async def build_world(url: str, clock: ManualClock) -> World:
    db = Database.from_url(url)
    events = MemberEvents()
    members = MemberService(db, clock, KEY, events)
    programme = build_programme(db, clock, events, members, KEY)
    world = World(db, clock, programme, ConsumptionCodes(db, clock, KEY, 600))
    registry = Registry(db, clock, 300)
    world.pricing = Pricing(Catalog(db, clock), registry)
    return world


async def setup_chain(url: str) -> None:
    clock = ManualClock()
    world = await build_world(url, clock)
    try:
        registry = Registry(world.db, clock, 300)
        for store in STORES:
            await registry.create_store(StoreCreate(id=store, name=store))
            await registry.create_terminal(store, TerminalCreate(id="t", name="till", kind="pos"))
        for amount, bonus, points, every, periodic, times in (
            (500, 200, 2, 1, 100, 10),
            (100_000, 10_000, 100, 30, 5_000, 2),
        ):
            await world.programme.recharges.create_rule(
                RechargeRuleIn(
                    amount_fen=amount,
                    bonus_fen=bonus,
                    bonus_points=points,
                    every_days=every,
                    periodic_fen=periodic,
                    times=times,
                )
            )
        await world.programme.passes.create_product(
            PassProductIn(name="swims", kind="count", quantity=5, price_fen=1, valid_days=20)
        )
    finally:
        await world.db.close()


async def run_example(url: str, ops: list[tuple[str, int, int, int]]) -> dict[str, int]:
    """Apply ``ops``; returns how many of each kind went through (the rest were refused)."""
    clock = ManualClock()
    world = await build_world(url, clock)
    try:
        members = MemberService(world.db, clock, KEY, MemberEvents())
        for _ in range(2):
            created = await members.create(MemberCreate(name="P", points=50, balance_fen=1_000))
            world.members.append(created["id"])
        done: dict[str, int] = {}
        for op in ops:
            try:
                applied = await world.apply(op)
            except CentralError as exc:
                assert exc.status in (403, 404, 409, 410, 422), exc
            else:
                done[op[0]] = done.get(op[0], 0) + applied
        assert await ledger.verify(world.db) == []
        return done
    finally:
        await world.db.close()


@pytest.mark.parametrize("examples", [25])
async def test_balances_equal_their_ledger_and_never_go_negative(
    db_url: str, examples: int
) -> None:
    await setup_chain(db_url)

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
        derandomize=True,
    )
    @given(ops=st.lists(operation, min_size=1, max_size=25))
    def check(ops: list[tuple[str, int, int, int]]) -> None:
        for kind, count in asyncio.run(run_example(db_url, ops)).items():
            totals[kind] = totals.get(kind, 0) + count

    totals: dict[str, int] = {}
    await asyncio.to_thread(check)
    # The interleavings really exercised every kind of posting.
    assert set(totals) >= {"recharge", "cash", "stored_value", "points", "refund", "days"}, totals
