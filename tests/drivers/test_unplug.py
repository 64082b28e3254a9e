"""Unplugging one device: it shows offline within a second and comes back online by itself
when its port returns; the other devices of the gateway never notice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gatewayd.simulate import PtyDevice
from gatewayd.simulators import IdCardReaderSim, ModemSim, PtyPlayer, demo_swipe
from tests.drivers._helpers import DEVICES, IDENTIFY, next_event, start_gateway, wait_all
from tests.support.broker import Mosquitto
from tests.support.mqtt import Subscriber, subscribed


class Plain(PtyPlayer):
    """A device that only talks (scanner, magstripe reader)."""


async def _messages_until(sub: Subscriber, device: str, state: str, timeout: float) -> list:
    """Every message up to and including ``device`` reaching ``state``."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            message = await sub.get(timeout=timeout)
            seen.append(message)
            if message.topic.endswith(f"/devices/{device}") and message.json()["state"] == state:
                return seen


async def test_unplug_and_replug_each_device(tmp_path: Path, broker: Mosquitto, gateways) -> None:
    players: dict[str, PtyPlayer] = {
        "scan1": Plain(tmp_path / "scanner").start(),
        "msr1": Plain(tmp_path / "msr").start(),
        "idr1": IdCardReaderSim(link=tmp_path / "idr").start(),
        "line1": ModemSim(tmp_path / "modem").start(),
    }
    drivers = {
        "scan1": "serial_scanner",
        "msr1": "msr_reader",
        "idr1": "samv_reader",
        "line1": "callerid_modem",
    }
    devices = [
        {"id": d, "driver": drivers[d], "terminal": "pos1", "port": p.path}
        for d, p in players.items()
    ]
    gateway = start_gateway(tmp_path, broker, gateways, devices)
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_all(sub, list(players), "online")
        await sub.drain(0.3)
        for device, player in players.items():
            start = time.monotonic()
            player.unplug()
            seen = await _messages_until(sub, device, "offline", timeout=1.0)
            assert time.monotonic() - start <= 1.0
            await asyncio.sleep(0.5)  # stays unplugged a while: retried, still offline
            player.plug()
            seen += await _messages_until(sub, device, "online", timeout=5.0)
            others = [m.topic for m in seen if not m.topic.endswith(f"/devices/{device}")]
            assert others == [], f"unplugging {device} disturbed {others}"
        states = {d["device"]: d["state"] for d in gateway.status()["devices"]}
        assert states == dict.fromkeys(players, "online")
        # Every device works again after its comeback.
        assert isinstance(players["scan1"], Plain)
        players["scan1"].write(b"13800138000\r")
        assert (await next_event(sub))["device"] == "scan1"
        players["msr1"].write(demo_swipe("8800001234567890"))
        assert (await next_event(sub))["device"] == "msr1"
        reader = players["idr1"]
        assert isinstance(reader, IdCardReaderSim)
        reader.place()
        assert (await next_event(sub))["device"] == "idr1"
        modem = players["line1"]
        assert isinstance(modem, ModemSim)
        call = asyncio.to_thread(modem.play_call, "13900139000", rings=2, period=0.2)
        await call
        event = await next_event(sub)
        assert (event["device"], event["token"]["value"]) == ("line1", "13900139000")
    for player in players.values():
        player.stop()


def test_pty_device_link_follows_plug(tmp_path: Path) -> None:
    device = PtyDevice(tmp_path / "dev")
    first = device.slave_path
    device.unplug()
    assert not (tmp_path / "dev").exists()
    device.plug()
    assert (tmp_path / "dev").resolve() == Path(device.slave_path)
    assert device.slave_path != first or Path(first).exists()
    device.close()
