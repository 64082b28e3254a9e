"""Channel commands with results: restart one device, fetch a diagnostics bundle."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from tests.fleet.conftest import Fleet
from tests.support.mqtt import subscribed

DEVICES = "gatewayd/v1/store-1/gateways/gw-1/devices/+"
PHONE, ID_NUMBER = "13812345678", "11010519491231002X"


def wait_for(fleet: Fleet, path: str, key: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        items: list[dict[str, Any]] = fleet.central.admin("GET", path)[key]
        if len(items) >= count:
            return items
        time.sleep(0.2)
    raise TimeoutError(f"{path}: fewer than {count} {key}:\n{fleet.log()[-3000:]}")


def as_gateway(fleet: Fleet, gateway: str, method: str, path: str, body: Any = None) -> int:
    request = urllib.request.Request(
        fleet.central.url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": f"Bearer {fleet.central.keys['gateways'][gateway]['api_key']}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_restart_device_touches_only_that_device(fleet: Fleet) -> None:
    fleet.start([fleet.device("scan1"), fleet.device("scan2")])
    fleet.wait_devices({"scan1": "online", "scan2": "online"})
    async with subscribed(fleet.broker.port, DEVICES) as sub:
        await sub.drain(1.0)  # the retained states
        sent = fleet.central.admin(
            "POST",
            "/v1/gateways/gw-1/commands",
            {"command": "restart_device", "args": {"device": "scan1"}},
        )
        results = wait_for(fleet, "/v1/gateways/gw-1/command-results", "results")
        states = [(m.topic.rsplit("/", 1)[1], m.json()["state"]) for m in await sub.drain(1.5)]
    assert results[0]["message_id"] == sent["id"]
    assert (results[0]["command"], results[0]["ok"]) == ("restart_device", True)
    assert results[0]["result"] == {"device": "scan1", "state": "online"}
    assert states and {device for device, _ in states} == {"scan1"}
    assert states[-1] == ("scan1", "online")
    started = [e for e in fleet.process.log_events() if e.get("event") == "device_state"]
    assert [e["device"] for e in started].count("scan2") == 1  # only its first start

    fleet.central.admin(
        "POST",
        "/v1/gateways/gw-1/commands",
        {"command": "restart_device", "args": {"device": "nope"}},
    )
    results = wait_for(fleet, "/v1/gateways/gw-1/command-results", "results", count=2)
    assert (results[0]["ok"], results[0]["result"]["error"]) == (False, "unknown device")


def test_diagnostics_are_uploaded_masked_and_without_secrets(fleet: Fleet) -> None:
    fleet.http_token = "local-api-token-0123456789"
    fleet.start([fleet.device("scan1")])
    fleet.wait_devices({"scan1": "online"})
    fleet.scanners["scan1"].write(f"{PHONE}\r\n".encode())
    fleet.scanners["scan1"].write(f"{ID_NUMBER}\r\n".encode())
    time.sleep(1.0)
    gateway_key = fleet.central.keys["gateways"]["gw-1"]["api_key"]
    assert PHONE[-4:] in fleet.log()  # logged (masked) before the bundle is asked for

    sent = fleet.central.admin("POST", "/v1/gateways/gw-1/commands", {"command": "diagnostics"})
    listed = wait_for(fleet, "/v1/gateways/gw-1/diagnostics", "diagnostics")
    assert listed[0]["request_id"] == sent["id"] and 0 < listed[0]["size"] <= 48 * 1024
    bundle = fleet.central.admin("GET", f"/v1/gateways/gw-1/diagnostics/{listed[0]['id']}")
    text = json.dumps(bundle)

    for secret in (PHONE, ID_NUMBER, gateway_key, fleet.http_token, fleet.public):
        assert secret not in text
    assert "*******5678" in text and "**************002X" in text
    assert bundle["config"]["central"]["key"] == "***"
    assert bundle["config"]["http"]["token"] == "***"
    assert bundle["config"]["central"]["url"] == fleet.central.url
    assert [(d["device"], d["state"]) for d in bundle["devices"]] == [("scan1", "online")]
    assert bundle["gateway"] == "gw-1" and bundle["uptime"] > 0 and bundle["version"]
    assert any(r.get("event") == "gateway_started" for r in bundle["logs"])

    # Admins read diagnostics; gateways only upload their own.
    path = f"/v1/gateways/gw-1/diagnostics/{listed[0]['id']}"
    assert as_gateway(fleet, "gw-1", "GET", path) == 403
    upload = {"format": "gatewayd-diagnostics-1", "logs": []}
    assert as_gateway(fleet, "gw-2", "POST", "/v1/gateways/gw-1/diagnostics", upload) == 403
    assert as_gateway(fleet, "gw-1", "POST", "/v1/gateways/gw-1/diagnostics", upload) == 201
