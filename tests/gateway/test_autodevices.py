"""``[discovery] auto = true``: matched devices start by themselves and follow hot-plug."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from gatewayd.simulate import PtyDevice
from tests.support.broker import Mosquitto
from tests.support.gateway import GatewayProcess, write_config
from tests.support.mqtt import subscribed

PROFILE = """
id = "test-serial-scanner"
vendor = "Test"
model = "Scanner"
family = "barcode_scanner"
driver = "serial_scanner"
transport = "serial"
[match]
by_id = "usb-Test_Scanner_*"
[options]
terminator = "CR"
"""


async def test_auto_devices_follow_hot_plug(tmp_path: Path, broker: Mosquitto, gateways) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "test-serial-scanner.toml").write_text(PROFILE)
    dev = tmp_path / "dev"
    by_id = dev / "serial" / "by-id"
    by_id.mkdir(parents=True)
    (tmp_path / "sys").mkdir()
    scanner = PtyDevice()
    other = PtyDevice()
    os.symlink(other.slave_path, by_id / "usb-Unknown_Thing-if00")  # matches no profile
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        top={"profiles_dir": str(profiles)},
        extra={
            "discovery": {
                "auto": True,
                "terminal": "pos7",
                "interval": 0.2,
                "dev_root": str(dev),
                "sys_root": str(tmp_path / "sys"),
                "pcsc": False,
            }
        },
        devices=[],
    )
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    assert gateway.status()["devices"] == []
    device_topic = "gatewayd/v1/s1/gateways/gw1/devices/+"
    async with subscribed(broker.port, device_topic, "gatewayd/v1/s1/terminals/+/identify") as sub:
        link = by_id / "usb-Test_Scanner_1234-if00"
        os.symlink(scanner.slave_path, link)  # plugged in
        state = (await sub.get(timeout=5, topic_suffix="-if00")).json()
        assert state["state"] == "online" and state["profile"] == "test-serial-scanner"
        assert state["terminal"] == "pos7"
        scanner.write(b"13800138000\r")
        event = (await sub.get(topic_suffix="/identify")).json()
        assert event["device"] == state["device"] and event["terminal"] == "pos7"
        link.unlink()  # unplugged: the device is stopped and says so
        scanner.unplug()
        async with asyncio.timeout(5):
            while (await sub.get(topic_suffix="-if00")).json()["state"] != "stopped":
                pass
    assert [d["device"] for d in gateway.status()["devices"]] == []
    other.close()
