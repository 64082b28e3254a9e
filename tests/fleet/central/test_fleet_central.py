"""Central stores and relays bundles, outcomes, command results and diagnostics (SQLite and
PostgreSQL, real HTTP): it never needs a private key, and each caller sees only its share."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatewayd.fleet import build_bundle
from tests.central.conftest import Central

KEY = Ed25519PrivateKey.generate()


def bundle(**targets: Any) -> dict[str, Any]:
    return build_bundle(KEY, {"profiles/x.toml": b"id = 'x'\n"}, **targets)


async def test_bundle_relay_outcomes_and_listing(central: Central) -> None:
    sent = bundle(gateways=["gw-1"])
    one = await central.ok("POST", "/v1/gateways/gw-1/bundles", json=sent)
    assert [(d["gateway_id"], d["status"]) for d in one["deliveries"]] == [("gw-1", "pending")]
    chain = await central.ok("POST", "/v1/fleet/bundles", json=bundle(all_gateways=True))
    assert [d["gateway_id"] for d in chain["deliveries"]] == ["gw-1", "gw-2"]
    store = await central.ok(
        "POST", "/v1/stores/store-2/bundles", json=bundle(stores=["store-1", "store-2"])
    )
    assert [d["gateway_id"] for d in store["deliveries"]] == ["gw-2"]

    # The gateway fetches its bundle with its own key; another gateway cannot.
    path = f"/v1/gateways/gw-1/bundles/{one['id']}"
    content = await central.ok("GET", path, key="gw-1")
    assert content == {"bundle_id": one["id"], "bundle": sent}
    commands = await central.services.link.messages_after("store-1", "gw-1", 0)
    assert [(m["kind"], m["payload"]) for m in commands][:1] == [
        ("command", {"command": "apply_bundle", "args": {"bundle_id": one["id"]}})
    ]
    assert [m["payload"]["args"]["bundle_id"] for m in commands] == [one["id"], chain["id"]]
    status, body, _ = await central.call("GET", path, key="gw-2")
    assert (status, body["error"]["code"]) == (403, "other_gateway")
    status, body, _ = await central.call("GET", f"/v1/gateways/gw-2/bundles/{one['id']}", "gw-2")
    assert (status, body["error"]["code"]) == (404, "bundle_not_found")

    report = {"status": "rolled_back", "reason": "unhealthy", "message": "MQTT not connected"}
    done = await central.ok("POST", f"{path}/outcome", key="gw-1", json=report)
    assert (done["status"], done["reason"]) == ("rolled_back", "unhealthy")
    again = await central.ok("POST", f"{path}/outcome", key="gw-1", json=report)
    assert again["status"] == "rolled_back"  # a resent report changes nothing
    status, _, _ = await central.call("POST", f"{path}/outcome", key="gw-2", json=report)
    assert status == 403
    status, body, _ = await central.call(
        "POST", f"{path}/outcome", key="gw-1", json={**report, "status": "fine"}
    )
    assert (status, body["error"]["code"]) == (422, "invalid_request")

    listed = (await central.ok("GET", "/v1/fleet/bundles"))["bundles"]
    assert [b["id"] for b in listed] == [store["id"], chain["id"], one["id"]]
    assert listed[2]["deliveries"][0]["status"] == "rolled_back"
    mine = (await central.ok("GET", "/v1/gateways/gw-1/bundles"))["deliveries"]
    assert [d["bundle_id"] for d in mine] == [chain["id"], one["id"]]
    status, _, _ = await central.call("GET", "/v1/fleet/bundles", key="gw-1")
    assert status == 403


async def test_bundles_central_refuses(central: Central) -> None:
    good = bundle(gateways=["gw-1"])
    cases = [
        ({**good, "format": "zip"}, 422, "invalid_request"),
        ({**good, "manifest": "not base64!"}, 422, "bundle_malformed"),
        ({**good, "files": {}}, 422, "bundle_tampered"),
        (bundle(gateways=["gw-2"]), 422, "no_target"),
    ]
    for body, status, code in cases:
        got, answer, _ = await central.call("POST", "/v1/gateways/gw-1/bundles", json=body)
        assert (got, answer["error"]["code"]) == (status, code)
    status, answer, _ = await central.call("POST", "/v1/gateways/gw-9/bundles", json=good)
    assert (status, answer["error"]["code"]) == (404, "gateway_not_found")
    status, _, _ = await central.call("POST", "/v1/gateways/gw-1/bundles", key="gw-1", json=good)
    assert status == 403
    assert (await central.ok("GET", "/v1/fleet/bundles"))["bundles"] == []


async def test_command_results_and_diagnostics(central: Central) -> None:
    result = {
        "message_id": 7,
        "command": "restart_device",
        "ok": True,
        "result": {"device": "scan1", "state": "online"},
    }
    status, _, _ = await central.call(
        "POST", "/v1/gateways/gw-1/command-results", key="gw-1", json=result
    )
    assert status == 204
    status, _, _ = await central.call(
        "POST", "/v1/gateways/gw-1/command-results", key="gw-2", json=result
    )
    assert status == 403
    results = (await central.ok("GET", "/v1/gateways/gw-1/command-results"))["results"]
    assert [(r["message_id"], r["ok"], r["result"]) for r in results] == [
        (7, True, {"device": "scan1", "state": "online"})
    ]

    upload = {
        "format": "gatewayd-diagnostics-1",
        "request": 9,
        "logs": [{"event": "x"}],
        "devices": [{"device": "scan1", "state": "online"}],
    }
    created = await central.ok("POST", "/v1/gateways/gw-1/diagnostics", key="gw-1", json=upload)
    listed = (await central.ok("GET", "/v1/gateways/gw-1/diagnostics"))["diagnostics"]
    assert [(d["id"], d["request_id"]) for d in listed] == [(created["id"], 9)]
    assert listed[0]["size"] == len(json.dumps(upload).encode())
    fetched = await central.ok("GET", f"/v1/gateways/gw-1/diagnostics/{created['id']}")
    assert fetched == upload
    status, _, _ = await central.call("GET", f"/v1/gateways/gw-2/diagnostics/{created['id']}")
    assert status == 404  # the id belongs to gw-1
    status, _, _ = await central.call("GET", "/v1/gateways/gw-1/diagnostics", key="gw-1")
    assert status == 403
    # Diagnostics may exceed the plain body limit (64 KiB) up to 8 times it, as outbox batches.
    large = {**upload, "request_id": 10, "logs": [{"event": "x" * 1000}] * 100}
    status, answer, _ = await central.call(
        "POST", "/v1/gateways/gw-1/diagnostics", key="gw-1", json=large
    )
    assert status == 201, answer
    huge = {**upload, "logs": [{"event": "x" * 1000}] * 600}
    status, answer, _ = await central.call(
        "POST", "/v1/gateways/gw-1/diagnostics", key="gw-1", json=huge
    )
    assert (status, answer["error"]["code"]) == (413, "payload_too_large")
    # The request id is a row id: beyond one (it would overflow PostgreSQL's integer), a 422.
    status, answer, _ = await central.call(
        "POST", "/v1/gateways/gw-1/diagnostics", key="gw-1", json={**upload, "request": 2**34}
    )
    assert (status, answer["error"]["code"]) == (422, "invalid_request")
