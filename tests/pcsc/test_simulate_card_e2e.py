"""End to end: ``gatewayd simulate card`` through vpcd and pcscd → gatewayd → MQTT."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.broker import Mosquitto
from tests.support.gateway import GatewayProcess, write_config
from tests.support.mqtt import subscribed
from tests.support.vpcd_card import PcscdProcess


def simulate_card(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatewayd", "simulate", "card", "--repeat", "1", "--hold", "1.5",
         *args],
        capture_output=True, text=True, timeout=60,
    )


async def test_card_uid_and_stored_number_reach_mqtt(
    tmp_path: Path, broker: Mosquitto, gateways, pcscd_up: PcscdProcess
) -> None:
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        devices=[
            {"id": "ic-uid", "driver": "pcsc", "terminal": "pos1",
             "reader": "Virtual PCD 00 00"},
            {"id": "ic-number", "driver": "pcsc", "terminal": "pos2",
             "reader": "Virtual PCD 00 01", "read": "mifare", "block": 4,
             "encoding": "ascii"},
        ],
    )
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    async with subscribed(broker.port, "gatewayd/v1/s1/terminals/+/identify") as sub:
        import asyncio

        first = await asyncio.to_thread(simulate_card, "--uid", "0a0b0c0d")
        assert first.returncode == 0, first.stderr
        assert "card 0A0B0C0D on Virtual PCD 00 00" in first.stdout
        uid_event = (await sub.get(timeout=10)).json()
        number = b"8800001234".hex()
        second = await asyncio.to_thread(simulate_card, "--reader", "1", "--block",
                                         f"4={number}")
        assert second.returncode == 0, second.stderr
        number_event = (await sub.get(timeout=10)).json()
    assert uid_event["method"] == "ic_card" and uid_event["terminal"] == "pos1"
    assert uid_event["token"] == {"kind": "ic_uid", "value": "0A0B0C0D"}
    assert number_event["terminal"] == "pos2"
    assert number_event["token"]["kind"] == "card_number"
    assert number_event["token"]["value"] == "8800001234"


def test_bad_block_spec_is_a_clear_error() -> None:
    result = simulate_card("--block", "4=zz")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
