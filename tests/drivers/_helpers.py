"""Shared by the driver tests: a real gatewayd process, and waiting for what it publishes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.support.broker import Mosquitto
from tests.support.gateway import GatewayProcess, write_config
from tests.support.mqtt import Subscriber

IDENTIFY = "gatewayd/v1/s1/terminals/+/identify"
DEVICES = "gatewayd/v1/s1/gateways/gw1/devices/+"


def start_gateway(
    tmp_path: Path,
    broker: Mosquitto,
    gateways: list[GatewayProcess],
    devices: list[dict[str, Any]],
    *,
    device_toml: str = "",
    **kwargs: Any,
) -> GatewayProcess:
    """A gateway for ``devices``; ``device_toml`` is appended to the last device's table."""
    config = write_config(tmp_path / "gw.toml", mqtt_url=broker.url, devices=devices, **kwargs)
    if device_toml:
        config.write_text(config.read_text() + device_toml.strip() + "\n")
    gateway = GatewayProcess(config)
    gateways.append(gateway)
    gateway.start()
    return gateway


async def wait_state(sub: Subscriber, device: str, state: str, timeout: float = 5.0) -> float:
    """Seconds until ``device`` published ``state`` (retained messages count)."""
    start = time.monotonic()
    async with asyncio.timeout(timeout):
        while True:
            message = await sub.get(timeout=timeout, topic_suffix=f"/devices/{device}")
            if message.json()["state"] == state:
                return time.monotonic() - start


async def wait_all(sub: Subscriber, devices: list[str], state: str, timeout: float = 8.0) -> None:
    """Until every one of ``devices`` published ``state`` (other messages are dropped)."""
    waiting = set(devices)
    async with asyncio.timeout(timeout):
        while waiting:
            message = await sub.get(timeout=timeout)
            device = message.topic.rpartition("/")[2]
            if "/devices/" in message.topic and message.json()["state"] == state:
                waiting.discard(device)


async def next_event(sub: Subscriber, timeout: float = 5.0) -> dict[str, Any]:
    message = await sub.get(timeout=timeout, topic_suffix="/identify")
    assert not message.retain
    event: dict[str, Any] = message.json()
    return event


async def no_event(sub: Subscriber, seconds: float) -> None:
    messages = [m for m in await sub.drain(seconds) if m.topic.endswith("/identify")]
    assert messages == [], [m.json() for m in messages]


async def wait_log(gateway: GatewayProcess, event: str, timeout: float = 5.0) -> dict[str, Any]:
    """The first log line of ``event`` from the gateway's JSON log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in gateway.log_events():
            if line.get("event") == event:
                return line
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event!r} log line in:\n{gateway.log()}")
