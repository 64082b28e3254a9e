"""Signed bundles from HQ applied on a real gateway, over a real central and broker."""

from __future__ import annotations

import base64
import hashlib
import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatewayd.fleet import build_bundle
from tests.fleet.conftest import DEADLINE, Fleet, call
from tests.support.mqtt import subscribed
from tests.support.net import free_port

IDENTIFY = "gatewayd/v1/store-1/terminals/+/identify"
RESTART_DEADLINE = 10.0


async def test_config_bundle_is_applied_and_takes_effect(fleet: Fleet) -> None:
    fleet.start([fleet.device("scan1")])
    fleet.wait_devices({"scan1": "online"})
    new_config = fleet.config_text([fleet.device("scan1"), fleet.device("scan2")])
    bundle_id = fleet.push(fleet.sign({"config": new_config}))

    delivery = fleet.outcome(bundle_id)

    assert delivery["status"] == "applied", delivery
    assert fleet.config.read_bytes() == new_config
    fleet.wait_devices({"scan1": "online", "scan2": "online"})
    async with subscribed(fleet.broker.port, IDENTIFY) as sub:
        fleet.scanners["scan2"].write(b"6901234567892\r\n")
        event = (await sub.get(timeout=10)).json()
    assert event["device"] == "scan2" and event["token"]["value"] == "6901234567892"
    listed = fleet.central.admin("GET", "/v1/gateways/gw-1/bundles")["deliveries"]
    assert [(d["bundle_id"], d["status"]) for d in listed] == [(bundle_id, "applied")]


def _retarget_file(bundle: dict, path: str, content: bytes) -> None:
    """Change a file *and* its hash in the manifest: consistent, but no longer signed."""
    manifest = json.loads(base64.b64decode(bundle["manifest"]))
    for entry in manifest["files"]:
        if entry["path"] == path:
            entry.update(sha256=hashlib.sha256(content).hexdigest(), size=len(content))
    bundle["manifest"] = base64.b64encode(json.dumps(manifest).encode()).decode()
    bundle["files"][path] = base64.b64encode(content).decode()


def test_bad_bundles_are_rejected_with_a_reason_and_change_nothing(fleet: Fleet) -> None:
    fleet.start([fleet.device("scan1")])
    fleet.wait_devices({"scan1": "online"})
    before = fleet.config.read_bytes()
    evil = fleet.config_text([fleet.device("scan1"), fleet.device("scan2")])

    stranger = build_bundle(Ed25519PrivateKey.generate(), {"config": evil}, gateways=["gw-1"])
    tampered = fleet.sign({"config": before})
    _retarget_file(tampered, "config", evil)
    good = fleet.sign({"config": before}, serial=10**12)
    older = fleet.sign({"config": evil}, serial=10**12 - 1)
    expected = [
        (stranger, "untrusted_key"),
        (tampered, "bad_signature"),
        (good, None),
        (good, "replayed_serial"),  # the very same bundle again
        (older, "replayed_serial"),  # a lower serial: a downgrade
    ]
    for bundle, reason in expected:
        delivery = fleet.outcome(fleet.push(bundle))
        if reason is None:
            assert delivery["status"] == "applied", delivery
        else:
            assert (delivery["status"], delivery["reason"]) == ("rejected", reason), delivery
        assert fleet.config.read_bytes() == before
    fleet.wait_devices({"scan1": "online"})

    # Central refuses what it can see is wrong before any gateway is bothered.
    inconsistent = fleet.sign({"config": before})
    inconsistent["files"]["config"] = base64.b64encode(evil).decode()
    status, body = call(fleet.central, "POST", "/v1/gateways/gw-1/bundles", inconsistent)
    assert (status, body["error"]["code"]) == (422, "bundle_tampered")
    elsewhere = fleet.sign({"config": evil}, gateways=["gw-9"])
    status, body = call(fleet.central, "POST", "/v1/gateways/gw-1/bundles", elsewhere)
    assert (status, body["error"]["code"]) == (422, "no_target")
    status, body = call(
        fleet.central,
        "POST",
        "/v1/stores/store-2/bundles",
        fleet.sign({"config": evil}, gateways=[], stores=["store-1"]),
    )
    assert (status, body["error"]["code"]) == (422, "no_target")
    assert fleet.config.read_bytes() == before


def test_a_config_that_loses_a_device_is_rolled_back(fleet: Fleet) -> None:
    fleet.start([fleet.device("scan1")])
    fleet.wait_devices({"scan1": "online"})
    before = fleet.config.read_bytes()
    broken = fleet.config_text(
        [{"id": "scan1", "terminal": "pos-1", "driver": "serial_scanner", "port": "/dev/nope0"}]
    )
    started = time.monotonic()
    delivery = fleet.outcome(fleet.push(fleet.sign({"config": broken})))

    assert (delivery["status"], delivery["reason"]) == ("rolled_back", "unhealthy"), delivery
    assert "device scan1 not online" in delivery["message"]
    assert time.monotonic() - started < DEADLINE + 8
    assert fleet.config.read_bytes() == before
    fleet.wait_devices({"scan1": "online"})


def test_a_config_with_a_dead_broker_is_rolled_back_after_restarts(fleet: Fleet) -> None:
    # Restarts take a second or two of imports: a deadline with room for one.
    process = fleet.start([fleet.device("scan1")], deadline=RESTART_DEADLINE)
    fleet.wait_devices({"scan1": "online"})
    pid = process.process.pid if process.process else None
    before = fleet.config.read_bytes()
    dead = fleet.config_text(
        [fleet.device("scan1")],
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
        deadline=RESTART_DEADLINE,
    )
    delivery = fleet.outcome(fleet.push(fleet.sign({"config": dead})))

    assert (delivery["status"], delivery["reason"]) == ("rolled_back", "unhealthy"), delivery
    assert "MQTT not connected" in delivery["message"]
    assert fleet.config.read_bytes() == before
    process.wait_healthy()
    assert process.status()["mqtt"]["connected"] or _eventually_connected(fleet)
    # Restarted in place twice (new settings, then the old ones): same process id.
    assert process.process is not None and process.process.pid == pid
    assert fleet.log().count('"gateway_started"') == 3


def _eventually_connected(fleet: Fleet) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert fleet.process is not None
        if fleet.process.status()["mqtt"]["connected"]:
            return True
        time.sleep(0.1)
    return False


PROFILE = """id = "scanner-fleet"
vendor = "generic"
model = "test scanner"
family = "barcode_scanner"
driver = "serial_scanner"
transport = "serial"

[options]
terminator = "any"
prefix = "{prefix}"
"""


async def test_a_profile_bundle_changes_how_devices_read(fleet: Fleet) -> None:
    (fleet.profiles_dir / "scanner-fleet.toml").write_text(PROFILE.format(prefix=""))
    fleet.start([fleet.device("scan1", profile="scanner-fleet")])
    fleet.wait_devices({"scan1": "online"})
    new_profile = PROFILE.format(prefix="ZZ").encode()
    delivery = fleet.outcome(fleet.push(fleet.sign({"profiles/scanner-fleet.toml": new_profile})))

    assert delivery["status"] == "applied", delivery
    assert (fleet.profiles_dir / "scanner-fleet.toml").read_bytes() == new_profile
    fleet.wait_devices({"scan1": "online"})
    async with subscribed(fleet.broker.port, IDENTIFY) as sub:
        fleet.scanners["scan1"].write(b"ZZ6901234567892\r\n")
        event = (await sub.get(timeout=10)).json()
    assert event["token"]["value"] == "6901234567892"  # the new profile strips the prefix


PLUGIN = b'''"""Pushed by HQ in a signed bundle."""
import structlog

structlog.get_logger("fleet_extra").info("fleet_extra_imported", marker="from-hq")
'''


def test_a_plugin_bundle_is_loaded_after_a_restart(fleet: Fleet) -> None:
    process = fleet.start([fleet.device("scan1")], deadline=RESTART_DEADLINE)
    fleet.wait_devices({"scan1": "online"})
    delivery = fleet.outcome(fleet.push(fleet.sign({"plugins/fleet_extra.py": PLUGIN})))

    assert delivery["status"] == "applied", delivery
    assert (fleet.plugins_dir / "fleet_extra.py").read_bytes() == PLUGIN
    events = process.log_events()
    loaded = [e for e in events if e.get("event") == "plugin_loaded"]
    assert [e["plugin"] for e in loaded] == ["fleet_extra"]
    assert any(e.get("event") == "fleet_extra_imported" for e in events)
    assert fleet.log().count('"gateway_started"') == 2
    fleet.wait_devices({"scan1": "online"})


def test_a_crash_during_the_watch_rolls_back_at_the_next_start(fleet: Fleet) -> None:
    process = fleet.start([fleet.device("scan1")], deadline=60)
    fleet.wait_devices({"scan1": "online"})
    before = fleet.config.read_bytes()
    broken = fleet.config_text(
        [{"id": "scan1", "terminal": "pos-1", "driver": "serial_scanner", "port": "/dev/nope0"}],
        deadline=60,
    )
    bundle_id = fleet.push(fleet.sign({"config": broken}))
    deadline = time.monotonic() + 20
    while fleet.config.read_bytes() != broken:  # installed; the watch is running
        assert time.monotonic() < deadline, fleet.log()
        time.sleep(0.05)
    process.kill()  # as if the box lost power during the watch
    assert fleet.config.read_bytes() == broken
    process.start()

    delivery = fleet.outcome(bundle_id)
    assert (delivery["status"], delivery["reason"]) == ("rolled_back", "unhealthy"), delivery
    assert "restarted" in delivery["message"]
    assert fleet.config.read_bytes() == before
    fleet.wait_devices({"scan1": "online"})
