"""Custom fields over real HTTP on both backends: definitions, typed validation on every
member write, defaults, required fields, choices, items, and the pure validator."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gatewayd.central.custom_fields import Definition, coerce
from gatewayd.central.errors import Invalid


async def define(central: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("entity", "member")
    body.setdefault("label", body["key"].title())
    return dict(await central.ok("POST", "/v1/custom-fields", json=body))


async def member_fields(central: Any) -> None:
    await define(central, key="shoe_size", type="number", searchable=True)
    await define(central, key="vip_note", type="text")
    await define(
        central, key="channel", type="choice", choices=["shop", "wechat", "web"], default="shop"
    )
    await define(central, key="joined", type="date")
    await define(central, key="newsletter", type="boolean", required=True, default=False)


async def test_values_are_typed_defaulted_and_shown_with_the_member(central: Any) -> None:
    await member_fields(central)
    created = await central.ok(
        "POST",
        "/v1/members",
        json={"name": "Han Mei", "custom": {"shoe_size": 38.5, "joined": "2025-03-01"}},
    )
    assert created["custom"] == {
        "shoe_size": 38.5,
        "vip_note": None,
        "channel": "shop",  # default
        "joined": "2025-03-01",
        "newsletter": False,  # required, defaulted
    }
    mid = created["id"]
    updated = await central.ok(
        "PATCH", f"/v1/members/{mid}", json={"custom": {"vip_note": "likes rye", "shoe_size": 39}}
    )
    assert updated["custom"]["vip_note"] == "likes rye"
    assert updated["custom"]["shoe_size"] == 39
    assert updated["custom"]["channel"] == "shop"  # untouched by PATCH
    cleared = await central.ok("PATCH", f"/v1/members/{mid}", json={"custom": {"vip_note": None}})
    assert cleared["custom"]["vip_note"] is None
    again = await central.ok("GET", f"/v1/members/{mid}")
    assert again["custom"] == cleared["custom"]
    via_values = await central.ok("GET", f"/v1/custom-values/member/{mid}")
    assert via_values["custom"] == cleared["custom"]


async def test_every_write_rejects_bad_values_and_stores_nothing(central: Any) -> None:
    await member_fields(central)
    cases = [
        ({"shoe_size": "38"}, "invalid_custom_field"),  # a string is not a number
        ({"newsletter": 1}, "invalid_custom_field"),  # 1 is not true
        ({"channel": "fax"}, "invalid_custom_field"),  # not a choice
        ({"joined": "2025-02-30"}, "invalid_custom_field"),
        ({"joined": "01/03/2025"}, "invalid_custom_field"),
        ({"newsletter": None}, "custom_field_required"),
        ({"colour": "red"}, "unknown_custom_field"),
    ]
    for custom, code in cases:
        status, body, _ = await central.call(
            "POST", "/v1/members", json={"name": "Bad", "phone": "13800000001", "custom": custom}
        )
        assert (status, body["error"]["code"]) == (422, code), custom
    # Nothing was created by any refused write: the phone is still free.
    member = await central.ok("POST", "/v1/members", json={"name": "Ok", "phone": "13800000001"})
    for custom, code in cases:
        status, body, _ = await central.call(
            "PATCH", f"/v1/members/{member['id']}", json={"name": "Changed", "custom": custom}
        )
        assert (status, body["error"]["code"]) == (422, code), custom
    unchanged = await central.ok("GET", f"/v1/members/{member['id']}")
    assert unchanged["name"] == "Ok"  # the refused PATCH rolled back its other fields too


async def test_required_without_default_is_enforced_on_create(central: Any) -> None:
    await define(central, key="branch_code", type="text", required=True)
    status, body, _ = await central.call("POST", "/v1/members", json={"name": "No code"})
    assert (status, body["error"]["code"]) == (422, "custom_field_required")
    ok = await central.ok(
        "POST", "/v1/members", json={"name": "Coded", "custom": {"branch_code": "A1"}}
    )
    assert ok["custom"] == {"branch_code": "A1"}


async def test_definitions_are_checked_and_managed_by_hq(central: Any) -> None:
    bad = [
        {"entity": "member", "key": "x", "label": "X", "type": "choice"},  # no choices
        {"entity": "member", "key": "x", "label": "X", "type": "text", "choices": ["a"]},
        {"entity": "member", "key": "x", "label": "X", "type": "number", "default": "5"},
        {"entity": "member", "key": "x", "label": "X", "type": "choice", "choices": ["a", "a"]},
        {"entity": "member", "key": "Bad-Key", "label": "X", "type": "text"},
        {"entity": "shop", "key": "x", "label": "X", "type": "text"},
    ]
    for body in bad:
        status, answer, _ = await central.call("POST", "/v1/custom-fields", json=body)
        assert status == 422, (body, answer)
    field = await define(central, key="tier", type="choice", choices=["a", "b"])
    status, answer, _ = await central.call(
        "POST",
        "/v1/custom-fields",
        json={"entity": "member", "key": "tier", "label": "T", "type": "text"},
    )
    assert (status, answer["error"]["code"]) == (409, "field_taken")
    status, _, _ = await central.call(
        "POST",
        "/v1/custom-fields",
        "gw-1",
        {"entity": "member", "key": "y", "label": "Y", "type": "text"},
    )
    assert status == 403  # gateways cannot define fields
    changed = await central.ok(
        "PATCH",
        f"/v1/custom-fields/{field['id']}",
        json={"choices": ["a", "b", "c"], "label": "Tier"},
    )
    assert changed["choices"] == ["a", "b", "c"] and changed["label"] == "Tier"
    for nulled in ({"active": None}, {"label": None}, {"required": None}):
        status, _, _ = await central.call("PATCH", f"/v1/custom-fields/{field['id']}", json=nulled)
        assert status == 422, nulled
    member = await central.ok("POST", "/v1/members", json={"name": "T", "custom": {"tier": "c"}})
    assert member["custom"]["tier"] == "c"
    # A deactivated field disappears from members and is refused on writes.
    await central.ok("PATCH", f"/v1/custom-fields/{field['id']}", json={"active": False})
    assert (await central.ok("GET", f"/v1/members/{member['id']}"))["custom"] == {}
    listed = await central.ok("GET", "/v1/custom-fields?entity=member")
    assert [f["key"] for f in listed["items"]] == ["tier"]


async def test_item_values_need_the_item_and_an_admin(central: Any) -> None:
    await central.ok("PUT", "/v1/catalog/categories/bakery", json={"name": "Bakery"})
    await central.ok(
        "PUT",
        "/v1/catalog/products/rye",
        json={"name": "Rye", "category": "bakery", "price_fen": 1200},
    )
    await define(central, entity="item", key="allergen", type="choice", choices=["gluten", "nuts"])
    got = await central.ok(
        "PATCH", "/v1/custom-values/item/rye", json={"custom": {"allergen": "gluten"}}
    )
    assert got["custom"] == {"allergen": "gluten"}
    status, body, _ = await central.call(
        "PATCH", "/v1/custom-values/item/rye", json={"custom": {"allergen": "milk"}}
    )
    assert (status, body["error"]["code"]) == (422, "invalid_custom_field")
    status, _, _ = await central.call("PATCH", "/v1/custom-values/item/nope", json={"custom": {}})
    assert status == 404
    status, _, _ = await central.call(
        "PATCH", "/v1/custom-values/item/rye", "gw-1", {"custom": {"allergen": "nuts"}}
    )
    assert status == 403
    # Staff and gifts have registries now (test_central_staff_gifts.py): ids are row numbers.
    for path in ("/v1/custom-values/staff/s1", "/v1/custom-values/gift/99999999999999"):
        status, body, _ = await central.call("PATCH", path, json={"custom": {}})
        assert status == 404, body


async def test_member_editable_flag_defaults_off_and_is_changed_by_hq(central: Any) -> None:
    plain = await define(central, key="nickname", type="text")
    assert plain["member_editable"] is False
    field = await define(central, key="diet", type="choice", choices=["veg"], member_editable=True)
    assert field["member_editable"] is True
    changed = await central.ok(
        "PATCH", f"/v1/custom-fields/{plain['id']}", json={"member_editable": True}
    )
    assert changed["member_editable"] is True and changed["label"] == "Nickname"
    status, _, _ = await central.call(
        "PATCH", f"/v1/custom-fields/{plain['id']}", json={"member_editable": None}
    )
    assert status == 422
    status, _, _ = await central.call(
        "PATCH", f"/v1/custom-fields/{plain['id']}", "gw-1", {"member_editable": False}
    )
    assert status == 403
    listed = await central.ok("GET", "/v1/custom-fields?entity=member")
    assert [f["member_editable"] for f in listed["items"]] == [True, True]
    item = await define(central, entity="item", key="origin", type="text")
    status, body, _ = await central.call(
        "PATCH", f"/v1/custom-fields/{item['id']}", json={"member_editable": True}
    )
    assert status == 422 and "member fields" in body["error"]["message"]


NUMBER = Definition(
    id=1, entity="member", key="n", label="N", type="number", required=False,
    searchable=True, default=None, choices=(), active=True,
)  # fmt: skip
DATE = Definition(
    id=2, entity="member", key="d", label="D", type="date", required=False,
    searchable=True, default=None, choices=(), active=True,
)  # fmt: skip

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30)
)


@given(json_scalars)
def test_coerce_accepts_exactly_its_type(value: Any) -> None:
    for field in (NUMBER, DATE):
        try:
            result = coerce(field, value)
        except Invalid:
            if field is NUMBER:
                assert isinstance(value, (str, bool)) or value != value or abs(value) > 1e15
            continue
        if value is None:
            assert result is None
        elif field is NUMBER:
            assert isinstance(value, (int, float)) and not isinstance(value, bool)
            assert result == value
        else:
            assert isinstance(value, str) and len(value) == 10 and value[4] == "-"
