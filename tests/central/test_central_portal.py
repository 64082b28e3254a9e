"""The member portal's JSON API on both backends, over real sockets: central, a fake SMS
gateway (aiohttp), and members signing in with their own cookie jars."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import segno
import sqlalchemy as sa
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.central.app import build_app
from gatewayd.central.clock import ManualClock
from gatewayd.central.codes import new_card_number
from gatewayd.central.errors import Invalid
from gatewayd.central.models_portal import portal_phone_codes
from gatewayd.central.portal import parse_account
from gatewayd.central.server import ssl_context
from gatewayd.protocols.checks import luhn_check_digit
from tests.central.conftest import Central, make_settings, start_central
from tests.central.test_central_senders import FakeSmsGateway, sms_options

pytest_plugins = ["tests.central.test_central_senders"]
STATIC = Path(__file__).resolve().parents[2] / "gatewayd" / "central" / "static" / "portal"
PASSWORD = "open-sesame-1"


def sms_senders_file(tmp_path: Path, sms_url: str) -> str:
    """A senders file with just the SMS channel, pointing at the fake gateway."""
    lines = ["[sms]"]
    for key, value in sms_options(sms_url).items():
        if isinstance(value, dict):
            inner = ", ".join(f'"{k}" = "{v}"' for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        elif isinstance(value, str):
            lines.append(f"{key} = '{value}'")
        else:
            lines.append(f"{key} = {value}")
    path = tmp_path / "senders.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


async def start_portal_central(
    db_url: str, clock: ManualClock, tmp_path: Path, sms_url: str
) -> tuple[Central, Any]:
    settings = make_settings(
        db_url,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        notify_senders=sms_senders_file(tmp_path, sms_url),
        notify_loops=0,
        alert_interval=0.0,
    )
    return await start_central(settings, clock)


@pytest.fixture
async def portal(
    db_url: str,
    clock: ManualClock,
    tmp_path: Path,
    sms_gateway: tuple[FakeSmsGateway, str],
) -> AsyncIterator[Central]:
    running, stop = await start_portal_central(db_url, clock, tmp_path, sms_gateway[1])
    yield running
    await stop()


class Member:
    """One member's browser: its own cookie jar and the session's CSRF token."""

    def __init__(self, central: Central) -> None:
        self.central = central
        # unsafe=True: aiohttp's jar otherwise ignores cookies from IP-address hosts.
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def call(
        self, method: str, path: str, body: Any = None, csrf: bool = True, **headers: str
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        if csrf and method != "GET":
            headers.setdefault("X-CSRF-Token", self.csrf)
        async with self.http.request(
            method, self.central.url + path, json=body, headers=headers
        ) as resp:
            data = await resp.json(content_type=None) if resp.content_length != 0 else None
            return resp.status, data, resp

    async def login(self, account: str, password: str = PASSWORD) -> tuple[int, Any]:
        status, body, _ = await self.call(
            "POST", "/portal/api/login", {"account": account, "password": password}
        )
        if status == 200:
            self.csrf = body["csrf_token"]
        return status, body

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data, _ = await self.call(method, path, body)
        assert status < 300, (status, data)
        return data

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def browsers(portal: Central) -> AsyncIterator[Any]:
    opened: list[Member] = []

    def open_one() -> Member:
        opened.append(Member(portal))
        return opened[-1]

    yield open_one
    for member in opened:
        await member.close()


async def new_member(central: Central, phone: str, **fields: Any) -> dict[str, Any]:
    return await central.member(phone=phone, password=PASSWORD, **fields)


def card_number(member: dict[str, Any]) -> str:
    return str(member["cards"][0]["number"])


def order(request_id: str, member_id: int, fen: int) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "store": "store-1",
        "terminal": "pos-1",
        "member": member_id,
        "amount_fen": fen,
        "payments": [{"method": "cash", "amount_fen": fen}],
    }


async def sent_code(central: Central, fake: FakeSmsGateway, phone: str) -> str:
    """Send the queued SMS through the real dispatcher; the code the fake gateway got."""
    dispatcher = central.services.notify_loops.dispatcher
    assert dispatcher is not None
    while await dispatcher.run_once():
        pass
    texts = [m["content"] for m in fake.received if m["mobile"] == phone]
    assert texts, fake.received
    found = re.search(r"验证码(\d{6})", texts[-1])
    assert found, texts[-1]
    return found.group(1)


# --- pure parts ---------------------------------------------------------------------------


@given(st.text(max_size=80))
def test_parse_account_classifies_or_refuses(text: str) -> None:
    try:
        account = parse_account(text)
    except Invalid as exc:
        assert exc.code == "invalid_account"
        return
    if account.kind == "phone":
        assert re.fullmatch(r"1[3-9][0-9]{9}", account.value)
    else:
        assert re.fullmatch(r"[A-Z0-9][A-Z0-9-]{3,39}", account.value)


@given(st.sampled_from(["", "+86", "0086"]), st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_parse_account_takes_mobile_numbers_with_country_prefix(prefix: str, phone: str) -> None:
    assert parse_account(f" {prefix}{phone} ").value == phone
    assert parse_account(f"{prefix}{phone}").kind == "phone"


# --- signing in ---------------------------------------------------------------------------


async def test_login_by_card_and_by_phone_sets_a_strict_session_cookie(
    portal: Central, browsers: Any
) -> None:
    member = await new_member(portal, "13800138001", balance_fen=12_345, points=50)
    first = browsers()
    status, body = await first.login(card_number(member))
    assert status == 200 and body["member_id"] == member["id"] and body["name"] == "Li Lei"
    assert "gatewayd_portal_session" in {c.key for c in first.http.cookie_jar}
    me = await first.ok("GET", "/portal/api/me")
    assert (me["points"], me["balance_fen"], me["card_number"]) == (
        50,
        12_345,
        card_number(member),
    )
    second = browsers()
    async with second.http.post(
        portal.url + "/portal/api/login",
        json={"account": "+86 138 0013 8001", "password": PASSWORD},
    ) as resp:
        assert resp.status == 200
        set_cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert "Path=/" in set_cookie and "Secure" not in set_cookie  # plain HTTP here
    assert (await second.ok("GET", "/portal/api/me"))["id"] == member["id"]


async def test_wrong_password_and_unknown_account_answer_alike(
    portal: Central, browsers: Any
) -> None:
    member = await new_member(portal, "13800138002")
    client = browsers()
    answers = []
    for account, password in (
        (card_number(member), "wrong-password"),
        (new_card_number(), PASSWORD),  # a well-formed number nobody has
        ("13999999999", PASSWORD),
        ("13800138002", "wrong-password"),
    ):
        status, body = await client.login(account, password)
        answers.append((status, body))
    assert all(a == (401, answers[0][1]) for a in answers), answers
    assert answers[0][1]["error"]["code"] == "bad_login"
    # A number failing its check digit is a typing error, said as such (nothing about accounts).
    payload = card_number(member)[:-1]
    wrong_digit = payload + str((int(luhn_check_digit(payload)) + 1) % 10)
    status, body = await client.login(wrong_digit)
    assert (status, body["error"]["code"]) == (422, "check_digit")
    status, _, _ = await client.call("GET", "/portal/api/me")
    assert status == 401


async def test_legacy_card_numbers_only_when_hq_allows_them(portal: Central, browsers: Any) -> None:
    member = await new_member(portal, "13800138003")
    await portal.ok(
        "POST", f"/v1/members/{member['id']}/cards", json={"kind": "barcode", "number": "LEG-0042"}
    )
    client = browsers()
    assert (await client.login("leg-0042"))[0] == 401
    await portal.ok("PATCH", "/v1/settings", json={"allow_legacy_card_numbers": True})
    status, body = await client.login("leg-0042")
    assert (status, body["member_id"]) == (200, member["id"])


async def test_failed_logins_lock_the_account_and_the_address(
    portal: Central, clock: ManualClock, browsers: Any
) -> None:
    member = await new_member(portal, "13800138004")
    client = browsers()
    # Card and phone name the same account: alternating them does not earn more tries.
    for account in [card_number(member), "13800138004"] * 2 + [card_number(member)]:
        assert (await client.login(account, "nope"))[0] == 401
    status, body, resp = await client.call(
        "POST", "/portal/api/login", {"account": "13800138004", "password": PASSWORD}
    )
    assert (status, body["error"]["code"]) == (429, "login_throttled")
    assert int(resp.headers["Retry-After"]) > 0
    clock.advance(15 * 60 + 1)
    assert (await client.login("13800138004"))[0] == 200
    # 20 failures from one address lock it for every account, even a right password.
    other = await new_member(portal, "13800138005")
    for n in range(20):
        await client.login(f"1390000{n:04d}", "nope")
    assert (await client.login(card_number(other)))[0] == 429


# --- reading ------------------------------------------------------------------------------


async def test_member_sees_own_points_balance_ledger_and_orders_only(
    portal: Central, browsers: Any
) -> None:
    alice = await new_member(portal, "13800138010", balance_fen=20_000, points=10)
    bob = await new_member(portal, "13800138011", balance_fen=500)
    created = await portal.ok("POST", "/v1/orders", "gw-1", order("o-1", alice["id"], 10_000))
    await portal.ok("POST", "/v1/orders", "gw-1", order("o-2", bob["id"], 300))
    client = browsers()
    await client.login("13800138010")
    me = await client.ok("GET", "/portal/api/me")
    assert (me["points"], me["balance_fen"]) == (10 + created["points_earned"], 20_000)
    orders = (await client.ok("GET", "/portal/api/orders"))["items"]
    assert [o["id"] for o in orders] == [created["id"]]
    assert orders[0]["total_fen"] == 10_000 and orders[0]["store_name"] == "Store-1"
    assert orders[0]["payments"] == [{"method": "cash", "amount_fen": 10_000, "points": 0}]
    entries = (await client.ok("GET", "/portal/api/ledger?limit=100"))["items"]
    assert {(e["account"], e["kind"]) for e in entries} >= {
        ("stored_value", "opening"),
        ("points", "opening"),
        ("points", "earn"),
    }
    assert entries[0]["id"] > entries[-1]["id"]  # newest first
    assert all(e["order_id"] in (None, created["id"]) for e in entries)
    status, body, _ = await client.call("GET", "/portal/api/ledger?limit=0")
    assert (status, body["error"]["code"]) == (422, "invalid_request")
    # The member session opens no other API: bob's record is not reachable with it.
    status, _, _ = await client.call("GET", f"/v1/members/{bob['id']}")
    assert status == 401
    status, _, _ = await client.call("GET", f"/v1/members/{bob['id']}/ledger")
    assert status == 401


# --- changing -----------------------------------------------------------------------------


async def test_profile_edit_changes_only_safe_fields(portal: Central, browsers: Any) -> None:
    member = await new_member(portal, "13800138020", points=7)
    client = browsers()
    await client.login("13800138020")
    changed = await client.ok(
        "PATCH",
        "/portal/api/profile",
        {
            "name": "韩梅梅",
            "gender": "female",
            "birthday": "1990-05-04",
            "address": "上海市黄浦区",
            "email": "mei@example.com",
        },
    )
    assert changed["name"] == "韩梅梅" and changed["birthday"] == "1990-05-04"
    stored = await portal.ok("GET", f"/v1/members/{member['id']}")
    assert (stored["name"], stored["gender"], stored["email"]) == (
        "韩梅梅",
        "female",
        "mei@example.com",
    )
    for forbidden in ({"level": "gold"}, {"points": 10_000}, {"balance_fen": 1}):
        status, body, _ = await client.call("PATCH", "/portal/api/profile", forbidden)
        assert status == 422, body
    status, _, _ = await client.call("PATCH", "/portal/api/profile", {"name": None})
    assert status == 422
    cleared = await client.ok("PATCH", "/portal/api/profile", {"email": None})
    assert cleared["email"] is None and cleared["name"] == "韩梅梅"
    stored = await portal.ok("GET", f"/v1/members/{member['id']}")
    assert (stored["level"], stored["points"]) == ("default", 7)


async def member_custom_fields(central: Central) -> None:
    """HQ's member fields: two the member may edit, one only the store may set."""
    fields: list[dict[str, Any]] = [
        {"key": "shoe_size", "label": "鞋码", "type": "number", "member_editable": True},
        {
            "key": "diet",
            "label": "饮食",
            "type": "choice",
            "choices": ["none", "vegetarian", "halal"],
            "required": True,
            "default": "none",
            "member_editable": True,
        },
        {"key": "vip_tier", "label": "VIP", "type": "text"},
    ]
    for field in fields:
        await central.ok("POST", "/v1/custom-fields", json={"entity": "member", **field})


async def test_profile_shows_custom_fields_and_saves_only_member_editable_ones(
    portal: Central, browsers: Any
) -> None:
    await member_custom_fields(portal)
    member = await new_member(portal, "13800138025", custom={"vip_tier": "gold"})
    client = browsers()
    await client.login("13800138025")
    me = await client.ok("GET", "/portal/api/me")
    assert me["custom_fields"] == [
        {
            "key": "shoe_size",
            "label": "鞋码",
            "type": "number",
            "required": False,
            "choices": None,
            "editable": True,
            "value": None,
        },
        {
            "key": "diet",
            "label": "饮食",
            "type": "choice",
            "required": True,
            "choices": ["none", "vegetarian", "halal"],
            "editable": True,
            "value": "none",
        },
        {
            "key": "vip_tier",
            "label": "VIP",
            "type": "text",
            "required": False,
            "choices": None,
            "editable": False,
            "value": "gold",
        },
    ]
    saved = await client.ok(
        "PATCH", "/portal/api/profile", {"custom": {"shoe_size": 39.5, "diet": "halal"}}
    )
    assert {f["key"]: f["value"] for f in saved["custom_fields"]} == {
        "shoe_size": 39.5,
        "diet": "halal",
        "vip_tier": "gold",
    }
    stored = await portal.ok("GET", f"/v1/members/{member['id']}")
    assert stored["custom"] == {"shoe_size": 39.5, "diet": "halal", "vip_tier": "gold"}
    # Refused: a read-only field (even next to an editable one), bad values, unknown keys.
    refused = [
        ({"name": "Changed", "custom": {"vip_tier": "platinum"}}, "custom_field_read_only"),
        ({"custom": {"shoe_size": 40, "vip_tier": None}}, "custom_field_read_only"),
        ({"custom": {"shoe_size": "40"}}, "invalid_custom_field"),
        ({"custom": {"diet": "paleo"}}, "invalid_custom_field"),
        ({"custom": {"diet": None}}, "custom_field_required"),
        ({"name": "Changed", "custom": {"points_bonus": 5}}, "unknown_custom_field"),
    ]
    for body, code in refused:
        status, answer, _ = await client.call("PATCH", "/portal/api/profile", body)
        assert (status, answer["error"]["code"]) == (422, code), body
    assert await portal.ok("GET", f"/v1/members/{member['id']}") == stored  # nothing changed
    # HQ can open a field to members later; the portal follows at once.
    fields = await portal.ok("GET", "/v1/custom-fields?entity=member")
    tier = next(f for f in fields["items"] if f["key"] == "vip_tier")
    await portal.ok("PATCH", f"/v1/custom-fields/{tier['id']}", json={"member_editable": True})
    opened = await client.ok("PATCH", "/portal/api/profile", {"custom": {"vip_tier": None}})
    assert [f["value"] for f in opened["custom_fields"]] == [39.5, "halal", None]


async def test_password_change_needs_the_current_one_and_ends_other_sessions(
    portal: Central, browsers: Any
) -> None:
    await new_member(portal, "13800138030")
    phone, laptop = browsers(), browsers()
    await phone.login("13800138030")
    await laptop.login("13800138030")
    change = {"current_password": "not-it", "new_password": "brand-new-pw"}
    status, body, _ = await phone.call("POST", "/portal/api/password", change)
    assert (status, body["error"]["code"]) == (403, "wrong_password")
    change["current_password"] = PASSWORD
    status, body, _ = await phone.call(
        "POST", "/portal/api/password", {**change, "new_password": "x"}
    )
    assert status == 422
    renewed = await phone.ok("POST", "/portal/api/password", change)
    phone.csrf = renewed["csrf_token"]
    assert (await phone.call("GET", "/portal/api/me"))[0] == 200
    assert (await laptop.call("GET", "/portal/api/me"))[0] == 401
    assert (await browsers().login("13800138030"))[0] == 401
    assert (await browsers().login("13800138030", "brand-new-pw"))[0] == 200


async def test_phone_change_with_an_sms_code(
    portal: Central, clock: ManualClock, browsers: Any, sms_gateway: tuple[FakeSmsGateway, str]
) -> None:
    member = await new_member(portal, "13800138040")
    await new_member(portal, "13800138049")
    client = browsers()
    await client.login("13800138040")
    status, body, _ = await client.call("POST", "/portal/api/phone/code", {"phone": "13800138049"})
    assert (status, body["error"]["code"]) == (409, "phone_taken")
    status, body, _ = await client.call("POST", "/portal/api/phone/code", {"phone": "12345"})
    assert status == 422
    sent = await client.ok("POST", "/portal/api/phone/code", {"phone": "+8613900139000"})
    assert sent == {"phone_masked": "139****9000", "expires_in_seconds": 600}
    code = await sent_code(portal, sms_gateway[0], "13900139000")
    async with portal.services.db.read() as conn:
        row = (await conn.execute(sa.select(portal_phone_codes))).one()
    assert code not in row.code_hash and len(row.code_hash) == 64
    status, body, _ = await client.call("POST", "/portal/api/phone/code", {"phone": "13900139000"})
    assert (status, body["error"]["code"]) == (429, "code_too_soon")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    status, body, _ = await client.call(
        "POST", "/portal/api/phone", {"phone": "13900139000", "code": wrong}
    )
    assert (status, body["error"]["details"]) == (422, {"attempts_left": 4})
    status, body, _ = await client.call(
        "POST", "/portal/api/phone", {"phone": "13900139001", "code": code}
    )
    assert (status, body["error"]["code"]) == (404, "no_code")
    changed = await client.ok("POST", "/portal/api/phone", {"phone": "13900139000", "code": code})
    assert changed["phone"] == "13900139000"
    assert (await portal.ok("GET", f"/v1/members/{member['id']}"))["phone"] == "13900139000"
    status, _, _ = await client.call(
        "POST", "/portal/api/phone", {"phone": "13900139000", "code": code}
    )
    assert status == 404  # used up
    assert (await browsers().login("13800138040"))[0] == 401
    assert (await browsers().login("13900139000"))[0] == 200


async def test_phone_codes_expire_and_allow_five_attempts(
    portal: Central, clock: ManualClock, browsers: Any, sms_gateway: tuple[FakeSmsGateway, str]
) -> None:
    await new_member(portal, "13800138050")
    client = browsers()
    await client.login("13800138050")
    await client.ok("POST", "/portal/api/phone/code", {"phone": "13900139050"})
    code = await sent_code(portal, sms_gateway[0], "13900139050")
    clock.advance(601)
    status, body, _ = await client.call(
        "POST", "/portal/api/phone", {"phone": "13900139050", "code": code}
    )
    assert (status, body["error"]["code"]) == (410, "code_expired")
    await client.ok("POST", "/portal/api/phone/code", {"phone": "13900139050"})
    code = await sent_code(portal, sms_gateway[0], "13900139050")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1, 0):
        status, body, _ = await client.call(
            "POST", "/portal/api/phone", {"phone": "13900139050", "code": wrong}
        )
        assert (status, body["error"]["details"]["attempts_left"]) == (422, left)
    status, body, _ = await client.call(
        "POST", "/portal/api/phone", {"phone": "13900139050", "code": code}
    )
    assert (status, body["error"]["code"]) == (410, "code_exhausted")


# --- codes --------------------------------------------------------------------------------


async def test_member_qr_and_a_consumption_code_that_redeems(
    portal: Central, browsers: Any
) -> None:
    member = await new_member(portal, "13800138060", balance_fen=1_000)
    client = browsers()
    await client.login("13800138060")
    shown = await client.ok("GET", "/portal/api/member-code")
    expected = member["cards"][0]["member_code"]
    assert shown["member_code"] == expected and expected.startswith("96")
    assert shown["qr"] == segno.make_qr(expected, error="m").svg_data_uri(scale=6, border=4)
    other = expected[:-1] + str((int(expected[-1]) + 1) % 10)
    assert shown["qr"] != segno.make_qr(other, error="m").svg_data_uri(scale=6, border=4)
    issued = await client.ok("POST", "/portal/api/consumption-code")
    assert issued["code"].startswith("97") and issued["expires_in_seconds"] == 600
    assert issued["qr"] == segno.make_qr(issued["code"], error="m").svg_data_uri(scale=6, border=4)
    redeem = {"code": issued["code"], "store": "store-1", "terminal": "pos-1", "amount_fen": 250}
    status, body, _ = await portal.call("POST", "/v1/consumption-codes/redeem", "gw-1", redeem)
    assert status == 200 and body["member"]["id"] == member["id"], body
    assert (await client.ok("GET", "/portal/api/me"))["balance_fen"] == 750


# --- protection ---------------------------------------------------------------------------


async def test_csrf_token_and_origin_are_required_for_changes(
    portal: Central, browsers: Any
) -> None:
    await new_member(portal, "13800138070")
    client = browsers()
    await client.login("13800138070")
    for method, path, body in (
        ("PATCH", "/portal/api/profile", {"name": "X"}),
        ("POST", "/portal/api/consumption-code", None),
        ("POST", "/portal/api/logout", None),
    ):
        status, answer, _ = await client.call(method, path, body, csrf=False)
        assert (status, answer["error"]["code"]) == (403, "csrf_failed")
        status, answer, _ = await client.call(method, path, body, **{"X-CSRF-Token": "forged"})
        assert status == 403
    status, _, _ = await client.call(
        "PATCH", "/portal/api/profile", {"name": "X"}, Origin="http://evil.example"
    )
    assert status == 403
    status, _, _ = await client.call(
        "POST",
        "/portal/api/login",
        {"account": "13800138070", "password": PASSWORD},
        Origin="http://evil.example",
    )
    assert status == 403
    assert (await client.ok("GET", "/portal/api/me"))["name"] == "Li Lei"  # nothing changed
    assert (await client.call("POST", "/portal/api/logout"))[0] == 204
    assert (await client.call("GET", "/portal/api/me"))[0] == 401


async def test_sessions_expire_when_idle_and_with_the_membership(
    portal: Central, clock: ManualClock, browsers: Any
) -> None:
    member = await new_member(portal, "13800138080")
    client = browsers()
    await client.login("13800138080")
    clock.advance(14 * 60)
    assert (await client.call("GET", "/portal/api/me"))[0] == 200
    clock.advance(14 * 60)
    assert (await client.call("GET", "/portal/api/me"))[0] == 200  # idle time restarted
    clock.advance(15 * 60 + 1)
    assert (await client.call("GET", "/portal/api/me"))[0] == 401
    await client.login("13800138080")
    await portal.ok("DELETE", f"/v1/members/{member['id']}")
    assert (await client.call("GET", "/portal/api/me"))[0] == 401
    assert (await browsers().login("13800138080"))[0] == 401


async def test_pages_and_answers_carry_security_headers(portal: Central, browsers: Any) -> None:
    client = browsers()
    async with client.http.get(portal.url + "/portal/", allow_redirects=False) as resp:
        assert (resp.status, resp.headers["Location"]) == (302, "/portal/login")
    for path in ("/portal/login", "/portal/static/common.js", "/portal/api/me"):
        async with client.http.get(portal.url + path) as resp:
            headers = resp.headers
        assert "script-src" not in headers["Content-Security-Policy"]  # 'self' only
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
    pages = list(STATIC.glob("*.html"))
    assert len(pages) == 4
    for page in pages:
        html = page.read_text(encoding="utf-8")
        # No inline script or handler (the CSP would block them) and nothing from elsewhere.
        assert "<script>" not in html and not re.search(r"\son[a-z]+=", html)
        assert "http://" not in html and "https://" not in html


async def test_over_tls_the_session_cookie_is_secure(portal: Central, tmp_path: Path) -> None:
    """Central started with --tls-cert/--tls-key: the same login sets a Secure cookie."""
    await new_member(portal, "13800138090")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    command += f" -addext subjectAltName=IP:127.0.0.1 -keyout {key} -out {cert}"
    subprocess.run(
        command.split(),
        check=True,
        capture_output=True,
    )
    settings = replace(portal.services.settings, tls_cert=str(cert), tls_key=str(key))
    runner = web.AppRunner(build_app(settings, clock=portal.clock))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context(settings))
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"https://127.0.0.1:{port}/portal/api/login",
                json={"account": "13800138090", "password": PASSWORD},
                ssl=False,
            ) as resp:
                assert resp.status == 200
                set_cookie = resp.headers["Set-Cookie"]
    finally:
        await runner.cleanup()
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie


async def test_a_stored_template_words_the_verification_sms(
    portal: Central, browsers: Any, sms_gateway: tuple[FakeSmsGateway, str]
) -> None:
    template = {"text": "【好邻居】验证码{code}，10分钟内有效。"}
    await portal.ok("PUT", "/v1/notifications/templates/portal_phone_code/sms", json=template)
    await new_member(portal, "13800138095")
    client = browsers()
    await client.login("13800138095")
    await client.ok("POST", "/portal/api/phone/code", {"phone": "13900139095"})
    code = await sent_code(portal, sms_gateway[0], "13900139095")
    texts = [m["content"] for m in sms_gateway[0].received if m["mobile"] == "13900139095"]
    assert texts == [f"【好邻居】验证码{code}，10分钟内有效。"]
