"""Levels and upgrade rules: seed 004's table, cumulative earned points, deductions, admin
checks (real HTTP, both backends)."""

from __future__ import annotations

from typing import Any

from gatewayd.central import ledger

# Seed 004: 升级前级别 / 累积消费积分 / 升级后级别 / 扣除积分
SEED_TABLE = (
    ("gold", 100, "diamond", 0),
    ("silver", 100, "gold", 0),
    ("default", 100, "silver", 0),
)
LEVELS = (("default", "默认级别", 0), ("silver", "银卡会员", 1), ("gold", "金卡会员", 2))


async def define(central: Any, table: Any = SEED_TABLE) -> None:
    for code, name, rank in (*LEVELS, ("diamond", "钻卡会员", 3)):
        await central.ok(
            "PUT", "/v1/programme/levels", json={"code": code, "name": name, "rank": rank}
        )
    for before, points, after, deduct in table:
        await central.ok(
            "POST",
            "/v1/programme/upgrade-rules",
            json={
                "from_level": before,
                "to_level": after,
                "min_earned_points": points,
                "deduct_points": deduct,
            },
        )


async def spend(central: Any, member: int, request_id: str, fen: int) -> Any:
    body = {
        "request_id": request_id,
        "store": "store-1",
        "terminal": "pos-1",
        "member": member,
        "amount_fen": fen,
        "payments": [{"method": "cash", "amount_fen": fen}],
    }
    return await central.ok("POST", "/v1/orders", "gw-1", body)


async def test_seed_table_default_to_silver_at_100_points_deduct_0(central: Any) -> None:
    await define(central, SEED_TABLE[2:])
    member = (await central.member())["id"]
    first = await spend(central, member, "a", 9_999)
    assert first["points_earned"] == 99 and first["upgrades"] == []
    second = await spend(central, member, "b", 100)
    assert second["upgrades"] == [
        {"from_level": "default", "to_level": "silver", "earned_points": 100, "deducted_points": 0}
    ]
    assert second["balances"]["points"] == 100  # deduct 0
    assert (await central.ok("GET", f"/v1/members/{member}"))["level"] == "silver"


async def test_the_full_seed_table_climbs_every_rule_the_total_satisfies(central: Any) -> None:
    """Thresholds are cumulative totals: with seed 004's 100/100/100, 100 points reach 钻卡."""
    await define(central)
    member = (await central.member())["id"]
    body = await spend(central, member, "all", 10_000)
    assert [u["to_level"] for u in body["upgrades"]] == ["silver", "gold", "diamond"]
    listed = await central.ok("GET", "/v1/programme/levels", "gw-1")
    assert [level["code"] for level in listed["items"]] == ["default", "silver", "gold", "diamond"]
    rules = await central.ok("GET", "/v1/programme/upgrade-rules", "gw-1")
    assert len(rules["items"]) == 3


async def test_deduction_and_refunds_follow_earned_points_not_the_balance(central: Any) -> None:
    await define(central, [("default", 200, "silver", 150)])
    member = (await central.member(points=1_000))["id"]
    # A large points balance from elsewhere does not count: only earned points do.
    assert (await spend(central, member, "x", 100))["upgrades"] == []
    order = await spend(central, member, "y", 19_900)
    assert order["upgrades"][0]["deducted_points"] == 150
    assert order["balances"] == {
        "points": 1_000 + 200 - 150,
        "balance_fen": 0,
        "earned_points": 200,
    }
    refund = {"request_id": "y-r", "store": "store-1", "terminal": "pos-1", "amount_fen": 19_900}
    back = await central.ok("POST", f"/v1/orders/{order['id']}/refunds", "gw-1", refund)
    assert back["balances"]["earned_points"] == 1 and back["points_revoked"] == 199
    assert await ledger.verify(central.services.db) == []


async def test_rule_validation_and_admin_only(central: Any) -> None:
    await define(central, [])
    status, body, _ = await central.call(
        "POST",
        "/v1/programme/upgrade-rules",
        json={"from_level": "default", "to_level": "platinum", "min_earned_points": 1},
    )
    assert (status, body["error"]["code"]) == (404, "level_not_found")
    status, body, _ = await central.call(
        "POST",
        "/v1/programme/upgrade-rules",
        json={"from_level": "gold", "to_level": "gold", "min_earned_points": 1},
    )
    assert (status, body["error"]["code"]) == (409, "invalid_rule")
    rule = {"from_level": "default", "to_level": "silver", "min_earned_points": 5}
    created = await central.ok("POST", "/v1/programme/upgrade-rules", json=rule)
    status, body, _ = await central.call("POST", "/v1/programme/upgrade-rules", json=rule)
    assert (status, body["error"]["code"]) == (409, "rule_exists")
    status, _, _ = await central.call("POST", "/v1/programme/upgrade-rules", "gw-1", rule)
    assert status == 403
    status, _, _ = await central.call(
        "PUT", "/v1/programme/levels", "gw-1", {"code": "x", "name": "x", "rank": 9}
    )
    assert status == 403
    status, _, _ = await central.call("DELETE", f"/v1/programme/upgrade-rules/{created['id']}")
    assert status == 204
    status, _, _ = await central.call("DELETE", f"/v1/programme/upgrade-rules/{created['id']}")
    assert status == 404
    settings = await central.ok("PATCH", "/v1/programme/settings", json={"fen_per_point": 2})
    assert settings == {"fen_per_point": 2, "earn_on_points_payment": False}
    status, _, _ = await central.call(
        "PATCH", "/v1/programme/settings", "gw-1", {"fen_per_point": 3}
    )
    assert status == 403
