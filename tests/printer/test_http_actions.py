"""Printer actions through the gateway's local HTTP API (a real process, a TCP printer)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.support.broker import Mosquitto
from tests.support.gateway import GatewayProcess, write_config


async def test_print_and_drawer_over_http(tmp_path: Path, broker: Mosquitto, gateways) -> None:
    received = bytearray()

    async def printer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):  # status polling is off: just take the bytes
            received.extend(data)

    server = await asyncio.start_server(printer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        devices=[{"id": "printer1", "driver": "escpos", "terminal": "pos1",
                  "connection": "network", "host": "127.0.0.1", "port": port,
                  "status": False}],
    )
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    async with aiohttp.ClientSession(gateway.base_url) as http:
        async with asyncio.timeout(10):
            while gateway.status()["devices"][0]["state"] != "online":
                await asyncio.sleep(0.1)
        async with http.post("/v1/devices/printer1/actions/print",
                             json={"text": "hello store"}) as response:
            assert response.status == 200, await response.text()
        async with http.post("/v1/devices/printer1/actions/open-drawer", json={}) as response:
            assert response.status == 200
        async with http.post("/v1/devices/printer1/actions/print",
                             json={"template": "no-such-template"}) as response:
            assert response.status == 422
            assert (await response.json())["error"]["code"] == "invalid_action"
        async with http.post("/v1/devices/printer1/actions/print", data=b"[1]") as response:
            assert response.status == 422
    async with asyncio.timeout(5):
        while b"\x1bp" not in received:
            await asyncio.sleep(0.05)
    assert b"hello store" in received
    server.close()
