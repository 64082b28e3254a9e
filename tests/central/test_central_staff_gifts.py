"""Staff and gift registries over real HTTP on both backends: CRUD with custom values
(defaults, required fields, typed errors, refused writes storing nothing) and who may do
what (admin keys write; gateways read gifts only)."""

from __future__ import annotations

from typing import Any

from tests.central.conftest import Central


async def define(central: Central, **body: Any) -> dict[str, Any]:
    body.setdefault("label", body["key"].title())
    return dict(await central.ok("POST", "/v1/custom-fields", json=body))


async def staff_fields(central: Central) -> None:
    await define(central, entity="staff", key="employee_no", type="text", required=True)
    await define(central, entity="staff", key="commission_pct", type="number", default=5)
    await define(central, entity="staff", key="hired", type="date")


async def gift_fields(central: Central) -> None:
    await define(central, entity="gift", key="supplier", type="text")
    await define(
        central, entity="gift", key="size", type="choice", choices=["S", "M", "L"], default="M"
    )
    await define(central, entity="gift", key="fragile", type="boolean", required=True)


def cashier(**extra: Any) -> dict[str, Any]:
    return {"store": "store-1", "name": "Wang Fang", "role": "cashier", **extra}


async def test_staff_crud_with_custom_values(central: Central) -> None:
    await staff_fields(central)
    created = await central.ok(
        "POST", "/v1/staff", json=cashier(custom={"employee_no": "E-001", "hired": "2024-09-01"})
    )
    assert created["store"] == "store-1" and created["role"] == "cashier" and created["active"]
    assert created["custom"] == {"employee_no": "E-001", "commission_pct": 5, "hired": "2024-09-01"}
    sid = created["id"]
    assert await central.ok("GET", f"/v1/staff/{sid}") == created
    changed = await central.ok(
        "PATCH",
        f"/v1/staff/{sid}",
        json={"store": "store-2", "role": "manager", "custom": {"commission_pct": 7.5}},
    )
    assert (changed["store"], changed["role"], changed["name"]) == (
        "store-2",
        "manager",
        "Wang Fang",
    )
    assert changed["custom"] == {
        "employee_no": "E-001",
        "commission_pct": 7.5,
        "hired": "2024-09-01",
    }
    cleared = await central.ok("PATCH", f"/v1/staff/{sid}", json={"custom": {"hired": None}})
    assert cleared["custom"]["hired"] is None
    other = await central.ok("POST", "/v1/staff", json=cashier(custom={"employee_no": "E-002"}))
    gone = await central.ok("DELETE", f"/v1/staff/{sid}")
    assert gone["active"] is False and gone["custom"]["employee_no"] == "E-001"
    listed = await central.ok("GET", "/v1/staff")
    assert [s["id"] for s in listed["items"]] == [sid, other["id"]]
    assert listed["items"][1]["custom"]["employee_no"] == "E-002"
    active = await central.ok("GET", "/v1/staff?active=true")
    assert [s["id"] for s in active["items"]] == [other["id"]]
    at_two = await central.ok("GET", "/v1/staff?store=store-2&active=false")
    assert [s["id"] for s in at_two["items"]] == [sid]
    # The generic values endpoint sees the same rows now that staff have a registry.
    via = await central.ok(
        "PATCH", f"/v1/custom-values/staff/{other['id']}", json={"custom": {"hired": "2025-01-02"}}
    )
    assert via["custom"]["hired"] == "2025-01-02"
    assert (await central.ok("GET", f"/v1/staff/{other['id']}"))["custom"] == via["custom"]


async def test_staff_writes_are_validated_and_refused_ones_store_nothing(central: Central) -> None:
    await staff_fields(central)
    cases = [
        (cashier(), 422, "custom_field_required"),
        (cashier(custom={"employee_no": 1}), 422, "invalid_custom_field"),
        (cashier(custom={"employee_no": "E", "commission_pct": "5"}), 422, "invalid_custom_field"),
        (cashier(custom={"employee_no": "E", "hired": "09/01/2024"}), 422, "invalid_custom_field"),
        (cashier(custom={"employee_no": "E", "badge": "x"}), 422, "unknown_custom_field"),
        (cashier(role="Head Cashier", custom={"employee_no": "E"}), 422, "invalid_request"),
        (cashier(store="nowhere", custom={"employee_no": "E"}), 404, "store_not_found"),
    ]
    for body, status, code in cases:
        got, answer, _ = await central.call("POST", "/v1/staff", json=body)
        assert (got, answer["error"]["code"]) == (status, code), body
    status, body, _ = await central.call(
        "POST", "/v1/staff", json=cashier(custom={"employee_no": "E", "hired": 3})
    )
    assert "custom.hired" in body["error"]["message"]
    assert (await central.ok("GET", "/v1/staff"))["items"] == []
    staff = await central.ok("POST", "/v1/staff", json=cashier(custom={"employee_no": "E-9"}))
    for patch, code in (
        ({"name": "Changed", "custom": {"employee_no": None}}, "custom_field_required"),
        ({"name": "Changed", "custom": {"commission_pct": True}}, "invalid_custom_field"),
        ({"name": None}, "invalid_request"),
        ({"active": None}, "invalid_request"),
    ):
        status, body, _ = await central.call("PATCH", f"/v1/staff/{staff['id']}", json=patch)
        assert (status, body["error"]["code"]) == (422, code), patch
    assert await central.ok("GET", f"/v1/staff/{staff['id']}") == staff  # nothing changed
    status, body, _ = await central.call(
        "PATCH", f"/v1/staff/{staff['id']}", json={"store": "nowhere"}
    )
    assert (status, body["error"]["code"]) == (404, "store_not_found")
    for method in ("GET", "PATCH", "DELETE"):
        body = {"name": "X"} if method == "PATCH" else None
        status, answer, _ = await central.call(method, "/v1/staff/999", json=body)
        assert (status, answer["error"]["code"]) == (404, "staff_not_found"), method
    status, _, _ = await central.call("PATCH", "/v1/custom-values/staff/999", json={"custom": {}})
    assert status == 404


async def test_gift_crud_with_custom_values(central: Central) -> None:
    await gift_fields(central)
    mug = await central.ok(
        "POST",
        "/v1/gifts",
        json={"name": "Mug", "points_cost": 500, "stock": 20, "custom": {"fragile": True}},
    )
    assert (mug["points_cost"], mug["stock"], mug["active"]) == (500, 20, True)
    assert mug["custom"] == {"supplier": None, "size": "M", "fragile": True}
    bag = await central.ok(
        "POST",
        "/v1/gifts",
        json={"name": "Bag", "points_cost": 800, "custom": {"fragile": False, "size": "L"}},
    )
    assert bag["stock"] == 0
    changed = await central.ok(
        "PATCH",
        f"/v1/gifts/{mug['id']}",
        json={"stock": 19, "custom": {"supplier": "Kiln Ltd", "size": None}},
    )
    assert changed["stock"] == 19 and changed["points_cost"] == 500
    assert changed["custom"] == {"supplier": "Kiln Ltd", "size": None, "fragile": True}
    await central.ok("DELETE", f"/v1/gifts/{bag['id']}")
    # Any key reads gifts (a till shows what points buy).
    listed = await central.ok("GET", "/v1/gifts", "gw-1")
    assert [(g["name"], g["active"]) for g in listed["items"]] == [("Mug", True), ("Bag", False)]
    assert listed["items"][0]["custom"] == changed["custom"]
    active = await central.ok("GET", "/v1/gifts?active=true", "gw-2")
    assert [g["name"] for g in active["items"]] == ["Mug"]
    assert await central.ok("GET", f"/v1/gifts/{mug['id']}", "gw-1") == changed
    status, body, _ = await central.call("GET", "/v1/gifts?active=yes")
    assert (status, body["error"]["code"]) == (422, "invalid_request")


async def test_gift_writes_are_validated(central: Central) -> None:
    await gift_fields(central)
    cases = [
        ({"name": "Mug", "points_cost": 10}, "custom_field_required"),
        ({"name": "Mug", "points_cost": 10, "custom": {"fragile": "yes"}}, "invalid_custom_field"),
        ({"name": "Mug", "points_cost": 10, "custom": {"fragile": True, "size": "XL"}},
         "invalid_custom_field"),
        ({"name": "Mug", "points_cost": -1, "custom": {"fragile": True}}, "invalid_request"),
        ({"name": "Mug", "points_cost": 1.5, "custom": {"fragile": True}}, "invalid_request"),
        ({"name": "", "points_cost": 1, "custom": {"fragile": True}}, "invalid_request"),
    ]  # fmt: skip
    for body, code in cases:
        status, answer, _ = await central.call("POST", "/v1/gifts", json=body)
        assert (status, answer["error"]["code"]) == (422, code), body
    assert (await central.ok("GET", "/v1/gifts"))["items"] == []
    mug = await central.ok(
        "POST", "/v1/gifts", json={"name": "Mug", "points_cost": 5, "custom": {"fragile": True}}
    )
    status, answer, _ = await central.call(
        "PATCH", f"/v1/gifts/{mug['id']}", json={"stock": 3, "custom": {"fragile": None}}
    )
    assert (status, answer["error"]["code"]) == (422, "custom_field_required")
    assert (await central.ok("GET", f"/v1/gifts/{mug['id']}"))["stock"] == 0
    status, answer, _ = await central.call("GET", "/v1/gifts/424242")
    assert (status, answer["error"]["code"]) == (404, "gift_not_found")


async def test_gateway_keys_cannot_write_staff_or_gifts_nor_read_staff(central: Central) -> None:
    await staff_fields(central)
    staff = await central.ok("POST", "/v1/staff", json=cashier(custom={"employee_no": "E-1"}))
    gift = await central.ok("POST", "/v1/gifts", json={"name": "Pen", "points_cost": 50})
    refused = [
        ("POST", "/v1/staff", cashier(custom={"employee_no": "E-2"})),
        ("GET", "/v1/staff", None),
        ("GET", f"/v1/staff/{staff['id']}", None),
        ("PATCH", f"/v1/staff/{staff['id']}", {"name": "X"}),
        ("DELETE", f"/v1/staff/{staff['id']}", None),
        ("POST", "/v1/gifts", {"name": "Cap", "points_cost": 1}),
        ("PATCH", f"/v1/gifts/{gift['id']}", {"stock": 99}),
        ("DELETE", f"/v1/gifts/{gift['id']}", None),
        ("PATCH", f"/v1/custom-values/staff/{staff['id']}", {"custom": {"employee_no": "Z"}}),
        ("PATCH", f"/v1/custom-values/gift/{gift['id']}", {"custom": {}}),
    ]
    for method, path, body in refused:
        status, answer, _ = await central.call(method, path, "gw-1", body)
        assert (status, answer["error"]["code"]) == (403, "admin_only"), (method, path, answer)
    for method, path, _ in refused:
        status, _, _ = await central.call(method, path, None)
        assert status == 401, (method, path)
    assert await central.ok("GET", f"/v1/staff/{staff['id']}") == staff
    assert await central.ok("GET", f"/v1/gifts/{gift['id']}") == gift
    assert len((await central.ok("GET", "/v1/staff"))["items"]) == 1
    assert len((await central.ok("GET", "/v1/gifts"))["items"]) == 1


async def test_member_editable_is_for_member_fields_only(central: Central) -> None:
    status, body, _ = await central.call(
        "POST",
        "/v1/custom-fields",
        json={"entity": "staff", "key": "x", "label": "X", "type": "text", "member_editable": True},
    )
    assert status == 422 and "member_editable" in body["error"]["message"]
