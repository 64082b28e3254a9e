"""Face and palm payment terminals (serial line profiles) and serial scanners end to end,
with the device played by ``gatewayd simulate`` in its own process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.simulate import PtyDevice
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


def simulate(started: list, *args: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "simulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    started.append(process)
    return process


@pytest.mark.parametrize(
    ("kind", "profile", "method", "code", "token_kind"),
    [
        ("face", "face-wechat-qingwa", "face", "134567890123456789", "wechat_payment_code"),
        ("face", "face-alipay-dragonfly", "face", "281234567890123456", "alipay_payment_code"),
        ("palm", "palm-wechat-palm", "palm", "134567890123456789", "wechat_payment_code"),
    ],
)
async def test_payment_terminal_profiles(
    tmp_path: Path, broker: Mosquitto, gateways, simulators, kind, profile, method, code, token_kind
) -> None:
    link = tmp_path / "terminal"
    # Codes further apart than the gateway's 500 ms repeat window: one sent before the
    # subscriber is ready is lost, the next one must not count as its repeat.
    sim = simulate(simulators, kind, "--link", str(link), "--code", code, "--interval", "0.7")
    assert sim.stdout is not None
    assert sim.stdout.readline().decode().strip() == str(link)  # the port path comes first
    device = {"id": "t1", "profile": profile, "terminal": "pos1", "port": str(link)}
    start_gateway(tmp_path, broker, gateways, [device])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "t1", "online")
        event = await next_event(sub)
    assert event["method"] == method
    assert event["token"] == {"kind": token_kind, "value": code}


async def test_serial_scanner_profile_and_doubled_legacy_code(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    """An over-sensitive scanner sends the 36-letter member code twice in one read."""
    scanner = PtyDevice(tmp_path / "scanner")
    device = {"id": "s1", "profile": "scanner-generic-rs232", "terminal": "pos1"}
    start_gateway(tmp_path, broker, gateways, [{**device, "port": scanner.path}])
    legacy = "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ"
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "s1", "online")
        scanner.write((legacy + legacy).encode() + b"\r\n")
        event = await next_event(sub)
    assert event["method"] == "barcode"
    assert event["token"] == {"kind": "legacy_member_code", "value": legacy}
    scanner.close()
