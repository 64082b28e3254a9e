"""Consumption codes: issue, identify, expiry and replay under a controlled clock, redeem races."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from gatewayd.central.codes import (
    new_card_number,
    new_consumption_code,
    new_member_code,
)
from gatewayd.central.ledger import verify
from gatewayd.central.models import consumption_codes
from gatewayd.protocols.checks import luhn_valid
from gatewayd.protocols.tokens import TokenKind, classify


def test_generated_numbers_have_their_formats_and_check_digits() -> None:
    for _ in range(200):
        card, member_code, code = new_card_number(), new_member_code(), new_consumption_code()
        assert len(card) == 16 and card[0] == "8" and luhn_valid(card)
        assert len(member_code) == 20 and member_code.startswith("96") and luhn_valid(member_code)
        assert len(code) == 22 and code.startswith("97") and luhn_valid(code)
        assert classify(card).kind is TokenKind.CARD_NUMBER
        assert classify(member_code).kind is TokenKind.MEMBER_CODE
        assert classify(code).kind is TokenKind.CONSUMPTION_CODE
    # 19 random digits: 10**19 > 2**63, and codes do not repeat.
    assert len({new_consumption_code() for _ in range(2000)}) == 2000


async def issue(central: Any, member_id: int, key: str = "gw-1") -> dict[str, Any]:
    status, body, _ = await central.call("POST", f"/v1/members/{member_id}/consumption-codes", key)
    assert status == 201, body
    return dict(body)


async def redeem(central: Any, code: str, **fields: Any) -> tuple[int, Any]:
    payload = {"code": code, "store": "store-1", "terminal": "pos-1", **fields}
    key = fields.pop("key", None) or ("gw-2" if payload["store"] == "store-2" else "gw-1")
    payload.pop("key", None)
    status, body, _ = await central.call("POST", "/v1/consumption-codes/redeem", key, payload)
    return status, body


async def test_code_identifies_until_it_expires(central: Any) -> None:
    member = await central.member(balance_fen=5000)
    issued = await issue(central, member["id"])
    assert issued["valid_seconds"] == 600 and issued["member_id"] == member["id"]
    assert classify(issued["code"]).kind is TokenKind.CONSUMPTION_CODE
    status, body = await central.identify(issued["code"])
    assert status == 200 and body["member"]["id"] == member["id"]
    assert body["method"] == "consumption_code" and body["card"]["main"] is True
    central.clock.advance(599)
    status, _ = await central.identify(issued["code"])
    assert status == 200
    central.clock.advance(1)
    status, body = await central.identify(issued["code"])
    assert (status, body["error"]["code"]) == (410, "code_expired")
    status, body = await redeem(central, issued["code"])
    assert (status, body["error"]["code"]) == (410, "code_expired")


async def test_code_is_stored_only_as_a_hash(central: Any) -> None:
    member = await central.member()
    issued = await issue(central, member["id"])
    async with central.services.db.read() as conn:
        rows = (await conn.execute(sa.select(consumption_codes))).all()
    assert len(rows) == 1
    assert issued["code"] not in str(rows) and rows[0].last4 == issued["code"][-4:]
    assert len(rows[0].code_hash) == 64


async def test_redeem_once_then_replay_is_409(central: Any) -> None:
    member = await central.member(balance_fen=5000)
    issued = await issue(central, member["id"])
    status, body = await redeem(central, issued["code"], amount_fen=1250)
    assert status == 200, body
    assert body["debited_fen"] == 1250 and body["balance_fen"] == 3750
    assert body["member"]["balance_fen"] == 3750 and body["code_last4"] == issued["code"][-4:]
    status, body = await redeem(central, issued["code"])
    assert (status, body["error"]["code"]) == (409, "code_used")
    status, body = await central.identify(issued["code"])
    assert (status, body["error"]["code"]) == (409, "code_used")
    # The debit is a ledger entry of the redeeming store, so the ledger still adds up.
    entries = await central.ok("GET", f"/v1/members/{member['id']}/ledger")
    debits = [e for e in entries["entries"] if e["kind"] == "debit"]
    assert [(e["amount"], e["store"], e["balance_after"]) for e in debits] == [
        (-1250, "store-1", 3750)
    ]
    assert await verify(central.services.db) == []


async def test_insufficient_balance_leaves_the_code_unused(central: Any) -> None:
    member = await central.member(balance_fen=100)
    issued = await issue(central, member["id"])
    status, body = await redeem(central, issued["code"], amount_fen=101)
    assert (status, body["error"]["code"]) == (409, "insufficient_balance")
    status, body = await redeem(central, issued["code"], amount_fen=100)
    assert status == 200 and body["balance_fen"] == 0


async def test_unknown_and_malformed_codes(central: Any) -> None:
    status, body = await redeem(central, "97" + "1" * 20)
    assert (status, body["error"]["code"]) == (422, "malformed_code")
    fresh = new_consumption_code()
    status, body = await redeem(central, fresh)
    assert (status, body["error"]["code"]) == (404, "code_not_found")
    status, body = await central.identify(fresh)
    assert status == 404
    status, body, _ = await central.call("POST", "/v1/members/999999/consumption-codes", "gw-1")
    assert status == 404


async def test_two_terminals_redeem_one_code_exactly_one_wins(central: Any) -> None:
    member = await central.member(balance_fen=100_000)
    for _ in range(5):
        issued = await issue(central, member["id"])
        results = await asyncio.gather(
            redeem(central, issued["code"], terminal="pos-1", amount_fen=1000),
            redeem(central, issued["code"], terminal="pos-2", amount_fen=1000),
            redeem(central, issued["code"], store="store-2", terminal="pos-1", amount_fen=1000),
        )
        statuses = sorted(status for status, _ in results)
        assert statuses == [200, 409, 409], results
    final = await central.ok("GET", f"/v1/members/{member['id']}")
    assert final["balance_fen"] == 100_000 - 5 * 1000


async def test_code_issuing_is_rate_limited(central: Any) -> None:
    member = await central.member()
    limiter = central.services.issue_limit
    limiter.rate, limiter.burst = 0.01, 2.0
    await issue(central, member["id"])
    await issue(central, member["id"])
    status, body, resp = await central.call(
        "POST", f"/v1/members/{member['id']}/consumption-codes", "gw-1"
    )
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1
