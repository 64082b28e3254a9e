"""``/metrics`` scraped over HTTP after real traffic: every family the issue lists has values.

The gateway runs as a real process with a simulated serial scanner; central is either a port
nobody listens on (every event ``unresolved``, the outbox filling) or a real seeded central.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gatewayd.protocols.tokens import MAX_TOKEN_LENGTH
from gatewayd.simulate import PtyDevice
from tests.support.broker import Mosquitto
from tests.support.central import CentralProcess, new_secret, seed_demo
from tests.support.gateway import GatewayProcess, write_config
from tests.support.net import free_port

TOKEN = "metrics-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = new_secret()
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def start_gateway(
    tmp_path: Path,
    broker: Mosquitto,
    gateways: list[GatewayProcess],
    central: dict[str, Any],
) -> tuple[GatewayProcess, PtyDevice]:
    scanner = PtyDevice(tmp_path / "scanner")
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        gateway_id="gw-1",
        store="store-1",
        extra={"http": {"token": TOKEN}, "central": central},
        devices=[
            {"id": "scan1", "driver": "serial_scanner", "terminal": "pos-1", "port": scanner.path}
        ],
    )
    gateways.append(process := GatewayProcess(config))
    process.start()
    return process, scanner


async def scrape(http: aiohttp.ClientSession) -> Samples:
    async with http.get("/metrics", headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def labelled(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample, labels) in samples if sample == name]


async def wait_for(http: aiohttp.ClientSession, check: Any, timeout: float = 10) -> Samples:
    """Scrapes until ``check(samples)`` holds (the pipeline is asynchronous)."""
    async with asyncio.timeout(timeout):
        while True:
            samples = await scrape(http)
            try:
                if check(samples):
                    return samples
            except KeyError:
                pass
            await asyncio.sleep(0.1)


async def test_every_family_after_traffic_with_central_down(
    tmp_path: Path, broker: Mosquitto, gateways: list[GatewayProcess]
) -> None:
    dead_central = {"url": f"http://127.0.0.1:{free_port()}", "key": "k" * 32}
    gateway, scanner = start_gateway(tmp_path, broker, gateways, dead_central)
    async with aiohttp.ClientSession(gateway.base_url) as http:
        async with http.get("/v1/events", headers=AUTH) as stream:
            assert stream.status == 200
            await stream.content.readline()  # the stream is open: one SSE client
            samples = await scrape(http)
            assert value(samples, "gatewayd_sse_clients") == 1
        scanner.write(b"8800001234567\r")
        scanner.write(("A" * (MAX_TOKEN_LENGTH + 1)).encode() + b"\r")  # rejected: too long
        await asyncio.sleep(0.6)  # past the repeat window
        async with http.post(
            "/v1/inputs", json={"device": "scan1", "text": "8800001234567"}, headers=AUTH
        ) as response:
            assert response.status == 201
        async with http.post("/v1/devices/scan1/actions/print", json={}, headers=AUTH) as response:
            assert response.status == 404
        async with http.get("/v1/status") as response:
            assert response.status == 401
        async with http.get("/no/such/path", headers=AUTH) as response:
            assert response.status == 404

        samples = await wait_for(
            http,
            lambda s: (
                value(
                    s,
                    "gatewayd_events_total",
                    method="barcode",
                    kind="card_number",
                    phase="unresolved",
                )
                == 2
            ),
        )
    card = {"method": "barcode", "kind": "card_number"}
    assert value(samples, "gatewayd_events_total", **card, phase="detected") == 2
    assert value(samples, "gatewayd_identify_events_total", **card) == 4  # every phase
    latency = {"phase": "unresolved", "source": "none"}
    assert value(samples, "gatewayd_identify_latency_seconds_count", **latency) == 2
    assert 0 < value(samples, "gatewayd_identify_latency_seconds_sum", **latency) < 2 * 0.8 + 1
    assert value(samples, "gatewayd_identify_latency_seconds_bucket", **latency, le="+Inf") == 2
    assert value(samples, "gatewayd_device_errors_total", device="scan1") == 1
    assert value(samples, "gatewayd_outbox_depth") >= 2  # both identifications wait for central
    assert value(samples, "gatewayd_central_reachable") == 0
    assert value(samples, "gatewayd_mqtt_connected") == 1
    assert value(samples, "gatewayd_sse_clients") == 0
    http_count = "gatewayd_http_request_duration_seconds_count"
    assert value(samples, http_count, route="/v1/inputs", method="POST", status="201") == 1
    action = "/v1/devices/{device}/actions/{action}"
    assert value(samples, http_count, route=action, method="POST", status="404") == 1
    assert value(samples, http_count, route="/v1/status", method="GET", status="401") == 1
    assert value(samples, http_count, route="unmatched", method="GET", status="404") == 1
    routes = {labels["route"] for labels in labelled(samples, http_count)}
    assert "/v1/events" not in routes  # a stream's lifetime is not a request latency
    assert not any("scan1" in route or "no/such" in route for route in routes)
    assert (
        value(
            samples,
            "gatewayd_http_request_duration_seconds_sum",
            route="/v1/inputs",
            method="POST",
            status="201",
        )
        < 1.0
    )


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralProcess]:
    workdir = tmp_path / "central"
    workdir.mkdir()
    keys = seed_demo(workdir, SECRET)
    template = tmp_path / "template.db"
    (workdir / "central.db").rename(template)
    process = CentralProcess(workdir, template, keys, SECRET).start()
    yield process
    process.stop()


async def test_resolution_latency_and_reachability_with_central_up(
    tmp_path: Path, broker: Mosquitto, gateways: list[GatewayProcess], central: CentralProcess
) -> None:
    link = {"url": central.url, "key": central.keys["gateways"]["gw-1"]["api_key"]}
    gateway, scanner = start_gateway(tmp_path, broker, gateways, link)
    known = central.keys["samples"]["card_numbers"][0]
    async with aiohttp.ClientSession(gateway.base_url) as http:
        scanner.write(f"{known}\r".encode())
        await asyncio.sleep(0.6)
        scanner.write(b"13700000000\r")  # a phone no member has
        # Both answers: on a loaded machine the second may come back before the first.
        samples = await wait_for(
            http,
            lambda s: all(
                value(s, "gatewayd_identify_latency_seconds_count", phase=phase, source="central")
                == 1
                for phase in ("unknown", "resolved")
            ),
        )
    resolved = {"phase": "resolved", "source": "central"}
    assert value(samples, "gatewayd_identify_latency_seconds_count", **resolved) == 1
    assert 0 < value(samples, "gatewayd_identify_latency_seconds_sum", **resolved) < 0.8
    assert value(samples, "gatewayd_central_reachable") == 1
    assert (
        value(samples, "gatewayd_events_total", method="barcode", kind="phone", phase="unknown")
        == 1
    )
