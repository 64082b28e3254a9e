"""POST /v1/identify over real HTTP: every token kind, every answer, recording and replay."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gatewayd.central.models import identifications
from gatewayd.central.seed import demo_id_number
from gatewayd.protocols.checks import luhn_check_digit, luhn_valid


def broken_luhn(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


async def recorded(central: Any) -> list[Any]:
    async with central.services.db.read() as conn:
        return list(
            (await conn.execute(sa.select(identifications).order_by(identifications.c.id))).all()
        )


async def test_member_code_resolves_with_summary(central: Any) -> None:
    member = await central.member(name="Han Meimei", phone="13812345678", balance_fen=12345)
    card = member["cards"][0]
    status, body = await central.identify(card["member_code"])
    assert status == 200
    assert body["member"] == {
        "id": member["id"],
        "name": "Han Meimei",
        "level": "default",
        "phone_masked": "*******5678",
        "points": 0,
        "balance_fen": 12345,
    }
    assert body["card"] == {
        "id": card["id"],
        "number": card["number"],
        "kind": "barcode",
        "main": True,
    }
    assert body["method"] == "member_code"
    assert body["via"] == "barcode"
    assert body["id_match"] is None
    rows = await recorded(central)
    assert [r.id for r in rows] == [body["identification_id"]]
    assert rows[0].token_last4 == card["member_code"][-4:]
    assert rows[0].gateway_id == "gw-1" and rows[0].status == 200


async def test_member_code_check_digit_and_unknown(central: Any) -> None:
    member = await central.member()
    code = member["cards"][0]["member_code"]
    status, body = await central.identify(broken_luhn(code))
    assert status == 422
    assert body["error"]["code"] == "malformed_token"
    status, body = await central.identify(code, kind="member_code")
    assert status == 200
    status, body = await central.identify(broken_luhn(code), kind="member_code")
    assert (status, body["error"]["code"]) == (422, "check_digit")
    unknown = "96" + "0" * 17
    unknown += luhn_check_digit(unknown)
    status, body = await central.identify(unknown)
    assert (status, body["error"]["code"]) == (404, "unknown_token")


async def test_card_number_checked_and_mistyped(central: Any) -> None:
    member = await central.member()
    number = member["cards"][0]["number"]
    assert len(number) == 16 and member["cards"][0]["checked"] is True
    status, body = await central.identify(number)
    assert status == 200 and body["method"] == "card_number"
    assert body["card"]["number"] == number
    status, body = await central.identify(broken_luhn(number))
    assert (status, body["error"]["code"]) == (422, "check_digit")


async def test_legacy_card_numbers_follow_the_chain_setting(central: Any) -> None:
    member = await central.member()
    legacy = "20150731"  # an imported number without a check digit
    assert not luhn_valid(legacy)
    card = await central.ok(
        "POST", f"/v1/members/{member['id']}/cards", json={"kind": "magstripe", "number": legacy}
    )
    assert card["checked"] is False and card["main"] is False
    alnum = await central.ok(
        "POST", f"/v1/members/{member['id']}/cards", json={"kind": "barcode", "number": "vip-0042"}
    )
    assert alnum["number"] == "VIP-0042"
    status, body = await central.identify(legacy)
    assert (status, body["error"]["code"]) == (422, "check_digit")
    settings = await central.ok("PATCH", "/v1/settings", json={"allow_legacy_card_numbers": True})
    assert settings == {"allow_legacy_card_numbers": True}
    status, body = await central.identify(legacy)
    assert status == 200 and body["card"]["id"] == card["id"] and body["card"]["main"] is False
    status, body = await central.identify("vip-0042")
    assert status == 200 and body["card"]["id"] == alnum["id"]
    status, body = await central.identify("20150732")  # mistyped, no such legacy number
    assert (status, body["error"]["code"]) == (422, "check_digit")
    status, body = await central.identify("VIP-0043")
    assert status == 404


async def test_ic_uid_and_magstripe_tracks(central: Any) -> None:
    member = await central.member()
    ic = await central.ok(
        "POST",
        f"/v1/members/{member['id']}/cards",
        json={"kind": "ic", "ic_uid": "04a1b2c3d4e5f6"},
    )
    status, body = await central.identify("04A1B2C3D4E5F6", method="ic_card")
    assert status == 200 and body["card"]["id"] == ic["id"] and body["method"] == "ic_uid"
    assert body["via"] == "ic_card"
    number = member["cards"][0]["number"]
    for track in (f";{number}=2512101?", f"%B{number}^LI/LEI^2512101?", number):
        status, body = await central.identify(track, method="magstripe")
        assert status == 200, (track, body)
        assert body["card"]["number"] == number and body["via"] == "magstripe"
    status, body = await central.identify(";garbage?", method="magstripe")
    assert status == 422


async def test_phone_member_and_phone_number_card(central: Any) -> None:
    member = await central.member(phone="+8613900001111")
    assert member["phone"] == "13900001111"
    status, body = await central.identify("13900001111", method="manual")
    assert status == 200 and body["member"]["id"] == member["id"] and body["method"] == "phone"
    assert body["card"]["main"] is True
    status, body = await central.identify("+8613900001111", method="caller_id")
    assert status == 200 and body["member"]["id"] == member["id"]
    # A "phone member card": the card number is a phone number, the member has none on file.
    other = await central.member(name="Wei")
    card = await central.ok(
        "POST",
        f"/v1/members/{other['id']}/cards",
        json={"kind": "virtual", "number": "13700002222"},
    )
    status, body = await central.identify("13700002222")
    assert status == 200 and body["member"]["id"] == other["id"]
    assert body["card"]["id"] == card["id"]
    landline = await central.member(name="Shop", phone="02164001234")
    status, body = await central.identify("02164001234", kind="phone")
    assert status == 200 and body["member"]["id"] == landline["id"]
    status, body = await central.identify("13600003333")
    assert (status, body["error"]["code"]) == (404, "unknown_token")


async def test_id_number_lookup_and_storage(central: Any) -> None:
    id_number = demo_id_number(4242)
    member = await central.member(id_number=id_number)
    assert member["has_id_number"] is True
    assert member["id_number_last4"] == id_number[-4:]
    assert id_number not in str(member)
    status, body = await central.identify(id_number, method="id_card")
    assert status == 200 and body["member"]["id"] == member["id"]
    assert body["method"] == "id_number"
    async with central.services.db.read() as conn:
        dump = str((await conn.execute(sa.text("SELECT * FROM members"))).all())
    assert id_number not in dump and id_number[:-4] not in dump
    status, body = await central.identify(demo_id_number(4243), method="id_card")
    assert status == 404


async def test_id_card_presented_with_member_card(central: Any) -> None:
    id_number = demo_id_number(77)
    member = await central.member(id_number=id_number)
    code = member["cards"][0]["member_code"]
    status, body = await central.identify(code, id_number=id_number.lower())
    assert status == 200 and body["id_match"] is True
    status, body = await central.identify(code, id_number=demo_id_number(78))
    assert status == 200 and body["id_match"] is False
    status, body = await central.identify(code, id_number="123")
    assert (status, body["error"]["code"]) == (422, "invalid_request")
    wrong_check = id_number[:-1] + ("0" if id_number[-1] != "0" else "1")
    status, body = await central.identify(code, id_number=wrong_check)
    assert (status, body["error"]["code"]) == (422, "malformed_id_number")
    no_id = await central.member(name="No ID")
    status, body = await central.identify(no_id["cards"][0]["member_code"], id_number=id_number)
    assert status == 200 and body["id_match"] is False


async def test_legacy_36_letter_code_even_when_doubled(central: Any) -> None:
    member = await central.member()
    legacy = "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ"
    card = await central.ok(
        "POST",
        f"/v1/members/{member['id']}/cards",
        json={"kind": "virtual", "legacy_code": legacy.lower()},
    )
    assert card["legacy_code"] == legacy
    for token in (legacy, legacy.lower(), legacy + legacy):
        status, body = await central.identify(token)
        assert status == 200, body
        assert body["card"]["id"] == card["id"] and body["method"] == "legacy_member_code"


async def test_secondary_card_is_recorded(central: Any) -> None:
    member = await central.member()
    second = await central.ok("POST", f"/v1/members/{member['id']}/cards", json={"kind": "virtual"})
    assert second["main"] is False
    status, body = await central.identify(second["member_code"])
    assert status == 200 and body["card"] == {
        "id": second["id"],
        "number": second["number"],
        "kind": "virtual",
        "main": False,
    }
    status, _ = await central.identify(member["cards"][0]["member_code"])
    rows = await recorded(central)
    assert [(r.card_id, r.secondary_card) for r in rows] == [
        (second["id"], True),
        (member["cards"][0]["id"], False),
    ]
    # Making the secondary card the main one demotes the old main card.
    third = await central.ok(
        "POST", f"/v1/members/{member['id']}/cards", json={"kind": "barcode", "main": True}
    )
    cards = await central.ok("GET", f"/v1/members/{member['id']}/cards")
    assert [c["id"] for c in cards["items"] if c["main"]] == [third["id"]]


async def test_event_id_replay_records_once(central: Any) -> None:
    member = await central.member()
    code = member["cards"][0]["member_code"]
    first = await central.identify(code, event_id="01JD0000000000000000000001")
    await central.ok("DELETE", f"/v1/members/{member['id']}")
    second = await central.identify(code, event_id="01JD0000000000000000000001")
    assert first == second and first[0] == 200
    rows = await recorded(central)
    assert len(rows) == 1
    third = await central.identify(code, event_id="01JD0000000000000000000002")
    assert (third[0], third[1]["error"]["code"]) == (404, "member_inactive")
    again = await central.identify(code, event_id="01JD0000000000000000000002")
    assert again == third
    assert len(await recorded(central)) == 2


async def test_deactivated_card_and_malformed_tokens(central: Any) -> None:
    member = await central.member()
    card = member["cards"][0]
    await central.ok("DELETE", f"/v1/members/{member['id']}/cards/{card['id']}")
    status, body = await central.identify(card["member_code"])
    assert (status, body["error"]["code"]) == (404, "card_inactive")
    for token, kind in (("!!!", None), ("96123", "member_code"), ("x", "unknown")):
        fields = {"kind": kind} if kind else {}
        status, body = await central.identify(token, **fields)
        assert status == 422, (token, body)
        assert body["error"]["code"] == "malformed_token"
    status, body = await central.identify("6222021234567890123")  # UnionPay
    assert (status, body["error"]["code"]) == (404, "unsupported_token")
    status, body = await central.identify(card["member_code"], terminal="pos-9")
    assert (status, body["error"]["code"]) == (422, "unknown_terminal")
    assert {r.status for r in await recorded(central)} == {404, 422}
