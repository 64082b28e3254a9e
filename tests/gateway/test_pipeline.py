"""End to end: a scan written to a pseudo-terminal reaches MQTT and SSE as an identify event."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp

from gatewayd.simulate import PtyDevice
from tests.support.broker import Mosquitto
from tests.support.gateway import GatewayProcess, write_config
from tests.support.mqtt import subscribed

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def read_sse(response: aiohttp.ClientResponse, count: int) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    event, data, sse_id = "", "", ""
    async with asyncio.timeout(10):
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line.startswith("id: "):
                sse_id = line[4:]
            elif line == "" and data:
                out.append((event, {**json.loads(data), "_sse_id": sse_id}))
                event, data = "", ""
                if len([e for e in out if e[0] == "identify"]) >= count:
                    return out
    return out


async def test_scan_reaches_mqtt_and_sse(tmp_path: Path, broker: Mosquitto, gateways) -> None:
    scanner = PtyDevice(tmp_path / "scanner")
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        devices=[
            {"id": "scan1", "driver": "serial_scanner", "terminal": "pos1", "port": scanner.path}
        ],
    )
    gateway = GatewayProcess(config)
    gateways.append(gateway)
    gateway.start()
    async with subscribed(broker.port, "gatewayd/v1/s1/terminals/pos1/identify") as sub:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{gateway.base_url}/v1/events", params={"terminal": "pos1"}) as sse,
        ):
            assert sse.headers["Content-Type"].startswith("text/event-stream")
            await asyncio.sleep(0.3)
            scanner.write(b"134567890123456789\r\n")
            message = await sub.get()
            events = await read_sse(sse, 1)
    event = message.json()
    assert message.topic == "gatewayd/v1/s1/terminals/pos1/identify"
    assert not message.retain
    assert ULID.match(event["event_id"])
    assert TS.match(event["ts"])
    assert {k: event[k] for k in ("store", "gateway", "terminal", "device", "method", "phase")} == {
        "store": "s1",
        "gateway": "gw1",
        "terminal": "pos1",
        "device": "scan1",
        "method": "barcode",
        "phase": "detected",
    }
    assert event["token"] == {"kind": "wechat_payment_code", "value": "134567890123456789"}
    assert event["member"] is None
    identify = [e for kind, e in events if kind == "identify"]
    assert identify[0]["event_id"] == event["event_id"]
    assert identify[0]["token"] == event["token"]
    scanner.close()


async def test_partial_code_is_flushed_after_timeout(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    scanner = PtyDevice(tmp_path / "scanner")
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        devices=[
            {
                "id": "scan1",
                "driver": "serial_scanner",
                "terminal": "pos1",
                "port": scanner.path,
                "flush_timeout_ms": 100,
            }
        ],
    )
    gateway = GatewayProcess(config)
    gateways.append(gateway)
    gateway.start()
    async with subscribed(broker.port, "gatewayd/v1/s1/terminals/+/identify") as sub:
        await asyncio.sleep(0.3)
        scanner.write(b"13800138000")  # no terminator: a scanner set up without a suffix
        event = (await sub.get()).json()
        scanner.write(b"139001")
        await asyncio.sleep(0.02)
        scanner.write(b"39000\r")  # one code split across two reads, not flushed apart
        second = (await sub.get()).json()
    assert event["token"]["value"] == "13800138000"
    assert second["token"]["value"] == "13900139000"
    scanner.close()


async def test_repeat_within_window_is_dropped(tmp_path: Path, broker: Mosquitto, gateways) -> None:
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
        scanner.write(b"13800138000\r13800138000\r")
        first = (await sub.get()).json()
        assert await sub.drain(0.3) == []
        await asyncio.sleep(0.4)
        scanner.write(b"13800138000\r")
        again = (await sub.get()).json()
    assert first["event_id"] != again["event_id"]
    scanner.close()
