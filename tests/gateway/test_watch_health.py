"""``gatewayd watch`` over MQTT and SSE, and the periodic health message."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from gatewayd.simulate import PtyDevice
from tests.support.broker import Mosquitto
from tests.support.gateway import GatewayProcess, write_config
from tests.support.mqtt import subscribed


def start(tmp_path: Path, broker: Mosquitto, gateways, **mqtt: object):
    scanner = PtyDevice(tmp_path / "scanner")
    config = write_config(
        tmp_path / "gw.toml", mqtt_url=broker.url, extra={"mqtt": dict(mqtt)},
        devices=[{"id": "scan1", "driver": "serial_scanner", "terminal": "pos1",
                  "port": scanner.path}],
    )
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    return scanner, config, gateway


def watch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gatewayd", "watch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_watch_over_mqtt_and_sse(tmp_path: Path, broker: Mosquitto, gateways) -> None:
    scanner, config, gateway = start(tmp_path, broker, gateways)
    table = watch("--config", str(config), "--count", "1")
    as_json = watch("--http", gateway.base_url, "--terminal", "pos1", "--json", "--count", "1")
    # Scan until both watchers have seen an event (each exits after one): they need a moment
    # to start and subscribe, and identify events are not retained.
    async with asyncio.timeout(30):
        while table.poll() is None or as_json.poll() is None:
            scanner.write(b"134567890123456789\r")
            await asyncio.sleep(0.6)
    out, err = await asyncio.to_thread(table.communicate, timeout=20)
    json_out, _ = await asyncio.to_thread(as_json.communicate, timeout=20)
    assert table.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["time", "store", "terminal"]
    row = next(line for line in lines if "wechat_payment_code" in line)
    assert "pos1" in row and "**************6789" in row and "detected" in row
    assert "134567890123456789" not in out  # the table masks tokens
    events = [json.loads(line) for line in json_out.splitlines()]
    identify = [e for e in events if e["type"] == "identify"]
    assert identify[0]["token"]["value"] == "134567890123456789"  # --json is for machines
    assert identify[0]["terminal"] == "pos1"
    scanner.close()


async def test_health_message_every_interval(tmp_path: Path, broker: Mosquitto,
                                             gateways) -> None:
    topic = "gatewayd/v1/s1/gateways/gw1/health"
    async with subscribed(broker.port, topic) as sub:
        scanner, _, _ = start(tmp_path, broker, gateways, health_interval=0.5)
        await asyncio.sleep(0.3)
        scanner.write(b"13800138000\r")
        await asyncio.sleep(0.8)
        health = (await sub.get(timeout=5)).json()
        while health["counters"].get("barcode") != 1:
            health = (await sub.get(timeout=5)).json()
    assert health["devices"] == {"scan1": "online"}
    assert health["queues"]["mqtt"] >= 0 and health["dropped"] == {"mqtt": 0, "sse": 0}
    assert health["uptime"] > 0
    scanner.close()
