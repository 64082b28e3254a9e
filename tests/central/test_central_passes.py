"""Count cards and time cards on the member card: sale, use in orders, refunds, expiry,
time sessions billed per started step (real HTTP, both backends), and the billing rule."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gatewayd.central import ledger
from gatewayd.central.passes import bill

DAY = 86_400.0
MINUTE = 60.0


async def product(central: Any, **fields: Any) -> int:
    body = await central.ok("POST", "/v1/programme/pass-products", json=fields)
    return int(body["id"])


async def sell(central: Any, member: int, product_id: int, request_id: str, **extra: Any) -> Any:
    body = {
        "request_id": request_id,
        "store": "store-1",
        "terminal": "pos-1",
        "member": member,
        "product": product_id,
        "method": "cash",
        **extra,
    }
    return await central.call("POST", "/v1/passes", "gw-1", body)


def swim_order(request_id: str, member: int, pass_id: int, uses: int = 1) -> Any:
    return {
        "request_id": request_id,
        "store": "store-1",
        "terminal": "pos-1",
        "member": member,
        "amount_fen": 3_000 * uses,
        "payments": [
            {"method": "count_card", "pass_id": pass_id, "uses": uses, "amount_fen": 3_000 * uses}
        ],
    }


async def test_count_card_sold_used_refunded_and_expired(central: Any) -> None:
    swims = await product(
        central, name="10 swims", kind="count", quantity=10, price_fen=25_000, valid_days=90
    )
    member = (await central.member())["id"]
    status, card, _ = await sell(central, member, swims, "sell-1")
    assert status == 201 and card["remaining"] == 10 and card["kind"] == "count"
    pass_id = card["id"]
    used = await central.ok("POST", "/v1/orders", "gw-1", swim_order("swim-1", member, pass_id, 3))
    assert used["payments"][0]["uses"] == 3
    listed = await central.ok("GET", f"/v1/members/{member}/passes", "gw-2")
    assert listed["items"][0]["remaining"] == 7
    status, body, _ = await central.call(
        "POST", "/v1/orders", "gw-1", swim_order("swim-2", member, pass_id, 8)
    )
    assert (status, body["error"]["code"]) == (409, "insufficient_uses")
    refund = {"request_id": "swim-r", "store": "store-1", "terminal": "pos-1", "amount_fen": 3_000}
    back = await central.ok("POST", f"/v1/orders/{used['id']}/refunds", "gw-1", refund)
    assert back["uses_returned"] == [{"pass_id": pass_id, "uses": 1}]
    central.clock.advance(91 * DAY)
    assert (await central.services.programme.scheduler.run_once())["passes"] == 1
    assert (await central.services.programme.scheduler.run_once())["passes"] == 0
    listed = await central.ok("GET", f"/v1/members/{member}/passes")
    assert listed["items"][0]["remaining"] == 0 and listed["items"][0]["expired"] is True
    status, body, _ = await central.call(
        "POST", "/v1/orders", "gw-1", swim_order("swim-3", member, pass_id)
    )
    assert (status, body["error"]["code"]) == (410, "pass_expired")
    kinds = [
        e["kind"] for e in (await central.ok("GET", f"/v1/members/{member}/ledger"))["entries"]
    ]
    assert "expiry" in kinds and "purchase" in kinds
    assert await ledger.verify(central.services.db) == []


async def test_selling_from_stored_value_needs_the_password(central: Any) -> None:
    swims = await product(central, name="5 swims", kind="count", quantity=5, price_fen=12_000)
    member = (await central.member(password="pw-123456", balance_fen=20_000))["id"]
    status, body, _ = await sell(central, member, swims, "sv-1", method="stored_value")
    assert (status, body["error"]["code"]) == (403, "stored_value_auth_required")
    assert (await central.ok("GET", f"/v1/members/{member}/passes"))["items"] == []
    status, body, _ = await sell(
        central, member, swims, "sv-1", method="stored_value", password="pw-123456"
    )
    assert status == 201 and body["remaining"] == 5
    balances = (await central.ok("GET", f"/v1/members/{member}/ledger"))["balances"]
    assert balances["balance_fen"] == 8_000
    status, body, _ = await sell(
        central, member, swims, "sv-2", method="stored_value", password="pw-123456"
    )
    assert (status, body["error"]["code"]) == (409, "insufficient_balance")


async def _session(central: Any, member: int, product_id: int, rid: str, **extra: Any) -> Any:
    body = {
        "request_id": rid,
        "store": "store-1",
        "terminal": "pos-2",
        "member": member,
        "product": product_id,
        **extra,
    }
    return await central.ok("POST", "/v1/time-sessions", "gw-1", body)


async def _stop(central: Any, session_id: int, rid: str, **extra: Any) -> Any:
    body = {"request_id": rid, "store": "store-1", "terminal": "pos-2", **extra}
    return await central.call("POST", f"/v1/time-sessions/{session_id}/stop", "gw-1", body)


async def test_time_sessions_bill_started_steps_from_minutes_then_stored_value(
    central: Any,
) -> None:
    table = await product(
        central,
        name="Billiards 10 h",
        kind="time",
        quantity=600,
        price_fen=30_000,
        step_minutes=30,
        step_fen=2_000,
    )
    member = (await central.member(password="pw-123456", balance_fen=10_000))["id"]
    status, card, _ = await sell(central, member, table, "t-sell")
    assert status == 201 and card["remaining"] == 600
    session = await _session(central, member, table, "t-1", pass_id=card["id"])
    central.clock.advance(61 * MINUTE)  # three started half hours
    status, stopped, _ = await _stop(central, session["id"], "t-1-stop")
    assert status == 200
    assert (stopped["billed_minutes"], stopped["pass_minutes"], stopped["charged_fen"]) == (
        90,
        90,
        0,
    )
    status, again, _ = await _stop(central, session["id"], "t-1-stop")
    assert again == stopped
    status, body, _ = await _stop(central, session["id"], "t-1-other")
    assert (status, body["error"]["code"]) == (409, "session_stopped")
    # Without a pass, stored value pays each started step and needs the password.
    walk_in = await _session(central, member, table, "t-2")
    central.clock.advance(31 * MINUTE)
    status, body, _ = await _stop(central, walk_in["id"], "t-2-stop")
    assert (status, body["error"]["code"]) == (403, "stored_value_auth_required")
    status, body, _ = await _stop(central, walk_in["id"], "t-2-stop2", password="pw-123456")
    assert status == 200 and body["charged_fen"] == 4_000 and body["balance_fen"] == 6_000
    passes = (await central.ok("GET", f"/v1/members/{member}/passes"))["items"]
    assert passes[0]["remaining"] == 510
    assert await ledger.verify(central.services.db) == []


async def test_a_nearly_empty_time_card_is_topped_up_from_stored_value(central: Any) -> None:
    short = await product(
        central,
        name="Half hour",
        kind="time",
        quantity=30,
        price_fen=2_000,
        step_minutes=30,
        step_fen=2_500,
    )
    member = (await central.member(password="pw-123456", balance_fen=10_000))["id"]
    _, card, _ = await sell(central, member, short, "h-sell")
    session = await _session(central, member, short, "h-1", pass_id=card["id"])
    central.clock.advance(65 * MINUTE)
    status, body, _ = await _stop(central, session["id"], "h-1-stop", password="pw-123456")
    assert status == 200
    assert (body["billed_minutes"], body["pass_minutes"], body["charged_fen"]) == (90, 30, 5_000)
    assert await ledger.verify(central.services.db) == []


@given(
    elapsed=st.integers(min_value=0, max_value=10**9),
    step=st.integers(min_value=1, max_value=1440),
    available=st.integers(min_value=0, max_value=10**6),
    step_fen=st.integers(min_value=0, max_value=10**6),
)
def test_billing_counts_every_started_step(
    elapsed: int, step: int, available: int, step_fen: int
) -> None:
    minutes, from_pass, charged = bill(elapsed, step, available, step_fen)
    assert minutes % step == 0 and minutes >= step
    assert minutes * 60_000 >= elapsed and (minutes - step) * 60_000 < max(elapsed, 1)
    assert from_pass % step == 0 and 0 <= from_pass <= min(available, minutes)
    assert available - from_pass < step or from_pass == minutes
    assert charged == (minutes - from_pass) // step * step_fen
