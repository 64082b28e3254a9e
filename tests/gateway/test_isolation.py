"""One bad plugin or device never stops the others, and bad bytes lose nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from pathlib import Path

from gatewayd.simulate import PtyDevice
from tests.support.broker import Mosquitto
from tests.support.gateway import GatewayProcess, write_config
from tests.support.mqtt import subscribed

FAILING_PLUGIN = """
from gatewayd.drivers import Driver, DriverOptions
from gatewayd.hookspecs import hookimpl
from gatewayd.protocols.tokens import Method


class Exploding(Driver):
    name = "exploding"
    method = Method.BARCODE
    options = DriverOptions

    async def _open(self):
        pass

    async def _read(self):
        raise RuntimeError("boom on every read")
        yield


@hookimpl
def gatewayd_driver_classes():
    return [Exploding]


@hookimpl
def gatewayd_identify_event(event):
    raise ValueError("observer bug")
"""

BROKEN_IMPORT = "import does_not_exist\n"


def _ts(entry: dict) -> float:
    return dt.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()


async def test_failing_plugin_is_isolated_with_backoff(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "exploding.py").write_text(FAILING_PLUGIN)
    (plugins / "broken.py").write_text(BROKEN_IMPORT)
    scanner = PtyDevice(tmp_path / "scanner")
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        top={"plugins_dir": str(plugins)},
        devices=[
            {"id": "bad", "driver": "exploding", "terminal": "pos2"},
            {"id": "scan1", "driver": "serial_scanner", "terminal": "pos1", "port": scanner.path},
        ],
    )
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    async with subscribed(broker.port, "gatewayd/v1/s1/#") as sub:
        await asyncio.sleep(3.6)
        scanner.write(b"13800138000\r")
        event = (await sub.get(topic_suffix="/identify")).json()
    assert event["device"] == "scan1"
    states = {d["device"]: d for d in gateway.status()["devices"]}
    assert states["bad"]["state"] == "failed"
    assert "boom on every read" in states["bad"]["last_error"]
    assert states["scan1"]["state"] == "online"
    failures = [e for e in gateway.log_events() if e.get("event") == "device_failed"]
    assert len(failures) >= 2
    gaps = [_ts(b) - _ts(a) for a, b in itertools.pairwise(failures)]
    # Exponential backoff with jitter: ~1 s, then ~2 s.
    assert 0.7 < gaps[0] < 1.5
    if len(gaps) > 1:
        assert gaps[1] > 1.4
    logged = gateway.log()
    assert "observer bug" in logged
    assert "does_not_exist" in logged  # the broken plugin file is reported, not fatal
    assert gateway.process is not None and gateway.process.poll() is None
    scanner.close()


async def test_garbage_and_huge_lines_are_logged_and_device_keeps_working(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    scanner = PtyDevice(tmp_path / "scanner")
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        devices=[
            {"id": "scan1", "driver": "serial_scanner", "terminal": "pos1", "port": scanner.path}
        ],
    )
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    async with subscribed(broker.port, "gatewayd/v1/s1/terminals/+/identify") as sub:
        await asyncio.sleep(0.3)
        scanner.write(b"\xff\xfe\x00\x9c garbage\r")
        scanner.write(b"9" * 65536 + b"\r")
        scanner.write(b"13800138000\r")
        event = (await sub.get(timeout=10)).json()
        assert await sub.drain(0.3) == []
    assert event["token"]["value"] == "13800138000"
    names = [e.get("event") for e in gateway.log_events()]
    assert "garbage_input" in names
    assert "line_too_long" in names
    assert gateway.status()["devices"][0]["state"] == "online"
    scanner.close()


async def test_unplugged_device_goes_offline_and_comes_back(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    scanner = PtyDevice(tmp_path / "scanner")
    other = PtyDevice(tmp_path / "other")
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        devices=[
            {"id": "scan1", "driver": "serial_scanner", "terminal": "pos1", "port": scanner.path},
            {"id": "scan2", "driver": "serial_scanner", "terminal": "pos2", "port": other.path},
        ],
    )
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    device_topic = "gatewayd/v1/s1/gateways/gw1/devices/scan1"
    async with subscribed(broker.port, device_topic, "gatewayd/v1/s1/terminals/+/identify") as sub:
        assert (await sub.get(topic_suffix="/scan1")).json()["state"] == "online"
        loop = asyncio.get_running_loop()
        unplugged = loop.time()
        scanner.unplug()
        async with asyncio.timeout(2):
            while (await sub.get(topic_suffix="/scan1")).json()["state"] != "offline":
                pass
        assert loop.time() - unplugged < 1.0
        other.write(b"13900139000\r")
        assert (await sub.get(topic_suffix="/identify")).json()["device"] == "scan2"
        scanner.plug()
        assert (await sub.get(topic_suffix="/scan1", timeout=3)).json()["state"] == "online"
        await asyncio.sleep(0.1)
        scanner.write(b"13800138000\r")
        assert (await sub.get(topic_suffix="/identify")).json()["device"] == "scan1"
    scanner.close()
    other.close()
