"""Members: create, read, update, deactivate; unique phone and ID number; passwords."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gatewayd.central.models import members
from gatewayd.central.seed import demo_id_number


async def test_create_read_update_deactivate(central: Any) -> None:
    id_number = demo_id_number(1)
    created = await central.ok(
        "POST",
        "/v1/members",
        "gw-1",
        {
            "name": "Zhang San",
            "phone": "13800138000",
            "gender": "male",
            "birthday": "1990-05-17",
            "level": "gold",
            "id_number": id_number,
            "address": "1 Nanjing Rd, Shanghai",
            "email": "zs@example.com",
            "notes": "prefers rye",
            "password": "correct horse",
            "points": 120,
            "balance_fen": 10050,
        },
    )
    member_id = created["id"]
    assert created["birthday"] == "1990-05-17" and created["has_password"] is True
    assert "password" not in created and "password_hash" not in created
    assert created["active"] is True and created["cards"] == []
    assert id_number not in str(created)
    read = await central.ok("GET", f"/v1/members/{member_id}", "gw-2")
    assert read == created
    central.clock.advance(60)
    updated = await central.ok(
        "PATCH", f"/v1/members/{member_id}", "gw-1", {"level": "platinum", "notes": None}
    )
    assert updated["level"] == "platinum" and updated["notes"] is None
    assert updated["name"] == "Zhang San" and updated["updated_at"] > created["updated_at"]
    status, body, _ = await central.call(
        "PATCH", f"/v1/members/{member_id}", "gw-1", {"name": None}
    )
    assert status == 422
    gone = await central.ok("DELETE", f"/v1/members/{member_id}")
    assert gone["active"] is False
    status, body, _ = await central.call("GET", "/v1/members/424242")
    assert (status, body["error"]["code"]) == (404, "member_not_found")
    status, body, _ = await central.call("GET", "/v1/members/99999999999")
    assert status == 404


async def test_phone_and_id_number_unique_across_the_chain(central: Any) -> None:
    id_number = demo_id_number(2)
    await central.ok("POST", "/v1/members", "gw-1", {"name": "A", "phone": "13811112222"})
    status, body, _ = await central.call(
        "POST", "/v1/members", "gw-2", {"name": "B", "phone": "+8613811112222"}
    )
    assert (status, body["error"]["code"]) == (409, "phone_taken")
    assert "13811112222" not in body["error"]["message"]
    await central.ok("POST", "/v1/members", "gw-1", {"name": "C", "id_number": id_number})
    status, body, _ = await central.call(
        "POST", "/v1/members", "gw-2", {"name": "D", "id_number": id_number.lower()}
    )
    assert (status, body["error"]["code"]) == (409, "id_number_taken")
    other = await central.ok("POST", "/v1/members", "gw-1", {"name": "E"})
    status, body, _ = await central.call(
        "PATCH", f"/v1/members/{other['id']}", "gw-1", {"phone": "13811112222"}
    )
    assert (status, body["error"]["code"]) == (409, "phone_taken")


async def test_invalid_member_fields_are_422_with_clear_messages(central: Any) -> None:
    cases = [
        ({"name": ""}, "name"),
        ({"name": "x", "id_number": "110101199003070000"}, "id_number"),
        ({"name": "x", "gender": "robot"}, "gender"),
        ({"name": "x", "birthday": "1990-13-40"}, "birthday"),
        ({"name": "x", "balance_fen": 1.5}, "balance_fen"),
        ({"name": "x", "balance_fen": -1}, "balance_fen"),
        ({"name": "x", "unknown": 1}, "unknown"),
        ({"name": "nul\u0000byte"}, "name"),
    ]
    for payload, field in cases:
        status, body, _ = await central.call("POST", "/v1/members", "admin", payload)
        assert status == 422, payload
        assert body["error"]["code"] == "invalid_request"
        assert field in body["error"]["message"], (payload, body)


async def test_password_is_argon2_and_checkable(central: Any) -> None:
    member = await central.ok(
        "POST", "/v1/members", "gw-1", {"name": "P", "password": "s3cret-pass"}
    )
    async with central.services.db.read() as conn:
        stored = await conn.scalar(
            sa.select(members.c.password_hash).where(members.c.id == member["id"])
        )
    assert stored.startswith("$argon2id$") and "s3cret-pass" not in stored
    path = f"/v1/members/{member['id']}/password-check"
    assert await central.ok("POST", path, "gw-1", {"password": "s3cret-pass"}) == {"valid": True}
    assert await central.ok("POST", path, "gw-1", {"password": "wrong"}) == {"valid": False}
    nopass = await central.ok("POST", "/v1/members", "gw-1", {"name": "Q"})
    answer = await central.ok(
        "POST", f"/v1/members/{nopass['id']}/password-check", "gw-1", {"password": "x"}
    )
    assert answer == {"valid": False}


async def test_cards_unique_and_ic_needs_uid(central: Any) -> None:
    member = await central.member()
    number = member["cards"][0]["number"]
    status, body, _ = await central.call(
        "POST", f"/v1/members/{member['id']}/cards", "admin", {"kind": "barcode", "number": number}
    )
    assert (status, body["error"]["code"]) == (409, "card_number_taken")
    status, body, _ = await central.call(
        "POST", f"/v1/members/{member['id']}/cards", "admin", {"kind": "ic"}
    )
    assert status == 422
    status, body, _ = await central.call(
        "POST", f"/v1/members/{member['id']}/cards/99999/touch", "admin"
    )
    assert (status, body["error"]["code"]) == (404, "card_not_found")
    status, _, _ = await central.call(
        "DELETE", f"/v1/members/{member['id']}/payment-accounts/12345", "admin"
    )
    assert status == 404
