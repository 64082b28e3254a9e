"""Orders over real HTTP on both backends: payments, stored-value authorisation, points,
idempotent retries, proportional refunds, level upgrades on commit, member events."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gatewayd.central import ledger
from gatewayd.central.member_events import MemberEvent
from gatewayd.central.orders import OrderCreate


def record_events(central: Any) -> list[MemberEvent]:
    seen: list[MemberEvent] = []

    async def subscriber(_conn: Any, event: MemberEvent) -> None:
        seen.append(event)

    central.services.events.subscribe(subscriber)
    return seen


def order(request_id: str, member: int | None, amount_fen: int, *payments: dict[str, Any]) -> Any:
    return {
        "request_id": request_id,
        "store": "store-1",
        "terminal": "pos-1",
        "member": member,
        "amount_fen": amount_fen,
        "payments": list(payments),
    }


async def balances(central: Any, member_id: int) -> dict[str, int]:
    body = await central.ok("GET", f"/v1/members/{member_id}/ledger")
    return dict(body["balances"])


async def test_quick_spend_earns_points_and_stored_value_needs_a_password(central: Any) -> None:
    events = record_events(central)
    member = await central.member(password="s3cret-pass", balance_fen=20_000, points=10)
    mid = member["id"]
    # Cash: 100.00 yuan earns one point per yuan (no factors configured).
    status, body, _ = await central.call(
        "POST",
        "/v1/orders",
        "gw-1",
        order("o-1", mid, 10_000, {"method": "cash", "amount_fen": 10_000}),
    )
    assert status == 201, body
    assert body["points_earned"] == 100 and body["total_fen"] == 10_000
    assert body["balances"] == {"points": 110, "balance_fen": 20_000, "earned_points": 100}
    # Stored value: no password, then a wrong one, then the right one.
    pay = {"method": "stored_value", "amount_fen": 5_000}
    status, body, _ = await central.call(
        "POST", "/v1/orders", "gw-1", order("o-2", mid, 5_000, pay)
    )
    assert (status, body["error"]["code"]) == (403, "stored_value_auth_required")
    wrong = {**pay, "password": "nope"}
    status, body, _ = await central.call(
        "POST", "/v1/orders", "gw-1", order("o-2", mid, 5_000, wrong)
    )
    assert (status, body["error"]["code"]) == (403, "wrong_password")
    right = {**pay, "password": "s3cret-pass"}
    status, body, _ = await central.call(
        "POST", "/v1/orders", "gw-1", order("o-2", mid, 5_000, right)
    )
    assert status == 201 and body["balances"]["balance_fen"] == 15_000
    assert "s3cret-pass" not in str(body)
    kinds = [e.kind for e in events]
    assert kinds.count("points_earned") == 2 and kinds.count("stored_value_debited") == 1
    debited = next(e for e in events if e.kind == "stored_value_debited")
    assert debited.data["amount_fen"] == 5_000 and debited.store_id == "store-1"
    assert await ledger.verify(central.services.db) == []


async def test_retry_is_byte_identical_and_applies_once(central: Any) -> None:
    member = await central.member(password="pw-123456", balance_fen=10_000)
    body = order(
        "retry-1",
        member["id"],
        3_000,
        {"method": "stored_value", "amount_fen": 3_000, "password": "pw-123456"},
    )
    answers = []
    headers = {"Authorization": f"Bearer {central.gateway_keys['gw-1']}"}
    for _ in range(3):
        async with central.http.post(
            central.url + "/v1/orders", json=body, headers=headers
        ) as resp:
            answers.append((resp.status, await resp.read()))
    assert answers[0][0] == 201 and answers[0] == answers[1] == answers[2]
    assert (await balances(central, member["id"]))["balance_fen"] == 7_000
    other = {**body, "amount_fen": 2_000}
    other["payments"] = [{"method": "cash", "amount_fen": 2_000}]
    status, err, _ = await central.call("POST", "/v1/orders", "gw-1", other)
    assert (status, err["error"]["code"]) == (409, "request_id_reused")
    # The same request_id at another store is another request.
    elsewhere = {**other, "store": "store-2"}
    status, _, _ = await central.call("POST", "/v1/orders", "gw-2", elsewhere)
    assert status == 201


async def test_consumption_code_pays_once_and_must_be_the_members(central: Any) -> None:
    member = await central.member(balance_fen=5_000)
    stranger = await central.member(phone="13900000001")
    issued = await central.ok("POST", f"/v1/members/{member['id']}/consumption-codes", "gw-1")
    pay = {"method": "stored_value", "amount_fen": 1_200, "consumption_code": issued["code"]}
    status, body, _ = await central.call(
        "POST", "/v1/orders", "gw-1", order("c-0", stranger["id"], 1_200, pay)
    )
    assert (status, body["error"]["code"]) == (404, "code_not_found")
    status, body, _ = await central.call(
        "POST", "/v1/orders", "gw-1", order("c-1", member["id"], 1_200, pay)
    )
    assert status == 201 and body["balances"]["balance_fen"] == 3_800
    status, body, _ = await central.call(
        "POST", "/v1/orders", "gw-1", order("c-2", member["id"], 1_200, pay)
    )
    assert (status, body["error"]["code"]) == (409, "code_used")
    assert (await balances(central, member["id"]))["balance_fen"] == 3_800


async def test_points_payment_and_bad_payment_sets(central: Any) -> None:
    member = await central.member(points=1_000)
    mid = member["id"]
    # 500 points pay 5.00 yuan (1 fen per point); the rest in cash earns its share of points.
    status, body, _ = await central.call(
        "POST",
        "/v1/orders",
        "gw-1",
        order(
            "p-1",
            mid,
            10_000,
            {"method": "points", "points": 500},
            {"method": "cash", "amount_fen": 9_500},
        ),
    )
    assert status == 201, body
    assert body["points_earned"] == 95
    assert body["balances"]["points"] == 1_000 - 500 + 95
    status, body, _ = await central.call(
        "POST",
        "/v1/orders",
        "gw-1",
        order("p-2", mid, 10_000, {"method": "cash", "amount_fen": 9_999}),
    )
    assert (status, body["error"]["code"]) == (422, "payments_mismatch")
    status, body, _ = await central.call(
        "POST",
        "/v1/orders",
        "gw-1",
        order("p-3", mid, 700_000, {"method": "points", "points": 700_000}),
    )
    assert (status, body["error"]["code"]) == (409, "insufficient_points")
    status, body, _ = await central.call(
        "POST", "/v1/orders", "gw-1", order("p-4", None, 100, {"method": "points", "points": 100})
    )
    assert status == 422
    status, body, _ = await central.call(
        "POST", "/v1/orders", "gw-2", order("p-5", mid, 100, {"method": "cash", "amount_fen": 100})
    )
    assert (status, body["error"]["code"]) == (403, "other_store")
    assert await ledger.verify(central.services.db) == []


async def test_refunds_reverse_in_proportion_and_never_beyond(central: Any) -> None:
    events = record_events(central)
    member = await central.member(password="pw-123456", balance_fen=10_000, points=1_000)
    mid = member["id"]
    payments = [
        {"method": "stored_value", "amount_fen": 6_000, "password": "pw-123456"},
        {"method": "points", "points": 1_000},
        {"method": "wechat", "amount_fen": 3_000},
    ]
    created = await central.ok("POST", "/v1/orders", "gw-1", order("r-1", mid, 10_000, *payments))
    assert created["points_earned"] == 90  # 100 points on 10 000 fen, less the 10 % paid in points
    after_order = await balances(central, mid)
    assert after_order == {"points": 90, "balance_fen": 4_000, "earned_points": 90}
    oid = created["id"]
    refund = {"request_id": "rf-1", "store": "store-1", "terminal": "pos-1", "amount_fen": 3_333}
    first = await central.ok("POST", f"/v1/orders/{oid}/refunds", "gw-1", refund)
    assert first["stored_value_fen"] == 2_000  # 6000 × 3333/10000 = 1999.8 → 2000
    assert first["points_returned"] == 333 and first["points_revoked"] == 30
    assert first["pay_back"] == [{"method": "wechat", "amount_fen": 1_000}]
    assert (await central.ok("POST", f"/v1/orders/{oid}/refunds", "gw-1", refund)) == first
    elsewhere = {**refund, "store": "store-2", "request_id": "rf-x"}
    status, body, _ = await central.call("POST", f"/v1/orders/{oid}/refunds", "gw-2", elsewhere)
    assert (status, body["error"]["code"]) == (403, "other_store")
    too_much = {**refund, "request_id": "rf-2", "amount_fen": 6_668}
    status, body, _ = await central.call("POST", f"/v1/orders/{oid}/refunds", "gw-1", too_much)
    assert (status, body["error"]["code"]) == (409, "refund_exceeds_order")
    rest = {**refund, "request_id": "rf-3", "amount_fen": 6_667}
    second = await central.ok("POST", f"/v1/orders/{oid}/refunds", "gw-1", rest)
    assert second["refunded_total_fen"] == 10_000
    assert first["stored_value_fen"] + second["stored_value_fen"] == 6_000
    assert first["points_returned"] + second["points_returned"] == 1_000
    assert first["points_revoked"] + second["points_revoked"] == 90
    assert first["pay_back"][0]["amount_fen"] + second["pay_back"][0]["amount_fen"] == 3_000
    # A full refund leaves the member exactly where they started.
    assert await balances(central, mid) == {
        "points": 1_000,
        "balance_fen": 10_000,
        "earned_points": 0,
    }
    assert [e.kind for e in events].count("refunded") == 2
    read = await central.ok("GET", f"/v1/orders/{oid}", "gw-1")
    assert read["refunded_fen"] == 10_000 and len(read["payments"]) == 3
    assert await ledger.verify(central.services.db) == []


async def test_refund_of_spent_earned_points_reports_a_shortfall(central: Any) -> None:
    member = await central.member()
    mid = member["id"]
    created = await central.ok(
        "POST",
        "/v1/orders",
        "gw-1",
        order("s-1", mid, 20_000, {"method": "cash", "amount_fen": 20_000}),
    )
    assert created["points_earned"] == 200
    await central.ok(
        "POST", "/v1/orders", "gw-1", order("s-2", mid, 150, {"method": "points", "points": 150})
    )
    refund = {"request_id": "s-3", "store": "store-1", "terminal": "pos-1", "amount_fen": 20_000}
    body = await central.ok("POST", f"/v1/orders/{created['id']}/refunds", "gw-1", refund)
    assert (body["points_revoked"], body["points_shortfall"]) == (50, 150)
    assert body["balances"]["points"] == 0 and body["balances"]["earned_points"] == 0
    assert await ledger.verify(central.services.db) == []


async def test_commit_applies_upgrade_rules_on_cumulative_earned_points(central: Any) -> None:
    events = record_events(central)
    for code, rank in (("default", 0), ("silver", 1), ("gold", 2)):
        await central.ok(
            "PUT", "/v1/programme/levels", json={"code": code, "name": code, "rank": rank}
        )
    await central.ok(
        "POST",
        "/v1/programme/upgrade-rules",
        json={"from_level": "default", "to_level": "silver", "min_earned_points": 100},
    )
    await central.ok(
        "POST",
        "/v1/programme/upgrade-rules",
        json={
            "from_level": "silver",
            "to_level": "gold",
            "min_earned_points": 300,
            "deduct_points": 50,
        },
    )
    member = await central.member()
    mid = member["id"]
    body = await central.ok(
        "POST",
        "/v1/orders",
        "gw-1",
        order("u-1", mid, 9_900, {"method": "cash", "amount_fen": 9_900}),
    )
    assert body["upgrades"] == []
    body = await central.ok(
        "POST", "/v1/orders", "gw-1", order("u-2", mid, 100, {"method": "cash", "amount_fen": 100})
    )
    assert body["upgrades"] == [
        {"from_level": "default", "to_level": "silver", "earned_points": 100, "deducted_points": 0}
    ]
    # Spending the balance does not cost the level, nor delay the next one.
    await central.ok(
        "POST", "/v1/orders", "gw-1", order("u-3", mid, 100, {"method": "points", "points": 100})
    )
    body = await central.ok(
        "POST",
        "/v1/orders",
        "gw-1",
        order("u-4", mid, 20_000, {"method": "cash", "amount_fen": 20_000}),
    )
    assert [u["to_level"] for u in body["upgrades"]] == ["gold"]
    assert body["balances"] == {"points": 150, "balance_fen": 0, "earned_points": 300}
    assert (await central.ok("GET", f"/v1/members/{mid}"))["level"] == "gold"
    upgraded = [e for e in events if e.kind == "level_upgraded"]
    assert [e.data["to_level"] for e in upgraded] == ["silver", "gold"]
    assert await ledger.verify(central.services.db) == []


async def test_100_concurrent_stored_value_orders_on_one_wallet(central: Any) -> None:
    """Over HTTP: 100 tills debit one wallet at once (each with its own consumption code),
    and every request is also sent twice at the same time under the same request_id."""

    member = await central.member(balance_fen=5_000)
    mid = member["id"]
    codes = [
        (await central.ok("POST", f"/v1/members/{mid}/consumption-codes", "gw-1"))["code"]
        for _ in range(100)
    ]

    async def pay(n: int) -> tuple[int, Any]:
        pay = {"method": "stored_value", "amount_fen": 100, "consumption_code": codes[n]}
        status, body, _ = await central.call(
            "POST", "/v1/orders", "gw-1", order(f"w-{n}", mid, 100, pay)
        )
        return status, body

    results = await asyncio.gather(*(pay(n % 100) for n in range(200)))
    ok = [body for status, body in results if status == 201]
    refused = [body["error"]["code"] for status, body in results if status != 201]
    assert len({body["id"] for body in ok}) == 50  # each applied once, retries replayed
    assert set(refused) <= {"insufficient_balance", "code_used"} and refused
    final = await balances(central, mid)
    assert final["balance_fen"] == 0
    assert await ledger.verify(central.services.db) == []


payment_fields = st.fixed_dictionaries(
    {
        "method": st.sampled_from(
            ["cash", "wechat", "alipay", "stored_value", "points", "count_card", "gift"]
        )
    },
    optional={
        "amount_fen": st.one_of(st.integers(-5, 10**16), st.text(max_size=3)),
        "points": st.integers(-5, 10**16),
        "uses": st.integers(-1, 20_000),
        "pass_id": st.integers(-1, 2**32),
        "password": st.text(max_size=140),
        "consumption_code": st.text(max_size=50),
        "extra": st.none(),
    },
)


@given(payments=st.lists(payment_fields, max_size=4), member=st.none() | st.integers(1, 9))
def test_order_bodies_validate_or_say_why(payments: list[dict[str, Any]], member: Any) -> None:
    """Any payment list either validates into a consistent order or is a ValidationError."""
    raw = {**order("v-1", member, 100), "payments": payments}
    try:
        data = OrderCreate.model_validate(raw)
    except ValidationError:
        return
    assert 1 <= len(data.payments) <= 16
    for p in data.payments:
        assert (p.amount_fen is not None) or p.method == "points"
        assert (p.pass_id is not None) == (p.method == "count_card")
        assert p.points is None or p.method == "points"
        if p.password or p.consumption_code:
            assert p.method == "stored_value"
    if data.member is None:
        assert all(p.method in ("cash", "wechat", "alipay") for p in data.payments)
    assert "password" not in str(data.digest_body())
