"""Reports over real HTTP on both backends, their sums checked against the orders and the
ledger; the Excel export read back; the report page rendered in headless Chromium."""

from __future__ import annotations

import io
from typing import Any

import openpyxl
from playwright.async_api import expect

from gatewayd.central.admin_users import add_admin_user
from tests.support.browser import page as browser_page
from tests.support.browser import screenshot

PASSWORD = "correct horse battery"


def order(request_id: str, store: str, member: int | None, **body: Any) -> dict[str, Any]:
    return {"request_id": request_id, "store": store, "terminal": "pos-1", "member": member,
            **body}  # fmt: skip


async def trade(central: Any) -> dict[str, Any]:
    """Recharge at store-1, spend stored value at store-2, cash at both, a refund, an item."""
    await central.ok("PUT", "/v1/catalog/categories/bakery", json={"name": "Bakery"})
    await central.ok(
        "PUT", "/v1/catalog/products/rye", json={"name": "Rye", "category": "bakery",
                                                 "price_fen": 1200},
    )  # fmt: skip
    m = await central.ok(
        "POST", "/v1/members", json={"name": "Li", "level": "gold", "password": "pass-word-1"}
    )
    await central.ok("POST", "/v1/members", json={"name": "Wu", "gender": "male"})
    await central.ok(
        "POST",
        "/v1/recharges",
        "gw-1",
        {"request_id": "rc-1", "store": "store-1", "terminal": "pos-1", "member": m["id"],
         "amount_fen": 10_000, "method": "cash"},
    )  # fmt: skip
    sv = {"method": "stored_value", "amount_fen": 3_000, "password": "pass-word-1"}
    await central.ok(
        "POST", "/v1/orders", "gw-2",
        order("o-1", "store-2", m["id"], amount_fen=3_000, payments=[sv]),
    )  # fmt: skip
    cash = await central.ok(
        "POST", "/v1/orders", "gw-1",
        order("o-2", "store-1", m["id"], amount_fen=5_000,
              payments=[{"method": "cash", "amount_fen": 5_000}]),
    )  # fmt: skip
    await central.ok(
        "POST", "/v1/orders", "gw-2",
        order("o-3", "store-2", None, lines=[{"product": "rye", "quantity": 2}],
              payments=[{"method": "cash", "amount_fen": 2_400}]),
    )  # fmt: skip
    await central.ok(
        "POST", f"/v1/orders/{cash['id']}/refunds", "gw-1",
        {"request_id": "rf-1", "store": "store-1", "terminal": "pos-1", "amount_fen": 1_000},
    )  # fmt: skip
    return dict(m)


def table(report: dict[str, Any], title: str) -> list[list[Any]]:
    [found] = [t for t in report["tables"] if t["title"] == title]
    return list(found["rows"])


async def test_sales_recharges_and_settlement_add_up_to_the_ledger(central: Any) -> None:
    member = await trade(central)
    sales = await central.ok("GET", "/v1/reports/sales?from=2026-01-01&to=2026-01-01")
    stores = {row[0]: row[1:] for row in table(sales, "Sales per store")}
    assert stores == {"store-1": [1, 5_000, 1_000, 4_000], "store-2": [2, 5_400, 0, 5_400]}
    assert table(sales, "Net sales per day") == [["2026-01-01", 9_400]]
    only = await central.ok("GET", "/v1/reports/sales?from=2026-01-01&to=2026-01-01&store=store-2")
    assert [row[0] for row in only["tables"][0]["rows"]] == ["store-2"]
    recharges = await central.ok("GET", "/v1/reports/recharges?from=2026-01-01&to=2026-01-01")
    assert table(recharges, "Recharges per store and day") == [["store-1", "2026-01-01", 1, 10_000]]
    liability = dict(map(tuple, table(recharges, "Stored-value liability per store (all time)")))
    ledger = await central.ok("GET", f"/v1/members/{member['id']}/ledger")
    assert sum(liability.values()) == ledger["balances"]["balance_fen"] == 7_000
    assert liability == {"store-1": 10_000, "store-2": -3_000}
    settle = await central.ok("GET", "/v1/reports/settlement?from=2026-01-01&to=2026-01-01")
    rows = {r[0]: r[1:] for r in table(settle, "Stored-value settlement")}
    assert rows == {"store-1": [10_000, 0, 10_000], "store-2": [0, 3_000, -3_000]}
    theirs = await central.ok("GET", "/v1/ledger/settlement")
    for item in theirs["items"]:
        if item["account"] == "stored_value":
            assert rows[item["store"]][:2] == [item["credit"], item["debit"]]
    items = await central.ok("GET", "/v1/reports/items?from=2026-01-01&to=2026-01-01")
    assert table(items, "Items sold") == [["rye", "Rye", 2.0, 2_400, 1]]


async def test_member_reports_and_excel_export(central: Any) -> None:
    await trade(central)
    report = await central.ok("GET", "/v1/reports/members")
    assert [r[:2] for r in table(report, "Members by level")] == [["default", 1], ["gold", 1]]
    assert table(report, "Members by gender") == [["male", 1], ["unknown", 1]]
    assert table(report, "New members per day") == [["2026-01-01", 2]]
    behaviour = await central.ok("GET", "/v1/reports/behaviour")
    assert table(behaviour, "Members by visits") == [["0", 1, 0], ["2-5", 1, 7_000]]
    assert table(behaviour, "Top spenders")[0][1:4] == ["Li", 2, 7_000]
    async with central.http.get(
        central.url + "/v1/reports/members?format=xlsx",
        headers={"Authorization": f"Bearer {central.admin_key}"},
    ) as resp:
        assert resp.status == 200
        workbook = openpyxl.load_workbook(io.BytesIO(await resp.read()))
    assert workbook.sheetnames == ["Members by level", "Members by gender", "New members per day"]
    rows = list(workbook["Members by gender"].iter_rows(values_only=True))
    assert rows == [("gender", "members"), ("male", 1), ("unknown", 1)]
    for bad in ("/v1/reports/nope", "/v1/reports/sales?from=2026-02-01&to=2026-01-01",
                "/v1/reports/sales?from=yesterday", "/v1/reports/sales?format=pdf"):  # fmt: skip
        status, _, _ = await central.call("GET", bad)
        assert status in (404, 422), bad
    status, _, _ = await central.call("GET", "/v1/reports/sales", "gw-1")
    assert status == 403


async def test_report_page_draws_charts_in_chromium(central: Any) -> None:
    await trade(central)
    await add_admin_user(central.services.db, central.clock, "boss", PASSWORD)
    async with browser_page() as page:
        await page.goto(central.url + "/reports/")
        await expect(page).to_have_url(central.url + "/dashboard/login")
        await page.fill("#name", "boss")
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(central.url + "/dashboard/")
        await page.goto(central.url + "/reports/?report=sales&from=2026-01-01&to=2026-01-01")
        await expect(page.locator("body")).to_have_attribute("data-loaded", "sales")
        await expect(page.locator("svg[data-chart=bar] rect")).to_have_count(2)
        await expect(page.locator("svg[data-chart=pie] [data-slice]")).to_have_count(2)
        await expect(page.locator("svg[data-chart=line] circle")).to_have_count(1)
        await expect(page.locator("#tables table").first).to_contain_text("store-2")
        await screenshot(page, "reports-sales")
        await page.select_option("#f-report", "recharges")
        await page.click("button[type=submit]")
        await expect(page.locator("body")).to_have_attribute("data-loaded", "recharges")
        await expect(page.locator("svg[data-chart=ring]")).to_have_count(1)
        await page.select_option("#f-report", "members")
        await page.click("button[type=submit]")
        await expect(page.locator("body")).to_have_attribute("data-loaded", "members")
        await expect(page.locator("svg[data-chart=pie] [data-slice]")).to_have_count(2)
        await screenshot(page, "reports-members")
