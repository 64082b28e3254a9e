"""The member portal in headless Chromium (Debian's, driven by Playwright) against a real
central on a socket, on a phone-sized screen. Screenshots of every page are kept under
tests/artifacts/screenshots/ (the chosen ones are copied to docs/screenshots/portal-*.png).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import segno
from playwright.async_api import Page, expect

from gatewayd.central.clock import ManualClock
from tests.central.conftest import Central
from tests.central.test_central_portal import (
    PASSWORD,
    Member,
    member_custom_fields,
    new_member,
    order,
    sent_code,
    start_portal_central,
)
from tests.central.test_central_senders import FakeSmsGateway
from tests.support.browser import page as browser_page
from tests.support.browser import screenshot

pytest_plugins = ["tests.central.test_central_senders"]
PHONE_SCREEN = {"width": 390, "height": 844}


@pytest.fixture
def backend() -> str:
    """The pages do not depend on the database: SQLite only (the API tests run both)."""
    return "sqlite"


@pytest.fixture
async def portal(
    db_url: str, clock: ManualClock, tmp_path: Path, sms_gateway: tuple[FakeSmsGateway, str]
) -> AsyncIterator[Central]:
    running, stop = await start_portal_central(db_url, clock, tmp_path, sms_gateway[1])
    yield running
    await stop()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with browser_page(**PHONE_SCREEN) as opened:
        yield opened


async def sign_in(page: Page, central: Central, account: str, password: str = PASSWORD) -> None:
    await page.goto(central.url + "/portal/login")
    await page.fill("#account", account)
    await page.fill("#password", password)
    await page.click("#login button")


async def attribute_change(page: Page, selector: str, name: str, old: str | None) -> str:
    """Poll from Python (the page's timers are under the fake clock) until it changes."""
    for _ in range(100):
        value = await page.get_attribute(selector, name)
        if value and value != old:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{selector} [{name}] stayed {old!r}")


async def test_sign_in_by_card_and_phone_and_the_account_page(portal: Central, page: Page) -> None:
    member = await new_member(portal, "13800138100", balance_fen=20_000, points=10)
    placed = await portal.ok("POST", "/v1/orders", "gw-1", order("b-1", member["id"], 10_000))
    await page.goto(portal.url + "/portal/")
    await expect(page).to_have_url(re.compile(r"/portal/login$"))
    await screenshot(page, "portal-login")
    await sign_in(page, portal, member["cards"][0]["number"], "not-the-password")
    await expect(page.locator("#message")).to_have_text(re.compile("卡号/手机号或密码错误"))
    await screenshot(page, "portal-login-error")
    await sign_in(page, portal, member["cards"][0]["number"])
    await expect(page).to_have_url(re.compile(r"/portal/$"))
    await expect(page.locator("#who")).to_have_text("Li Lei")
    await expect(page.locator("#points")).to_have_text(str(10 + placed["points_earned"]))
    await expect(page.locator("#balance")).to_have_text("¥200.00")
    await expect(page.locator("#orders li")).to_have_count(1)
    await expect(page.locator("#orders li")).to_contain_text("¥100.00")
    await expect(page.locator("#orders li")).to_contain_text("Store-1")
    rows = page.locator("#ledger tr")
    await expect(rows.first).to_be_visible()
    assert await rows.count() >= 3  # opening points and stored value, points earned
    await expect(page.locator("#ledger")).to_contain_text("+200.00")
    await screenshot(page, "portal-account")
    await page.click("#logout")
    await expect(page).to_have_url(re.compile(r"/portal/login$"))
    await page.goto(portal.url + "/portal/")
    await expect(page).to_have_url(re.compile(r"/portal/login$"))
    await sign_in(page, portal, "138 0013 8100")
    await expect(page.locator("#points")).to_have_text(str(10 + placed["points_earned"]))


async def test_repeated_failures_lock_the_login(portal: Central, page: Page) -> None:
    member = await new_member(portal, "13800138110")
    for _ in range(5):
        await sign_in(page, portal, "13800138110", "wrong-wrong")
        await expect(page.locator("#message")).to_have_text(re.compile("密码错误"))
    await sign_in(page, portal, member["cards"][0]["number"])
    await expect(page.locator("#message")).to_have_text(re.compile("尝试次数过多"))
    await expect(page).to_have_url(re.compile(r"/portal/login$"))


async def test_codes_page_refreshes_the_consumption_code_every_minute(
    portal: Central, page: Page
) -> None:
    member = await new_member(portal, "13800138120", balance_fen=5_000)
    await page.clock.install()
    await sign_in(page, portal, "13800138120")
    await expect(page).to_have_url(re.compile(r"/portal/$"))
    await page.goto(portal.url + "/portal/codes")
    member_code = member["cards"][0]["member_code"]
    await expect(page.locator("#member-code")).to_have_text(member_code)
    expected_qr = segno.make_qr(member_code, error="m").svg_data_uri(scale=6, border=4)
    assert await page.get_attribute("#member-qr", "src") == expected_qr
    first = await attribute_change(page, "#code", "data-code", None)
    assert first.startswith("97") and len(first) == 22
    code_qr = segno.make_qr(first, error="m").svg_data_uri(scale=6, border=4)
    assert await page.get_attribute("#code-qr", "src") == code_qr
    await expect(page.locator("#countdown")).to_have_text(re.compile(r"^(10:00|9:5\d)$"))
    await screenshot(page, "portal-codes")
    await page.clock.run_for(30_000)
    assert await page.get_attribute("#code", "data-code") == first  # not yet
    await expect(page.locator("#countdown")).to_have_text(re.compile(r"^9:[23]\d$"))
    await page.clock.run_for(31_000)
    second = await attribute_change(page, "#code", "data-code", first)
    assert second.startswith("97")
    # On demand too.
    await page.click("#refresh-code")
    third = await attribute_change(page, "#code", "data-code", second)
    # Nothing is kept in the browser's storage.
    stored = await page.evaluate("localStorage.length + sessionStorage.length")
    assert stored == 0
    # The code on screen pays at a till; the older ones stay valid for their 10 minutes.
    for code, fen in ((third, 1_000), (first, 500)):
        redeem = {"code": code, "store": "store-1", "terminal": "pos-1", "amount_fen": fen}
        status, body, _ = await portal.call("POST", "/v1/consumption-codes/redeem", "gw-1", redeem)
        assert status == 200 and body["member"]["id"] == member["id"], body
    assert body["balance_fen"] == 3_500


async def test_profile_phone_and_password_changes(
    portal: Central, page: Page, sms_gateway: tuple[FakeSmsGateway, str]
) -> None:
    member = await new_member(portal, "13800138130")
    await sign_in(page, portal, "13800138130")
    await expect(page).to_have_url(re.compile(r"/portal/$"))
    await page.click("text=资料")
    await expect(page).to_have_url(re.compile(r"/portal/profile$"))
    await expect(page.locator("#name")).to_have_value("Li Lei")
    await page.fill("#name", "韩梅梅")
    await page.select_option("#gender", "female")
    await page.fill("#birthday", "1990-05-04")
    await page.fill("#address", "上海市黄浦区南京东路1号")
    await page.fill("#email", "mei@example.com")
    await page.click("#profile button[type=submit]")
    await expect(page.locator("#profile-message")).to_have_text(re.compile("已保存"))
    stored = await portal.ok("GET", f"/v1/members/{member['id']}")
    assert (stored["name"], stored["gender"], stored["birthday"]) == (
        "韩梅梅",
        "female",
        "1990-05-04",
    )
    assert stored["address"] == "上海市黄浦区南京东路1号" and stored["email"] == "mei@example.com"

    await page.fill("#new-phone", "13900139130")
    await page.click("#send-code")
    await expect(page.locator("#phone-message")).to_have_text(re.compile("139\\*\\*\\*\\*9130"))
    code = await sent_code(portal, sms_gateway[0], "13900139130")
    await page.fill("#sms-code", code)
    await page.click("#phone-form button[type=submit]")
    await expect(page.locator("#phone-message")).to_have_text(re.compile("手机号已更换"))
    await expect(page.locator("#phone-now")).to_have_text("13900139130")
    assert (await portal.ok("GET", f"/v1/members/{member['id']}"))["phone"] == "13900139130"

    await page.fill("#current-password", "not-it")
    await page.fill("#new-password", "brand-new-pw")
    await page.fill("#new-password-again", "brand-new-pw")
    await page.click("#password-form button[type=submit]")
    await expect(page.locator("#password-message")).to_have_text(re.compile("当前密码错误"))
    await page.fill("#current-password", PASSWORD)
    await page.fill("#new-password", "brand-new-pw")
    await page.fill("#new-password-again", "brand-new-pw")
    await page.click("#password-form button[type=submit]")
    await expect(page.locator("#password-message")).to_have_text(re.compile("密码已修改"))
    await screenshot(page, "portal-profile")
    # This browser stays signed in with its new session (and its new CSRF token works).
    await page.fill("#address", "北京市")
    await page.click("#profile button[type=submit]")
    await expect(page.locator("#profile-message")).to_have_text(re.compile("已保存"))
    client = Member(portal)
    try:
        assert (await client.login("13900139130"))[0] == 401
        assert (await client.login("13900139130", "brand-new-pw"))[0] == 200
    finally:
        await client.close()
    await page.goto(portal.url + "/portal/")
    await expect(page.locator("#who")).to_have_text("韩梅梅")


async def test_profile_shows_custom_fields_and_edits_the_member_editable_ones(
    portal: Central, page: Page
) -> None:
    await member_custom_fields(portal)
    member = await new_member(portal, "13800138135", custom={"vip_tier": "gold"})
    await sign_in(page, portal, "13800138135")
    await expect(page).to_have_url(re.compile(r"/portal/$"))
    await page.goto(portal.url + "/portal/profile")
    box = page.locator("#custom-fields")
    await expect(box).to_be_visible()
    await expect(box.locator("label")).to_have_text(
        [re.compile("^鞋码"), re.compile(r"^饮食 \*"), re.compile("^VIP.*set by the store")]
    )
    await expect(page.locator("#custom-shoe_size")).to_be_editable()
    await expect(page.locator("#custom-diet")).to_have_value("none")  # the default
    await expect(page.locator("#custom-vip_tier")).to_have_value("gold")
    await expect(page.locator("#custom-vip_tier")).to_be_disabled()
    await page.fill("#custom-shoe_size", "39.5")
    await page.select_option("#custom-diet", "vegetarian")
    await page.click("#profile button[type=submit]")
    await expect(page.locator("#profile-message")).to_have_text(re.compile("已保存"))
    stored = await portal.ok("GET", f"/v1/members/{member['id']}")
    assert stored["custom"] == {"shoe_size": 39.5, "diet": "vegetarian", "vip_tier": "gold"}
    await screenshot(page, "portal-profile-custom")
    # Clearing a required field is refused with the server's reason, and nothing is lost.
    await page.select_option("#custom-diet", "")
    await page.fill("#address", "不会保存")
    await page.click("#profile button[type=submit]")
    await expect(page.locator("#profile-message")).to_have_text(re.compile("custom.diet: required"))
    after = await portal.ok("GET", f"/v1/members/{member['id']}")
    assert after["custom"] == stored["custom"] and after["address"] is None
    # After a reload the page shows what was stored.
    await page.reload()
    await expect(page.locator("#custom-shoe_size")).to_have_value("39.5")
    await expect(page.locator("#custom-diet")).to_have_value("vegetarian")


async def test_another_member_sees_only_their_own_account(portal: Central, page: Page) -> None:
    alice = await new_member(portal, "13800138140", balance_fen=1_234)
    bob = await new_member(portal, "13800138141", balance_fen=99_900, name="Bob")
    await portal.ok("POST", "/v1/orders", "gw-1", order("b-9", alice["id"], 777))
    await sign_in(page, portal, "13800138141")
    await expect(page.locator("#who")).to_have_text("Bob")
    await expect(page.locator("#balance")).to_have_text("¥999.00")
    await expect(page.locator("#orders-empty")).to_be_visible()
    await page.goto(portal.url + "/portal/codes")
    await expect(page.locator("#member-code")).to_have_text(bob["cards"][0]["member_code"])
    # The page's session is no key to the admin API.
    answer: Any = await page.evaluate(
        "async (id) => (await fetch(`/v1/members/${id}`)).status", alice["id"]
    )
    assert answer == 401
