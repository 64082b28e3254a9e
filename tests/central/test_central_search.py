"""Member search over real HTTP on both backends, against a known data set: every filter,
keyset pagination, counts, spending kept by orders/refunds/identifications, saved searches,
and exports read back (openpyxl for .xlsx)."""

from __future__ import annotations

import io
import json
from typing import Any

import openpyxl

DAY = 86_400


def cash_order(request_id: str, member: int, amount: int, store: str = "store-1") -> Any:
    return {
        "request_id": request_id,
        "store": store,
        "terminal": "pos-1",
        "member": member,
        "amount_fen": amount,
        "payments": [{"method": "cash", "amount_fen": amount}],
    }


async def dataset(central: Any) -> dict[str, int]:
    """A (spender, store-1), B (identified at store-2), C (dormant), D (deactivated)."""
    await central.ok(
        "POST",
        "/v1/custom-fields",
        json={"entity": "member", "key": "shoe_size", "label": "Shoe", "type": "number",
              "searchable": True},
    )  # fmt: skip
    await central.ok(
        "POST",
        "/v1/custom-fields",
        json={"entity": "member", "key": "secret_note", "label": "Note", "type": "text"},
    )
    a = await central.member(
        name="Li Lei", level="gold", birthday="1990-05-10", gender="male", points=100,
        balance_fen=5000, phone="13900000001", custom={"shoe_size": 42},
    )  # fmt: skip
    b = await central.member(
        name="Li Na", level="silver", birthday="1985-12-01", gender="female",
        custom={"shoe_size": 38},
    )  # fmt: skip
    c = await central.member(name="Wang Wu", gender="male")
    d = await central.member(name="Zhao Liu")
    await central.ok("DELETE", f"/v1/members/{d['id']}")
    central.clock.advance(100 * DAY)
    orders = [
        await central.ok("POST", "/v1/orders", "gw-1", cash_order(f"o-{n}", a["id"], amount))
        for n, amount in ((1, 10_000), (2, 20_000))
    ]
    central.first_order = orders[0]["id"]
    status, body = await central.identify(
        b["cards"][0]["member_code"], key="gw-2", store="store-2", terminal="pos-1"
    )
    assert status == 200, body
    central.clock.advance(10 * DAY)
    return {"A": a["id"], "B": b["id"], "C": c["id"], "D": d["id"]}


async def search(central: Any, **body: Any) -> dict[str, Any]:
    return dict(await central.ok("POST", "/v1/members/search", json=body))


async def names(central: Any, ids: dict[str, int], **filter_: Any) -> set[str]:
    by_id = {v: k for k, v in ids.items()}
    page = await search(central, filter=filter_, limit=500)
    return {by_id[item["id"]] for item in page["items"]}


async def test_every_filter_against_a_known_data_set(central: Any) -> None:
    ids = await dataset(central)
    assert await names(central, ids) == {"A", "B", "C"}  # active by default
    assert await names(central, ids, active=False) == {"D"}
    assert await names(central, ids, active=None) == {"A", "B", "C", "D"}
    assert await names(central, ids, name_prefix="Li ") == {"A", "B"}
    assert await names(central, ids, name_prefix="li") == set()  # case-sensitive on both
    assert await names(central, ids, name_prefix="Li_") == set()  # _ is literal, not a wildcard
    assert await names(central, ids, phone="13900000001") == {"A"}
    assert await names(central, ids, gender="male") == {"A", "C"}
    assert await names(central, ids, level=["gold", "silver"]) == {"A", "B"}
    assert await names(central, ids, points={"min": 101}) == {"A"}  # 100 + earned
    assert await names(central, ids, points={"max": 0}) == {"B", "C"}
    assert await names(central, ids, balance_fen={"min": 1}) == {"A"}
    assert await names(central, ids, visits={"min": 2}) == {"A"}
    assert await names(central, ids, visits={"max": 0}) == {"B", "C"}
    assert await names(central, ids, spent_fen={"min": 30_000, "max": 30_000}) == {"A"}
    assert await names(central, ids, last_visit={"from": "2026-04-11", "to": "2026-04-11"}) == {
        "A",
        "B",
    }
    assert await names(central, ids, last_visit={"to": "2026-04-10"}) == set()
    assert await names(central, ids, not_seen_days=30) == {"C"}
    assert await names(central, ids, not_seen_days=5) == {"A", "B", "C"}
    assert await names(central, ids, home_store="store-1") == {"A"}
    assert await names(central, ids, home_store="store-2") == {"B"}
    assert await names(central, ids, birthday_month=[5, 6]) == {"A"}
    assert await names(central, ids, birthday_month=[12]) == {"B"}
    assert await names(central, ids, created={"from": "2026-01-01", "to": "2026-01-01"}) == {
        "A", "B", "C",
    }  # fmt: skip
    assert await names(central, ids, custom=[{"key": "shoe_size", "min": 40}]) == {"A"}
    assert await names(central, ids, custom=[{"key": "shoe_size", "eq": 38}]) == {"B"}
    assert await names(central, ids, gender="male", custom=[{"key": "shoe_size", "max": 50}]) == {
        "A"
    }
    status, body, _ = await central.call(
        "POST",
        "/v1/members/search",
        json={"filter": {"custom": [{"key": "secret_note", "eq": "x"}]}},
    )
    assert (status, body["error"]["code"]) == (422, "invalid_filter")  # not searchable
    status, body, _ = await central.call(
        "POST",
        "/v1/members/search",
        json={"filter": {"custom": [{"key": "shoe_size", "eq": "42"}]}},
    )
    assert (status, body["error"]["code"]) == (422, "invalid_custom_field")
    status, _, _ = await central.call("POST", "/v1/members/search", "gw-1", {})
    assert status == 403  # HQ only


async def test_spending_follows_refunds_and_rows_show_it(central: Any) -> None:
    ids = await dataset(central)
    page = await search(central, filter={"visits": {"min": 1}})
    [row] = page["items"]
    assert (row["id"], row["visits"], row["spent_fen"], row["home_store"]) == (
        ids["A"], 2, 30_000, "store-1",
    )  # fmt: skip
    assert row["last_visit_at"] == "2026-04-11T00:00:00.000Z"
    assert row["custom"] == {"shoe_size": 42, "secret_note": None}
    first = central.first_order
    refund = {"request_id": "r-1", "store": "store-1", "terminal": "pos-1", "amount_fen": 4_000}
    await central.ok("POST", f"/v1/orders/{first}/refunds", "gw-1", refund)
    [row] = (await search(central, filter={"visits": {"min": 1}}))["items"]
    assert (row["visits"], row["spent_fen"]) == (2, 26_000)


async def test_keyset_pages_walk_every_match_once_in_order(central: Any) -> None:
    for n in range(7):
        await central.ok("POST", "/v1/members", json={"name": f"M{n}", "points": (n * 37) % 5})
    seen: list[tuple[int, int]] = []
    cursor = None
    while True:
        body: dict[str, Any] = {"sort": "-points", "limit": 3, "count": True}
        if cursor:
            body["cursor"] = cursor
        page = await search(central, **body)
        assert page["total"] == 7 and page["total_capped"] is False
        seen += [(item["points"], item["id"]) for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 and len(set(seen)) == 7
    assert seen == sorted(seen, key=lambda p: (-p[0], -p[1]))
    status, body, _ = await central.call("POST", "/v1/members/search", json={"cursor": "nope"})
    assert (status, body["error"]["code"]) == (422, "invalid_cursor")


async def test_saved_searches_and_exports(central: Any) -> None:
    ids = await dataset(central)
    saved = await central.ok(
        "POST",
        "/v1/saved-searches",
        json={"name": "dormant", "query": {"filter": {"not_seen_days": 30}}},
    )
    status, body, _ = await central.call(
        "POST", "/v1/saved-searches", json={"name": "dormant", "query": {}}
    )
    assert (status, body["error"]["code"]) == (409, "name_taken")
    listed = await central.ok("GET", "/v1/saved-searches")
    assert [s["name"] for s in listed["items"]] == ["dormant"]
    results = await central.ok("GET", f"/v1/saved-searches/{saved['id']}/results")
    assert [item["id"] for item in results["items"]] == [ids["C"]]
    # xlsx of the saved search: a real workbook with the header and C's row.
    async with central.http.get(
        central.url + f"/v1/saved-searches/{saved['id']}/results?format=xlsx",
        headers={"Authorization": f"Bearer {central.admin_key}"},
    ) as resp:
        assert resp.status == 200
        assert "attachment" in resp.headers["Content-Disposition"]
        data = await resp.read()
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("id", "name", "phone") and rows[0][-1] == "custom.secret_note"
    assert [r[:2] for r in rows[1:]] == [(ids["C"], "Wang Wu")]
    # JSON export of a search: every match, not one page.
    async with central.http.post(
        central.url + "/v1/members/search?format=json",
        json={"filter": {"active": None}, "limit": 1},
        headers={"Authorization": f"Bearer {central.admin_key}"},
    ) as resp:
        exported = json.loads(await resp.read())
    assert sorted(item["id"] for item in exported["items"]) == sorted(ids.values())
    status, _, _ = await central.call("POST", "/v1/members/search?format=pdf", json={})
    assert status == 422
    await central.ok("DELETE", f"/v1/saved-searches/{saved['id']}")
    status, _, _ = await central.call("GET", f"/v1/saved-searches/{saved['id']}")
    assert status == 404


async def test_a_formula_in_a_name_stays_text_in_excel(central: Any) -> None:
    await central.ok("POST", "/v1/members", json={"name": '=HYPERLINK("http://x")'})
    async with central.http.post(
        central.url + "/v1/members/search?format=xlsx",
        json={},
        headers={"Authorization": f"Bearer {central.admin_key}"},
    ) as resp:
        data = await resp.read()
    cell = openpyxl.load_workbook(io.BytesIO(data)).active.cell(row=2, column=2)
    assert cell.value == '=HYPERLINK("http://x")' and cell.data_type == "s"
