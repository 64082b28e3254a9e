"""Catalog, pricing rules and ``POST /v1/orders/quote`` over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from gatewayd.central.api import SERVICES
from gatewayd.central.app import build_app
from gatewayd.central.testing import start_app

D = Decimal


async def _catalog(central: Any) -> None:
    """A bakery and a clothing category, three products, a gold level."""
    await central.ok("PUT", "/v1/catalog/categories/bakery", json={"name": "Bakery"})
    await central.ok("PUT", "/v1/catalog/categories/clothing", json={"name": "Clothing"})
    for pid, name, category, price in (
        ("bread", "Rye bread", "bakery", 1000),
        ("cake", "Cheesecake", "bakery", 3000),
        ("socks", "Socks", "clothing", 2500),
    ):
        await central.ok(
            "PUT",
            f"/v1/catalog/products/{pid}",
            json={"name": name, "category": category, "price_fen": price},
        )
    await central.ok(
        "PUT", "/v1/pricing/levels/gold", json={"name": "金卡", "discount": "0.95", "points": 1.5}
    )


async def _rule(central: Any, **body: Any) -> dict[str, Any]:
    status, answer, _ = await central.call("POST", "/v1/pricing/rules", json=body)
    assert status == 201, answer
    return dict(answer)


async def _quote(central: Any, key: str = "gw-1", **body: Any) -> tuple[int, Any]:
    body.setdefault("store", "store-1")
    status, answer, _ = await central.call("POST", "/v1/orders/quote", key, body)
    return status, answer


async def test_quote_explains_every_factor(central: Any) -> None:
    await _catalog(central)
    gold = await central.ok(
        "POST", "/v1/members", json={"name": "Wang", "level": "gold", "birthday": "1990-01-01"}
    )
    store = await _rule(central, kind="store", name="double", store="store-1", points=2)
    bakery = await _rule(central, kind="category", name="bakery day", category="bakery",
                         discount="0.9")  # fmt: skip
    birthday = await _rule(central, kind="birthday", name="bday", birthday_window="day",
                           points=3)  # fmt: skip
    order = await _rule(
        central,
        kind="order_amount",
        name="100-900",
        min_fen=10000,
        max_fen=90000,
        extra_discount_percent=5,
        extra_points_percent=10,
    )
    assert (order["discount"], order["points"]) == ("0.95", "1.1")
    # The test clock starts at 2026-01-01T00:00Z, 08:00 on 1 January in Shanghai: a birthday.
    status, got = await _quote(
        central,
        member=gold["id"],
        terminal="pos-1",
        lines=[{"product": "bread", "quantity": "1.5"}, {"product": "socks", "quantity": 4}],
    )
    assert status == 200, got
    assert (got["member"], got["level"], got["list_fen"]) == (gold["id"], "gold", 11500)
    bread, socks = got["lines"]
    assert [(f["kind"], f["rule_id"]) for f in bread["factors"]] == [
        ("level", None),
        ("category", bakery["id"]),
        ("birthday", birthday["id"]),
        ("store", store["id"]),
        ("order_amount", order["id"]),
    ]
    assert bread["name"] == "Rye bread" and bread["quantity"] == "1.5"
    assert D(bread["discount_factor"]) == D("0.95") * D("0.9") * D("0.95")
    assert D(bread["points_factor"]) == D("1.5") * 3 * 2 * D("1.1")
    assert bread["list_fen"] == 1500 and bread["price_fen"] == 1218  # 1500 × 0.81225 = 1218.375
    assert bread["points"] == 120  # floor(12.18 × 9.9) = floor(120.582)
    assert socks["price_fen"] == 9025 and socks["points"] == 893  # 10000 × 0.9025; 90.25 × 9.9
    assert got["total_fen"] == 1218 + 9025 and got["points"] == 120 + 893
    assert got["order_factors"][0]["rule_id"] == order["id"]
    assert "extra discount 5 %" in got["order_factors"][0]["reason"]


async def test_quick_spend_walk_ins_and_the_instant_priced(central: Any) -> None:
    await _catalog(central)
    member = await central.ok("POST", "/v1/members", json={"name": "Li", "level": "gold"})
    await _rule(central, kind="time_slot", name="new year", slot="yearly", date="01-01",
                discount="0.8", members_only=False)  # fmt: skip
    status, got = await _quote(central, amount_fen=10000, member=member["id"])
    assert status == 200, got
    assert got["lines"][0]["product"] is None and got["total_fen"] == 7600  # 0.95 × 0.8
    assert got["points"] == 114 and got["at_ms"] == 1_767_225_600_000
    status, walk_in = await _quote(central, amount_fen=10000)
    assert (walk_in["total_fen"], walk_in["points"], walk_in["level"]) == (8000, 0, None)
    next_day = 1_767_225_600_000 + 86_400_000
    status, later = await _quote(central, amount_fen=10000, at_ms=next_day)
    assert later["total_fen"] == 10000 and later["lines"][0]["factors"] == []


async def test_quote_errors_are_clear(central: Any) -> None:
    await _catalog(central)
    member = await central.ok("POST", "/v1/members", json={"name": "Zhao"})
    cases = [
        ({"lines": [{"product": "nope"}]}, 404, "product_not_found"),
        ({"store": "store-9", "amount_fen": 1}, 403, "other_store"),
        ({"amount_fen": 1, "member": 999_999}, 404, "member_not_found"),
        ({"amount_fen": 1, "terminal": "pos-9"}, 422, "unknown_terminal"),
        ({"lines": []}, 422, "invalid_request"),
        ({"amount_fen": 1, "lines": [{"product": "bread"}]}, 422, "invalid_request"),
        ({"lines": [{"product": "bread", "quantity": -1}]}, 422, "invalid_request"),
        ({"lines": [{"product": "bread", "unit_price_fen": 1.5}]}, 422, "invalid_request"),
    ]
    for body, status, code in cases:
        got_status, got = await _quote(central, **body)
        assert (got_status, got["error"]["code"]) == (status, code), body
    status, got = await _quote(central, "admin", store="store-9", amount_fen=1)
    assert (status, got["error"]["code"]) == (404, "store_not_found")
    await central.ok(
        "PUT", "/v1/catalog/products/cake", json={"name": "Cake", "price_fen": 1, "active": False}
    )
    status, got = await _quote(central, lines=[{"product": "cake"}])
    assert (status, got["error"]["code"]) == (409, "product_inactive")
    await central.ok("DELETE", f"/v1/members/{member['id']}")
    status, got = await _quote(central, amount_fen=1, member=member["id"])
    assert (status, got["error"]["code"]) == (409, "member_inactive")


async def test_authorisation(central: Any) -> None:
    await _catalog(central)
    writes = [
        ("PUT", "/v1/catalog/categories/x", {"name": "X"}),
        ("PUT", "/v1/catalog/products/x", {"name": "X", "price_fen": 1}),
        ("PUT", "/v1/pricing/levels/x", {"name": "X"}),
        ("PUT", "/v1/stores/store-1/pricing", {"timezone": "Asia/Urumqi"}),
        ("POST", "/v1/pricing/rules", {"kind": "store", "name": "x", "store": "store-1"}),
        ("GET", "/v1/pricing/rules", None),
    ]
    for method, path, body in writes:
        status, got, _ = await central.call(method, path, "gw-1", body)
        assert (status, got["error"]["code"]) == (403, "admin_only"), path
        status, got, _ = await central.call(method, path, None, body)
        assert status == 401, path
    for path in ("/v1/catalog/products", "/v1/catalog/categories", "/v1/pricing/levels"):
        status, got, _ = await central.call("GET", path, "gw-2")
        assert status == 200 and got["items"], path
    status, got, _ = await central.call("GET", "/v1/stores/store-1/pricing", "gw-2")
    assert (status, got["error"]["code"]) == (403, "other_store")
    status, got, _ = await central.call("POST", "/v1/orders/quote", None, {"store": "store-1"})
    assert status == 401


async def test_rules_are_validated_per_kind(central: Any) -> None:
    await _catalog(central)
    bad = [
        ({"kind": "product", "name": "x"}, 422, "needs product"),
        ({"kind": "product", "name": "x", "product": "bread", "slot": "weekly"}, 422, "slot"),
        ({"kind": "time_slot", "name": "x", "slot": "weekly", "days": [8]}, 422, "weekdays"),
        ({"kind": "time_slot", "name": "x", "slot": "yearly", "date": "13-01"}, 422, "MM-DD"),
        ({"kind": "time_slot", "name": "x", "slot": "date", "date": "2026-02-30"}, 422, "YYYY"),
        (
            {
                "kind": "time_slot",
                "name": "x",
                "slot": "weekly",
                "days": [1],
                "from_time": "18:00",
                "until_time": "09:00",
            },
            422,
            "before",
        ),
        ({"kind": "order_amount", "name": "x", "min_fen": 1, "discount": 0.9}, 422, "discount"),
        ({"kind": "order_amount", "name": "x", "min_fen": 9, "max_fen": 1}, 422, "below"),
        (
            {"kind": "birthday", "name": "x", "birthday_window": "day", "members_only": False},
            422,
            "members only",
        ),
        ({"kind": "store", "name": "x", "store": "store-1", "discount": 11}, 422, "discount"),
        ({"kind": "store", "name": "x", "store": "store-1", "points": "1.00001"}, 422, "points"),
        ({"kind": "product", "name": "x", "product": "nope"}, 404, "no product nope"),
        ({"kind": "store", "name": "x", "store": "store-9"}, 404, "no store store-9"),
        ({"kind": "level", "name": "x", "level": "g" * 33}, 422, "level"),
    ]
    for body, status, words in bad:
        got_status, got, _ = await central.call("POST", "/v1/pricing/rules", json=body)
        assert got_status == status and words in got["error"]["message"], (body, got)
    assert (await central.ok("GET", "/v1/pricing/rules"))["items"] == []
    status, got, _ = await central.call(
        "PUT", "/v1/stores/store-1/pricing", json={"timezone": "Mars/Olympus"}
    )
    assert status == 422 and "IANA" in got["error"]["message"]
    status, got, _ = await central.call("PUT", "/v1/pricing/levels/" + "g" * 33, json={"name": "G"})
    assert status == 422 and "32 characters" in got["error"]["message"]


async def test_rule_lifecycle_applies_at_once(central: Any) -> None:
    await _catalog(central)
    rule = await _rule(central, kind="product", name="socks", product="socks", discount="0.5",
                       members_only=False)  # fmt: skip
    assert (await _quote(central, lines=[{"product": "socks"}]))[1]["total_fen"] == 1250
    body = {"kind": "product", "name": "socks", "product": "socks", "discount": "0.8",
            "members_only": False}  # fmt: skip
    replaced = await central.ok("PUT", f"/v1/pricing/rules/{rule['id']}", json=body)
    assert replaced["discount"] == "0.8" and replaced["created_at"] == rule["created_at"]
    assert (await _quote(central, lines=[{"product": "socks"}]))[1]["total_fen"] == 2000
    gone = await central.ok("DELETE", f"/v1/pricing/rules/{rule['id']}")
    assert gone["active"] is False
    assert (await _quote(central, lines=[{"product": "socks"}]))[1]["total_fen"] == 2500
    assert (await central.ok("GET", f"/v1/pricing/rules/{rule['id']}"))["active"] is False
    status, got, _ = await central.call("DELETE", "/v1/pricing/rules/424242")
    assert (status, got["error"]["code"]) == (404, "rule_not_found")
    await _rule(central, kind="store", name="s2", store="store-2", points=2)
    listed = await central.ok("GET", "/v1/pricing/rules?store=store-2")
    assert [r["name"] for r in listed["items"]] == ["s2"]
    listed = await central.ok("GET", "/v1/pricing/rules?kind=product")
    assert [r["id"] for r in listed["items"]] == [rule["id"]]
    status, _, _ = await central.call("GET", "/v1/pricing/rules?kind=bogus")
    assert status == 422


async def test_store_time_zone_moves_time_slots(central: Any) -> None:
    await _catalog(central)
    await _rule(central, kind="time_slot", name="morning", slot="weekly", days=[4],
                from_time="07:00", until_time="09:00", discount="0.5",
                members_only=False)  # fmt: skip
    # 2026-01-01T00:00Z: 08:00 Thursday in Shanghai (the default), 00:00 in London.
    assert (await _quote(central, amount_fen=1000))[1]["total_fen"] == 500
    settings = await central.ok(
        "PUT", "/v1/stores/store-1/pricing", json={"timezone": "Europe/London"}
    )
    assert settings["timezone"] == "Europe/London"
    assert (await _quote(central, amount_fen=1000))[1]["total_fen"] == 1000
    read = await central.ok("GET", "/v1/stores/store-1/pricing", "gw-1")
    assert read["timezone"] == "Europe/London"
    default = await central.ok("GET", "/v1/stores/store-2/pricing", "gw-2")
    assert (default["timezone"], default["updated_at"]) == ("Asia/Shanghai", None)


async def test_catalog_reads_and_updates(central: Any) -> None:
    await _catalog(central)
    bakery = await central.ok("GET", "/v1/catalog/products?category=bakery", "gw-1")
    assert [p["id"] for p in bakery["items"]] == ["bread", "cake"]
    changed = await central.ok(
        "PUT", "/v1/catalog/products/bread", json={"name": "Rye", "price_fen": 1200, "unit": "kg"}
    )
    assert (changed["price_fen"], changed["unit"], changed["category"]) == (1200, "kg", None)
    status, got = await _quote(central, lines=[{"product": "bread", "quantity": "0.5"}])
    assert got["lines"][0]["list_fen"] == 600
    status, got = await _quote(
        central, lines=[{"product": "bread", "quantity": 2, "unit_price_fen": 999}]
    )
    assert got["lines"][0]["list_fen"] == 1998
    status, got, _ = await central.call(
        "PUT", "/v1/catalog/products/x", json={"name": "X", "price_fen": 1, "category": "nope"}
    )
    assert (status, got["error"]["code"]) == (404, "category_not_found")
    levels = await central.ok("GET", "/v1/pricing/levels", "gw-1")
    assert levels["items"][0] == {
        "level": "gold",
        "name": "金卡",
        "discount": "0.95",
        "points": "1.5",
        "updated_at": levels["items"][0]["updated_at"],
    }
    document = await central.ok("GET", "/openapi.json", None)
    assert "/v1/orders/quote" in document["paths"] and "/v1/pricing/rules" in document["paths"]


async def test_a_change_through_one_process_prices_at_once_in_another(
    central: Any, db_url: str
) -> None:
    """Two applications on one database stand for two worker processes."""
    await _catalog(central)
    other_app = build_app(central.services.settings, clock=central.clock)
    runner, other_url = await start_app(other_app)
    try:
        other = type(central)(
            url=other_url,
            app=other_app,
            clock=central.clock,
            http=central.http,
            admin_key=central.admin_key,
            gateway_keys=central.gateway_keys,
        )
        assert other_app[SERVICES].catalog is not central.services.catalog
        assert (await _quote(other, amount_fen=1000))[1]["total_fen"] == 1000  # cached now
        rule = await _rule(central, kind="store", name="half", store="store-1", discount="0.5",
                           members_only=False)  # fmt: skip
        assert (await _quote(other, amount_fen=1000))[1]["total_fen"] == 500
        await central.ok("DELETE", f"/v1/pricing/rules/{rule['id']}")
        assert (await _quote(other, amount_fen=1000))[1]["total_fen"] == 1000
    finally:
        await runner.cleanup()


async def test_concurrent_puts_of_one_new_product_all_succeed(central: Any) -> None:
    async def put(price: int) -> int:
        body = {"name": "New", "price_fen": price}
        status, _, _ = await central.call("PUT", "/v1/catalog/products/new", json=body)
        return status

    statuses = await asyncio.gather(*(put(100 + n) for n in range(8)))
    assert statuses == [200] * 8
    listed = await central.ok("GET", "/v1/catalog/products")
    assert [p["id"] for p in listed["items"]] == ["new"]
    assert 100 <= listed["items"][0]["price_fen"] < 108
