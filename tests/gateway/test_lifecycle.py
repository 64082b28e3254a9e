"""SIGTERM drains and exits 0, SIGHUP restarts only changed devices, systemd is notified."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from gatewayd.simulate import PtyDevice
from tests.support.broker import Mosquitto
from tests.support.gateway import GatewayProcess, write_config
from tests.support.mqtt import subscribed


def two_scanners(tmp_path: Path, broker: Mosquitto, **changes: object) -> tuple[Path, list]:
    a, b = PtyDevice(tmp_path / "a"), PtyDevice(tmp_path / "b")
    devices = [
        {"id": "a", "driver": "serial_scanner", "terminal": "pos1", "port": a.path},
        {"id": "b", "driver": "serial_scanner", "terminal": "pos2", "port": b.path},
    ]
    return write_config(tmp_path / "gw.toml", mqtt_url=broker.url, devices=devices), [a, b]


async def test_sigterm_drains_and_exits_zero_within_5s(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    config, (a, b) = two_scanners(tmp_path, broker)
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    async with subscribed(broker.port, "gatewayd/v1/s1/#") as sub:
        await asyncio.sleep(0.3)
        a.write(b"".join(f"{88000000 + n}\r".encode() for n in range(200)))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        code = await asyncio.to_thread(gateway.stop)
        elapsed = time.monotonic() - started
        received = await sub.drain(1.0)
    assert code == 0
    assert elapsed < 5
    identify = [m for m in received if m.topic.endswith("/identify")]
    assert len({m.json()["event_id"] for m in identify}) == 200
    status = [m.json() for m in received if m.topic.endswith("/status")]
    assert status[-1]["state"] == "offline"
    a.close()
    b.close()


async def test_sighup_restarts_only_changed_devices(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    config, (a, b) = two_scanners(tmp_path, broker)
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    c = PtyDevice(tmp_path / "c")
    text = config.read_text()
    text = text.replace('terminal = "pos2"', 'terminal = "pos9"')
    text += (
        f'[[devices]]\nid = "c"\ndriver = "serial_scanner"\nterminal = "pos3"\nport = "{c.path}"\n'
    )
    config.write_text(text)
    gateway.signal(signal.SIGHUP)
    async with asyncio.timeout(5):
        while {d["device"] for d in gateway.status()["devices"]} != {"a", "b", "c"}:
            await asyncio.sleep(0.05)
    reloaded = [e for e in gateway.log_events() if e.get("event") == "reloaded"]
    assert reloaded[-1]["changed"] == ["b", "c"]
    terminals = {d["device"]: d["terminal"] for d in gateway.status()["devices"]}
    assert terminals == {"a": "pos1", "b": "pos9", "c": "pos3"}
    # "a" was never restarted: exactly one online transition for it in the log.
    a_online = [
        e
        for e in gateway.log_events()
        if e.get("event") == "device_state"
        and e.get("device") == "a"
        and e.get("state") == "online"
    ]
    assert len(a_online) == 1
    for device in (a, b, c):
        device.close()


async def test_systemd_notify_ready_watchdog_stopping(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.setblocking(False)
    config, devices = two_scanners(tmp_path, broker)
    gateway = GatewayProcess(
        config, env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"}
    )
    gateways.append(gateway)
    gateway.start()
    await asyncio.sleep(0.6)
    assert gateway.stop() == 0
    messages = []
    while True:
        try:
            messages.append(sock.recv(256).decode())
        except BlockingIOError:
            break
    sock.close()
    assert "READY=1" in messages
    assert messages.count("WATCHDOG=1") >= 2
    assert messages[-1] == "STOPPING=1"
    for device in devices:
        device.close()


async def test_sighup_applies_terminal_settings_such_as_kiosk_keys(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    config, devices = two_scanners(tmp_path, broker)
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    key = "kiosk-key-for-reload-test-0123456789"

    def sign_in() -> int:
        url = f"{gateway.base_url}/kiosk?terminal=kiosk-1&key={key}"
        opener = urllib.request.build_opener(NoRedirect)
        try:
            return int(opener.open(url, timeout=5).status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert await asyncio.to_thread(sign_in) == 404  # no such kiosk terminal yet
    digest = hashlib.sha256(key.encode()).hexdigest()
    config.write_text(
        config.read_text() + f'[[terminals]]\nid = "kiosk-1"\nkiosk_key_sha256 = "{digest}"\n'
    )
    gateway.signal(signal.SIGHUP)
    async with asyncio.timeout(5):
        while not [e for e in gateway.log_events() if e.get("event") == "reloaded"]:
            await asyncio.sleep(0.05)
    assert await asyncio.to_thread(sign_in) == 303  # the new key signs the kiosk in
    for device in devices:
        device.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect's own status instead of following it."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
