"""The local HTTP API over real sockets: auth, limits, inputs, SSE replay, metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.support.broker import Mosquitto
from tests.support.gateway import GatewayProcess, write_config

TOKEN = "s3cret-token-0123456789"


@pytest.fixture
def gateway(tmp_path: Path, broker: Mosquitto, gateways) -> GatewayProcess:
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        extra={"http": {"token": TOKEN}},
        devices=[
            {
                "id": "kiosk1",
                "driver": "serial_scanner",
                "terminal": "k1",
                "port": str(tmp_path / "absent-port"),
            }
        ],
    )
    gateways.append(process := GatewayProcess(config))
    return process.start()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def test_token_required_except_healthz(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession(gateway.base_url) as http:
        async with http.get("/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok"}
        for path in ("/v1/status", "/v1/events", "/metrics"):
            async with http.get(path) as response:
                assert response.status == 401
                assert (await response.json())["error"]["code"] == "unauthorized"
        async with http.get("/v1/status", headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        async with http.get("/v1/status", headers=auth()) as response:
            body = await response.json()
    assert body["gateway"] == "gw1"
    assert body["devices"][0]["device"] == "kiosk1"
    assert body["devices"][0]["state"] == "offline"  # its port does not exist


async def test_oversized_body_gets_413(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession(gateway.base_url, headers=auth()) as http:
        async with http.post("/v1/inputs", data=b"x" * (64 * 1024 + 1)) as response:
            assert response.status == 413
            assert (await response.json())["error"]["code"] == "body_too_large"


async def test_inputs_become_events_and_replay_after_last_event_id(
    gateway: GatewayProcess,
) -> None:
    async with aiohttp.ClientSession(gateway.base_url, headers=auth()) as http:
        async with http.post(
            "/v1/inputs", json={"device": "kiosk1", "text": "13800138000", "method": "manual"}
        ) as response:
            assert response.status == 201
            first = await response.json()
        assert first["method"] == "manual" and first["token"]["kind"] == "phone"
        async with http.post("/v1/inputs", json={"device": "nope", "text": "1"}) as response:
            assert response.status == 404
        async with http.post("/v1/inputs", json={"text": "1"}) as response:
            assert response.status == 422
            assert "device: required" in (await response.json())["error"]["message"]
        async with http.post("/v1/inputs", data=b"{not json") as response:
            assert response.status == 422
        async with http.post("/v1/inputs", json={"device": "kiosk1", "text": "   "}) as response:
            assert response.status == 422
        # An id from an earlier gateway process replays the whole buffer; note the id of
        # the first event's message, then resume after it.
        first_id = None
        async with http.get("/v1/events", headers={"Last-Event-ID": "old-boot.1"}) as sse:
            async with asyncio.timeout(5):
                last_id = None
                async for raw in sse.content:
                    line = raw.decode().strip()
                    if line.startswith("id: "):
                        last_id = line[4:]
                    if line.startswith("data: ") and first["event_id"] in line:
                        first_id = last_id
                        break
        assert first_id is not None
        async with http.post(
            "/v1/inputs", json={"device": "kiosk1", "text": "13900139000"}
        ) as response:
            second = await response.json()
        async with http.get("/v1/events", headers={"Last-Event-ID": first_id}) as sse:
            data = []
            async with asyncio.timeout(5):
                async for raw in sse.content:
                    line = raw.decode().strip()
                    if line.startswith("data: "):
                        data.append(line)
                        break
    assert second["event_id"] in data[0]
    assert first["event_id"] not in data[0]


async def test_metrics_and_unknown_actions(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession(gateway.base_url, headers=auth()) as http:
        async with http.post("/v1/inputs", json={"device": "kiosk1", "text": "88000001"}):
            pass
        async with http.get("/metrics") as response:
            text = await response.text()
        async with http.post("/v1/devices/kiosk1/actions/print", json={}) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "unsupported_action"
        async with http.get("/no/such/path") as response:
            assert response.status == 404
            assert "error" in await response.json()
    assert 'gatewayd_identify_events_total{kind="card_number",method="barcode"} 1.0' in text
    assert "gatewayd_mqtt_connected 1.0" in text
