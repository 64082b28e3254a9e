"""Resolution through central: resolved, unknown, unresolved, the offline cache."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.broker import Mosquitto
from tests.support.central import CentralProcess
from tests.support.mqtt import subscribed

IDENTIFY = "gatewayd/v1/store-1/terminals/pos-1/identify"


async def phases(sub: Any, count: int, timeout: float = 10) -> dict[str, dict[str, Any]]:
    """The next ``count`` non-detected events, by event_id."""
    out: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(timeout):
        while len(out) < count:
            event = (await sub.get(timeout=timeout)).json()
            if event["phase"] != "detected":
                out[event["event_id"]] = event
    return out


async def test_known_card_resolves_and_unknown_is_unknown(
    broker: Mosquitto, central: CentralProcess, linked
) -> None:
    gateway = linked()
    gateway.process.start()
    card = central.keys["samples"]["card_numbers"][0]
    async with subscribed(broker.port, IDENTIFY) as sub:
        await asyncio.sleep(0.3)
        gateway.scanner.write(f"{card}\r".encode())
        detected = (await sub.get()).json()
        resolved = (await sub.get()).json()
        gateway.scanner.write(b"13700000000\r")  # a phone no member has
        unknown = next(
            e
            for e in [(await sub.get()).json(), (await sub.get()).json()]
            if e["phase"] != "detected"
        )
    assert detected["phase"] == "detected" and detected["member"] is None
    assert resolved["event_id"] == detected["event_id"]
    assert resolved["phase"] == "resolved" and resolved["source"] == "central"
    assert resolved["member"]["name"] and resolved["member"]["phone_masked"]
    assert "phone" not in resolved["member"]
    assert resolved["member"]["card"]["number"] == card
    assert unknown["phase"] == "unknown"
    assert unknown["token"]["reason"] in ("unknown_token", "unknown")
    assert central.recorded([detected["event_id"], unknown["event_id"]]) == {
        detected["event_id"]: 1,
        unknown["event_id"]: 1,
    }


async def test_offline_cache_resolves_known_cards_but_never_payment_codes(
    broker: Mosquitto, central: CentralProcess, linked
) -> None:
    gateway = linked()
    gateway.process.start()
    card = central.keys["samples"]["card_numbers"][1]
    async with subscribed(broker.port, IDENTIFY) as sub:
        await asyncio.sleep(0.3)
        gateway.scanner.write(f"{card}\r".encode())
        online = await phases(sub, 1)
        central.stop()
        await asyncio.sleep(0.6)  # past the repeat window
        gateway.scanner.write(f"{card}\r".encode())
        gateway.scanner.write(b"134567890123456789\r")
        offline = await phases(sub, 2)
    by_kind = {e["token"]["kind"]: e for e in offline.values()}
    assert next(iter(online.values()))["phase"] == "resolved"
    cached = by_kind["card_number"]
    assert cached["phase"] == "resolved" and cached["source"] == "cache"
    assert cached["member"]["id"] == next(iter(online.values()))["member"]["id"]
    assert by_kind["wechat_payment_code"]["phase"] == "unresolved"
    assert by_kind["wechat_payment_code"]["member"] is None
