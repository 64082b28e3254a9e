"""``gatewayd simulate KIND`` as field engineers run it: its own process, a gateway reading it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.drivers._helpers import DEVICES, IDENTIFY, next_event, start_gateway, wait_state
from tests.support.broker import Mosquitto
from tests.support.gateway import ROOT
from tests.support.mqtt import subscribed


@pytest.fixture
def simulators() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def simulate(started: list, *args: str) -> str:
    """Start the simulator; the port path it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "simulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    started.append(process)
    assert process.stdout is not None
    return process.stdout.readline().decode().strip()


async def test_idcard_from_a_card_file_paced_at_57600(
    tmp_path: Path, broker: Mosquitto, gateways, simulators
) -> None:
    card = tmp_path / "card.json"
    card.write_text(
        json.dumps(
            {
                "name": "王小明",
                "sex": "male",
                "nation": "01",
                "birth": "1880-01-01",
                "address": "广东省饶平县",
                "id_number": "440524188001010014",
                "authority": "饶平县公安局",
                "valid_from": "2010-01-01",
                "valid_to": "2030-01-01",
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    link = tmp_path / "idr"
    args = ["idcard", "--link", str(link), "--card", str(card), "--baud", "57600", "--pace"]
    assert simulate(simulators, *args, "--interval", "1") == str(link)
    device = {"id": "idr1", "profile": "idcard-routon-cvr100", "terminal": "pos1"}
    start_gateway(tmp_path, broker, gateways, [{**device, "port": str(link), "poll_ms": 200}])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "idr1", "online", timeout=8)
        event = await next_event(sub, timeout=6)
    assert event["method"] == "id_card"
    assert event["token"] == {"kind": "id_number", "value": "440524188001010014"}


async def test_modem_plays_calls(tmp_path: Path, broker: Mosquitto, gateways, simulators) -> None:
    link = tmp_path / "modem"
    device = {"id": "line1", "profile": "modem-conexant-cx93010", "terminal": "pos1"}
    start_gateway(tmp_path, broker, gateways, [{**device, "port": str(link)}])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "line1", "offline")  # no modem yet
        args = ["modem", "--link", str(link), "--number", "02012345678", "--interval", "1.5"]
        simulate(simulators, *args, "--ring-period", "0.2")
        await wait_state(sub, "line1", "online", timeout=5)
        event = await next_event(sub, timeout=6)
    assert event["method"] == "caller_id"
    assert event["token"] == {"kind": "phone", "value": "02012345678", "mobile": False, "rings": 1}


async def test_msr_swipes(tmp_path: Path, broker: Mosquitto, gateways, simulators) -> None:
    link = tmp_path / "msr"
    simulate(simulators, "msr", "--link", str(link), "--code", "8800001234567890")
    device = {"id": "msr1", "profile": "msr-generic-serial", "terminal": "pos1"}
    start_gateway(tmp_path, broker, gateways, [{**device, "port": str(link)}])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        event = await next_event(sub, timeout=6)
    assert event["method"] == "magstripe"
    assert event["token"]["value"] == "8800001234567890"


def test_unknown_kind_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gatewayd", "simulate", "toaster"],
        capture_output=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"scanner, msr, idcard, modem, face, palm" in result.stderr
