"""Authentication and authorisation: no key, bad key, another store's key, an admin key."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from gatewayd.central.auth import hash_key
from gatewayd.central.models import api_keys


class _AnyId(dict[str, str]):
    """Path parameters for any operation: ids that exist in the fixture's chain, or 1."""

    def __missing__(self, key: str) -> str:
        return {"store_id": "store-1", "gateway_id": "gw-1", "entity": "member"}.get(key, "1")


# Sign-in flows and webhooks that authenticate by their own means (tested in their suites).
OWN_AUTH = {
    ("POST", "/v1/dashboard/login"),
    ("GET", "/v1/dashboard/session"),
    ("POST", "/v1/notifications/inbound/{sender}"),
    ("POST", "/portal/api/login"),
    ("GET", "/portal/api/session"),
    ("POST", "/portal/api/logout"),
}


async def test_every_endpoint_needs_a_key_or_a_session(central: Any) -> None:
    from gatewayd.central.app import OPERATIONS

    for op in OPERATIONS:
        path = op.path.format_map(_AnyId())
        if (op.method, op.path) in OWN_AUTH:
            continue
        if op.auth == "public":
            # The member portal: a member session cookie, never an API key.
            assert op.path.startswith("/portal/api/"), (op.method, op.path)
            for key in (None, central.admin_key):
                status, body, _ = await central.call(op.method, path, key=key, json={})
                assert status == 401, (op.method, path, body)
            continue
        status, body, _ = await central.call(op.method, path, key=None, json={})
        assert status == 401, (op.method, path, body)
        expected = {"no_session", "missing_key"} if op.cookie else {"missing_key"}
        assert body["error"]["code"] in expected, (op.method, path)
        status, body, _ = await central.call(op.method, path, key="ckg_not-a-real-key", json={})
        assert (status, body["error"]["code"]) == (401, "bad_key"), (op.method, path)


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer " + "x" * 300, "cka_no_scheme"])
async def test_malformed_authorization_headers(central: Any, header: str) -> None:
    status, body, _ = await central.call(
        "GET", "/v1/stores", key=None, headers={"Authorization": header}
    )
    assert status == 401 and body["error"]["code"] in {"bad_scheme", "bad_key"}


async def test_gateway_key_acts_only_for_its_store(central: Any) -> None:
    member = await central.member()
    code = member["cards"][0]["member_code"]
    status, _ = await central.identify(code, key="gw-1")
    assert status == 200
    status, body = await central.identify(code, key="gw-2")  # gw-2 is store-2's
    assert (status, body["error"]["code"]) == (403, "other_store")
    status, _ = await central.identify(code, key="gw-2", store="store-2")
    assert status == 200
    status, _ = await central.identify(code, key="admin", store="store-2")
    assert status == 200
    status, body, _ = await central.call("GET", "/v1/stores/store-2/terminals", "gw-1")
    assert status == 403
    status, body, _ = await central.call("GET", "/v1/stores/store-1/terminals", "gw-1")
    assert status == 200 and [t["id"] for t in body["items"]] == ["pos-1", "pos-2"]
    status, body, _ = await central.call(
        "POST", "/v1/gateways/gw-2/heartbeat", "gw-1", {"devices": [], "counters": {}}
    )
    assert (status, body["error"]["code"]) == (403, "other_gateway")
    status, _, _ = await central.call("GET", "/v1/gateways/gw-2", "gw-1")
    assert status == 403


async def test_admin_only_operations_refuse_gateway_keys(central: Any) -> None:
    member = await central.member()
    cases = [
        ("POST", "/v1/stores", {"id": "store-9", "name": "Nine"}),
        ("POST", "/v1/stores/store-1/terminals", {"id": "pos-9", "name": "Nine"}),
        ("POST", "/v1/gateways", {"id": "gw-9", "store": "store-1", "name": "Nine"}),
        ("GET", "/v1/gateways", None),
        ("POST", "/v1/admin-keys", {"name": "sneaky"}),
        ("PATCH", "/v1/settings", {"allow_legacy_card_numbers": True}),
        ("DELETE", f"/v1/members/{member['id']}", None),
    ]
    for method, path, payload in cases:
        status, body, _ = await central.call(method, path, "gw-1", payload)
        assert (status, body["error"]["code"]) == (403, "admin_only"), (method, path)
        status, body, _ = await central.call(method, path, "admin", payload)
        assert status < 300, (method, path, body)


async def test_keys_are_stored_hashed_and_shown_once(central: Any) -> None:
    created = await central.ok("POST", "/v1/admin-keys", json={"name": "second admin"})
    key = created["api_key"]
    assert key.startswith("cka_") and len(key) > 40
    async with central.services.db.read() as conn:
        rows = (await conn.execute(sa.select(api_keys))).all()
    assert key not in str(rows)
    assert hash_key(key) in {r.key_hash for r in rows}
    status, _, _ = await central.call("GET", "/v1/stores", key)
    assert status == 200
    gateway = await central.ok("GET", "/v1/gateways/gw-1")
    assert "api_key" not in gateway


async def test_revoked_key_is_refused(central: Any) -> None:
    created = await central.ok("POST", "/v1/admin-keys", json={"name": "temp"})
    async with central.services.db.write() as conn:
        await conn.execute(
            api_keys.update().where(api_keys.c.id == created["id"]).values(revoked_at=1)
        )
    central.services.auth._cache.clear()
    status, body, _ = await central.call("GET", "/v1/stores", created["api_key"])
    assert (status, body["error"]["code"]) == (401, "bad_key")


async def test_heartbeat_and_staleness(central: Any) -> None:
    gateways = await central.ok("GET", "/v1/gateways")
    assert [(g["id"], g["state"], g["stale"]) for g in gateways["items"]] == [
        ("gw-1", "never_seen", True),
        ("gw-2", "never_seen", True),
    ]
    beat = {
        "devices": [
            {"id": "scanner-1", "state": "online"},
            {"id": "msr-1", "state": "failed", "detail": "read timeout"},
        ],
        "counters": {"events": 42, "errors": 1},
        "version": "0.1.0",
    }
    answer = await central.ok("POST", "/v1/gateways/gw-1/heartbeat", "gw-1", beat)
    assert answer["state"] == "online" and answer["stale"] is False
    assert answer["devices"] == beat["devices"] and answer["counters"] == beat["counters"]
    central.clock.advance(90)
    gw1 = await central.ok("GET", "/v1/gateways?store=store-1")
    assert [(g["id"], g["stale"]) for g in gw1["items"]] == [("gw-1", False)]
    central.clock.advance(1)
    gw1 = (await central.ok("GET", "/v1/gateways"))["items"][0]
    assert gw1["state"] == "stale" and gw1["stale"] is True
    assert gw1["last_seen_at"] is not None and gw1["counters"] == {"events": 42, "errors": 1}
    status, body, _ = await central.call(
        "POST", "/v1/gateways/gw-1/heartbeat", "gw-1", {"devices": [{"id": "x", "state": "on"}]}
    )
    assert status == 422 and "devices.0.state" in body["error"]["message"]


async def test_registry_conflicts_and_lookups(central: Any) -> None:
    status, body, _ = await central.call(
        "POST", "/v1/stores", "admin", {"id": "store-1", "name": "x"}
    )
    assert (status, body["error"]["code"]) == (409, "store_exists")
    status, body, _ = await central.call(
        "POST", "/v1/gateways", "admin", {"id": "gw-7", "store": "nowhere", "name": "x"}
    )
    assert (status, body["error"]["code"]) == (404, "store_not_found")
    stores = await central.ok("GET", "/v1/stores", "gw-1")
    assert [s["id"] for s in stores["items"]] == ["store-1", "store-2"]
    store = await central.ok("GET", "/v1/stores/store-1", "gw-1")
    assert store["name"] == "Store-1"
    status, _, _ = await central.call("GET", "/v1/stores/store-404", "admin")
    assert status == 404
    status, _, _ = await central.call("GET", "/v1/gateways?store=bad%20id", "admin")
    assert status == 422
