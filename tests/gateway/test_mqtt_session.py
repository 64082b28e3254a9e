"""The MQTT session: broker restarts lose nothing, wills carry the epoch, queues are bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gatewayd.simulate import PtyDevice
from tests.support.broker import Mosquitto
from tests.support.gateway import GatewayProcess, write_config
from tests.support.mqtt import subscribed

STATUS = "gatewayd/v1/s1/gateways/gw1/status"
DEVICE = "gatewayd/v1/s1/gateways/gw1/devices/scan1"
IDENTIFY = "gatewayd/v1/s1/terminals/pos1/identify"


def scanner_gateway(tmp_path: Path, broker: Mosquitto, **mqtt: object) -> tuple[PtyDevice, Path]:
    scanner = PtyDevice(tmp_path / "scanner")
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        devices=[
            {"id": "scan1", "driver": "serial_scanner", "terminal": "pos1", "port": scanner.path}
        ],
        extra={"mqtt": dict(mqtt)} if mqtt else None,
    )
    return scanner, config


def card(n: int) -> bytes:
    return f"{88000000 + n}\r".encode()


async def test_broker_restart_loses_nothing_and_keeps_order(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    scanner, config = scanner_gateway(tmp_path, broker)
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    async with subscribed(broker.port, IDENTIFY) as sub:
        await asyncio.sleep(0.3)
        for n in range(0, 20):
            scanner.write(card(n))
            await asyncio.sleep(0.01)
        before = [(await sub.get()).json() for _ in range(20)]
    broker.kill()
    for n in range(20, 60):  # produced while the broker is down
        scanner.write(card(n))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    assert gateway.status()["mqtt"]["queued"] >= 40
    broker.start()
    async with subscribed(broker.port, IDENTIFY, STATUS, DEVICE) as sub:
        retained = {}
        received = []
        produced_offline: set[int] = set()  # resent events repeat: wait for each of 20..59
        async with asyncio.timeout(15):
            while len(produced_offline) < 40 or len(retained) < 2:
                message = await sub.get(timeout=15)
                if message.topic == IDENTIFY:
                    received.append(message.json())
                    value = int(received[-1]["token"]["value"]) - 88000000
                    if value >= 20:
                        produced_offline.add(value)
                else:
                    retained[message.topic] = message.json()
    values = [int(e["token"]["value"]) - 88000000 for e in before + received]
    # At least once, in order: every card once, possibly a resent batch after reconnect.
    deduped = list(dict.fromkeys(values))
    assert deduped == list(range(60))
    assert retained[STATUS]["state"] == "online"
    assert retained[DEVICE]["state"] == "online"
    scanner.close()


async def test_kill_9_publishes_will_with_same_epoch(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    scanner, config = scanner_gateway(tmp_path, broker, keepalive=5)
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    async with subscribed(broker.port, STATUS) as sub:
        online = (await sub.get()).json()
        assert online["state"] == "online" and online["version"]
        gateway.kill()
        will = (await sub.get(timeout=15)).json()
        assert will == {"state": "offline", "epoch": online["epoch"]}
        gateways.append(again := GatewayProcess(config))
        again.start()
        back = (await sub.get(timeout=10)).json()
    assert back["state"] == "online"
    assert back["epoch"] > online["epoch"]
    scanner.close()


async def test_offline_queue_is_bounded_and_counts_drops(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    scanner, config = scanner_gateway(tmp_path, broker, queue_size=10)
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    await asyncio.sleep(0.3)
    broker.kill()
    await asyncio.sleep(0.2)
    for n in range(25):
        scanner.write(card(n))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.4)
    status = gateway.status()
    assert status["mqtt"]["queued"] == 10
    assert status["mqtt"]["dropped"] >= 15
    broker.start()
    async with subscribed(broker.port, IDENTIFY) as sub:
        got = [
            int((await sub.get(timeout=15)).json()["token"]["value"]) - 88000000 for _ in range(10)
        ]
    # The newest ten survive, oldest dropped, order kept.
    assert got == list(range(15, 25))
    scanner.close()
