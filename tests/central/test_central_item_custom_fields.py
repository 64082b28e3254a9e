"""Custom item fields on the catalog's own product endpoints, over real HTTP on both
backends: required fields refused on create, defaults, typed errors naming the field, PUT
replacing only the values sent, lists, and who may write."""

from __future__ import annotations

from typing import Any

from gatewayd.central.custom_fields import READ_BATCH
from gatewayd.central.models_catalog import catalog_products
from gatewayd.central.models_members_ext import custom_values
from tests.central.conftest import Central

PRODUCTS = "/v1/catalog/products"


async def define(central: Central, **body: Any) -> dict[str, Any]:
    body.setdefault("entity", "item")
    body.setdefault("label", body["key"].title())
    return dict(await central.ok("POST", "/v1/custom-fields", json=body))


async def item_fields(central: Central) -> None:
    await central.ok("PUT", "/v1/catalog/categories/bakery", json={"name": "Bakery"})
    await define(central, key="supplier", type="text", required=True)
    await define(central, key="weight_g", type="number")
    await define(central, key="allergen", type="choice", choices=["gluten", "nuts", "none"])
    await define(central, key="organic", type="boolean", required=True, default=False)
    await define(central, key="launch", type="date")


def product(name: str = "Rye", **custom: Any) -> dict[str, Any]:
    return {"name": name, "category": "bakery", "price_fen": 1200, "custom": custom}


async def test_a_required_item_field_is_refused_on_create_and_nothing_is_stored(
    central: Central,
) -> None:
    await item_fields(central)
    before = await central.ok("GET", PRODUCTS)
    status, body, _ = await central.call("PUT", f"{PRODUCTS}/rye", json=product())
    assert (status, body["error"]["code"]) == (422, "custom_field_required")
    assert "custom.supplier" in body["error"]["message"]
    status, body, _ = await central.call("GET", f"{PRODUCTS}/rye")
    assert (status, body["error"]["code"]) == (404, "product_not_found")
    assert await central.ok("GET", PRODUCTS) == before
    # Without any custom at all it is refused just the same (a till that knows no fields).
    bare = {"name": "Rye", "price_fen": 1200}
    status, body, _ = await central.call("PUT", f"{PRODUCTS}/rye", json=bare)
    assert (status, body["error"]["code"]) == (422, "custom_field_required")


async def test_defaults_apply_on_create_and_values_are_read_back(central: Central) -> None:
    await item_fields(central)
    created = await central.ok(
        "PUT", f"{PRODUCTS}/rye", json=product(supplier="Mill & Co", weight_g=750)
    )
    expected = {
        "supplier": "Mill & Co",
        "weight_g": 750,
        "allergen": None,
        "organic": False,  # required, defaulted
        "launch": None,
    }
    assert created["custom"] == expected
    assert (await central.ok("GET", f"{PRODUCTS}/rye"))["custom"] == expected
    assert (await central.ok("GET", "/v1/custom-values/item/rye"))["custom"] == expected
    # A till (gateway key) reads them with the product.
    assert (await central.ok("GET", f"{PRODUCTS}/rye", "gw-1"))["custom"] == expected


async def test_wrong_types_answer_422_naming_the_field(central: Central) -> None:
    await item_fields(central)
    cases = [
        ({"supplier": "A", "weight_g": "750"}, "invalid_custom_field", "custom.weight_g"),
        ({"supplier": "A", "organic": 1}, "invalid_custom_field", "custom.organic"),
        ({"supplier": "A", "allergen": "milk"}, "invalid_custom_field", "custom.allergen"),
        ({"supplier": "A", "launch": "2026-02-30"}, "invalid_custom_field", "custom.launch"),
        ({"supplier": 7}, "invalid_custom_field", "custom.supplier"),
        ({"supplier": "A", "colour": "red"}, "unknown_custom_field", "colour"),
    ]
    for custom, code, named in cases:
        status, body, _ = await central.call("PUT", f"{PRODUCTS}/rye", json=product(**custom))
        assert (status, body["error"]["code"]) == (422, code), custom
        assert named in body["error"]["message"], body
    status, _, _ = await central.call("GET", f"{PRODUCTS}/rye")
    assert status == 404


async def test_replacing_a_product_changes_only_the_values_sent(central: Central) -> None:
    await item_fields(central)
    await central.ok(
        "PUT", f"{PRODUCTS}/rye", json=product(supplier="Mill", weight_g=750, allergen="gluten")
    )
    # A PUT without custom (a till's price sync) keeps every value.
    renamed = await central.ok(
        "PUT", f"{PRODUCTS}/rye", json={"name": "Rye loaf", "category": "bakery", "price_fen": 1300}
    )
    assert renamed["name"] == "Rye loaf" and renamed["price_fen"] == 1300
    assert renamed["custom"]["supplier"] == "Mill" and renamed["custom"]["allergen"] == "gluten"
    changed = await central.ok(
        "PUT", f"{PRODUCTS}/rye", json=product("Rye loaf", weight_g=800.5, allergen=None)
    )
    assert changed["custom"] == {
        "supplier": "Mill",
        "weight_g": 800.5,
        "allergen": None,  # null cleared it
        "organic": False,
        "launch": None,
    }
    # Null for a required field is refused, and the refused PUT changed nothing at all.
    status, body, _ = await central.call(
        "PUT", f"{PRODUCTS}/rye", json=product("Renamed again", supplier=None)
    )
    assert (status, body["error"]["code"]) == (422, "custom_field_required")
    after = await central.ok("GET", f"{PRODUCTS}/rye")
    assert after["name"] == "Rye loaf" and after["custom"] == changed["custom"]


async def test_lists_carry_each_products_values(central: Central) -> None:
    await item_fields(central)
    await central.ok("PUT", "/v1/catalog/categories/drinks", json={"name": "Drinks"})
    await central.ok("PUT", f"{PRODUCTS}/rye", json=product(supplier="Mill", weight_g=750))
    await central.ok("PUT", f"{PRODUCTS}/spelt", json=product("Spelt", supplier="Farm"))
    tea = {"name": "Tea", "category": "drinks", "price_fen": 800, "custom": {"supplier": "Leaf"}}
    await central.ok("PUT", f"{PRODUCTS}/tea", json=tea)
    listed = await central.ok("GET", PRODUCTS, "gw-1")
    by_id = {p["id"]: p["custom"] for p in listed["items"]}
    assert by_id["rye"]["weight_g"] == 750 and by_id["spelt"]["weight_g"] is None
    assert {k: v["supplier"] for k, v in by_id.items()} == {
        "rye": "Mill",
        "spelt": "Farm",
        "tea": "Leaf",
    }
    bakery = await central.ok("GET", f"{PRODUCTS}?category=bakery")
    assert [p["id"] for p in bakery["items"]] == ["rye", "spelt"]
    assert bakery["items"][1]["custom"]["supplier"] == "Farm"


async def test_without_item_fields_products_carry_an_empty_custom(central: Central) -> None:
    created = await central.ok("PUT", f"{PRODUCTS}/plain", json={"name": "Plain", "price_fen": 100})
    assert created["custom"] == {}
    status, body, _ = await central.call(
        "PUT", f"{PRODUCTS}/plain", json={"name": "Plain", "price_fen": 100, "custom": {"x": 1}}
    )
    assert (status, body["error"]["code"]) == (422, "unknown_custom_field")


async def test_gateways_cannot_write_products_or_their_values(central: Central) -> None:
    await item_fields(central)
    status, _, _ = await central.call("PUT", f"{PRODUCTS}/rye", "gw-1", product(supplier="Sneaky"))
    assert status == 403
    status, _, _ = await central.call("GET", f"{PRODUCTS}/rye")
    assert status == 404


async def test_a_long_list_reads_every_products_values_in_batches(central: Central) -> None:
    shelf = await define(central, key="shelf", type="number")
    count = READ_BATCH * 2 + 34  # three IN (...) batches, the last one partial
    ids = [f"p{i:05d}" for i in range(count)]
    # Loaded in bulk (as a catalog import would), then read back over HTTP.
    async with central.services.db.write() as conn:
        await conn.execute(
            catalog_products.insert(),
            [
                {"id": pid, "name": pid, "category_id": None, "price_fen": 100, "unit": "piece",
                 "active": True, "updated_at": 0}
                for pid in ids
            ],
        )  # fmt: skip
        await conn.execute(
            custom_values.insert(),
            [
                {"entity": "item", "entity_id": pid, "field_id": shelf["id"], "value_number": n}
                for n, pid in enumerate(ids)
                if n % 7  # every seventh product has no value
            ],
        )
    listed = (await central.ok("GET", PRODUCTS))["items"]
    assert [p["id"] for p in listed] == ids
    assert [p["custom"]["shelf"] for p in listed] == [n if n % 7 else None for n in range(count)]
