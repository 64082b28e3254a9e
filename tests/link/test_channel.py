"""The channel from central: terminal messages on MQTT, commands, resumed after drops."""

from __future__ import annotations

import asyncio

from tests.support.broker import Mosquitto
from tests.support.central import CentralProcess
from tests.support.mqtt import subscribed

MESSAGES = "gatewayd/v1/store-1/terminals/+/messages"


async def test_messages_reach_terminals_and_resume_without_duplicates(
    broker: Mosquitto, central: CentralProcess, linked
) -> None:
    gateway = linked()
    gateway.process.start()
    async with subscribed(broker.port, MESSAGES) as sub:
        await asyncio.sleep(1.0)  # the gateway opens its channel
        first = central.admin(
            "POST",
            "/v1/stores/store-1/messages",
            {
                "terminal": "pos-1",
                "kind": "service_reminder",
                "payload": {"text": "Member 1: car service due in 3 days"},
            },
        )
        message = await sub.get(timeout=10)
        assert message.topic == "gatewayd/v1/store-1/terminals/pos-1/messages"
        body = message.json()
        assert body["id"] == first["id"] and body["kind"] == "service_reminder"
        assert body["payload"]["text"].startswith("Member 1")
        central.stop()  # the channel drops
        await asyncio.sleep(0.5)
        central.start()
        second = central.admin(
            "POST", "/v1/stores/store-1/messages", {"payload": {"text": "to every terminal"}}
        )
        other_store = central.admin(
            "POST", "/v1/stores/store-2/messages", {"payload": {"text": "not for store-1"}}
        )
        message = await sub.get(timeout=40)
        assert message.topic == "gatewayd/v1/store-1/terminals/all/messages"
        assert message.json()["id"] == second["id"]
        assert await sub.drain(1.5) == []  # neither the first again nor store-2's
    assert other_store["id"] > second["id"]


async def test_reload_command_from_central(
    broker: Mosquitto, central: CentralProcess, linked
) -> None:
    gateway = linked()
    gateway.process.start()
    await asyncio.sleep(1.0)
    central.admin("POST", "/v1/gateways/gw-1/commands", {"command": "reload"})
    async with asyncio.timeout(10):
        while not any(e.get("event") == "reloaded" for e in gateway.process.log_events()):
            await asyncio.sleep(0.2)
