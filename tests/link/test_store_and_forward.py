"""Store and forward: central down, gateway killed, central slow; nothing lost or doubled."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.broker import Mosquitto
from tests.support.central import CentralProcess
from tests.support.gateway import GatewayProcess
from tests.support.mqtt import subscribed

IDENTIFY = "gatewayd/v1/store-1/terminals/pos-1/identify"


def codes(start: int, count: int) -> bytes:
    return b"".join(f"{88000000 + n}\r".encode() for n in range(start, start + count))


async def detected_ids(sub: Any, count: int, timeout: float = 60) -> list[str]:
    ids: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            while len(ids) < count:
                event = (await sub.get(timeout=timeout)).json()
                if event["phase"] == "detected":
                    ids.append(event["event_id"])
    except TimeoutError:
        raise AssertionError(f"{len(ids)} of {count} detected events in {timeout} s") from None
    return ids


async def until_recorded(central: CentralProcess, ids: list[str], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while min(central.recorded(ids).values()) < 1:
            await asyncio.sleep(0.5)


async def write_slowly(gateway_scanner: Any, start: int, count: int, chunk: int = 200) -> None:
    for offset in range(start, start + count, chunk):
        # A pty write blocks when the reader lags: keep it off this event loop.
        await asyncio.to_thread(
            gateway_scanner.write, codes(offset, min(chunk, start + count - offset))
        )
        await asyncio.sleep(0.02)


async def test_central_down_for_10000_scans_then_back(
    broker: Mosquitto, central: CentralProcess, linked
) -> None:
    gateway = linked()
    gateway.process.start()
    central.stop()
    total = int(__import__("os").environ.get("LINK_SCANS", "10000"))
    async with subscribed(broker.port, IDENTIFY) as sub:
        await asyncio.sleep(0.3)
        writer = asyncio.create_task(write_slowly(gateway.scanner, 0, total))
        ids = await detected_ids(sub, total, timeout=120)
        await writer
    assert len(set(ids)) == total
    status = gateway.process.status()
    assert status["central"]["outbox"]["depth"] >= total
    central.start()
    await until_recorded(central, ids, timeout=240)
    counts = central.recorded(ids)
    assert set(counts.values()) == {1}  # every identification exactly once


async def test_kill_9_mid_stream_loses_and_doubles_nothing(
    broker: Mosquitto, central: CentralProcess, linked
) -> None:
    gateway = linked()
    gateway.process.start()
    async with subscribed(broker.port, IDENTIFY) as sub:
        await asyncio.sleep(0.3)
        # Scans keep arriving across the crash; those read by no gateway are simply not
        # accepted (never published), everything published must reach central once.
        writer = asyncio.create_task(write_slowly(gateway.scanner, 0, 2000, chunk=10))
        first = await detected_ids(sub, 500, timeout=60)
        gateway.process.kill()  # SIGKILL mid-stream
        again = GatewayProcess(gateway.config)
        again.start()
        await writer
        rest = await _drain_detected(sub)
    seen = first + rest
    assert len(rest) > 100  # the restarted gateway went on reading
    await until_recorded(central, seen, timeout=120)
    counts = central.recorded(seen)
    assert set(counts.values()) == {1}
    # Nothing doubled at central across the crash: every recorded event was seen once.
    assert len(central.recorded()) >= len(set(seen))
    again.kill()


async def _drain_detected(sub: Any) -> list[str]:
    out = []
    while True:
        try:
            event = (await sub.get(timeout=3)).json()
        except TimeoutError:
            return out
        if event["phase"] == "detected":
            out.append(event["event_id"])


class SlowProxy:
    """A TCP proxy that holds every request for ``delay`` seconds before passing it on."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, slow: bool) -> None:
            try:
                while data := await src.read(65536):
                    if slow:
                        await asyncio.sleep(self.delay)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(
            pipe(reader, upstream_writer, True), pipe(upstream_reader, writer, False)
        )


async def test_slow_central_gives_unresolved_in_time_and_still_records(
    tmp_path: Path, broker: Mosquitto, central: CentralProcess, linked
) -> None:
    proxy = SlowProxy(central.port, delay=1.5)
    await proxy.start()
    gateway = linked(url=f"http://127.0.0.1:{proxy.port}")
    gateway.process.start()
    card = central.keys["samples"]["card_numbers"][2]
    async with subscribed(broker.port, IDENTIFY) as sub:
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        gateway.scanner.write(f"{card}\r".encode())
        detected = (await sub.get()).json()
        started = loop.time()
        unresolved = (await sub.get(timeout=5)).json()
        elapsed = loop.time() - started
    assert unresolved["event_id"] == detected["event_id"]
    assert unresolved["phase"] == "unresolved"
    assert elapsed < 1.3  # the 800 ms timeout, not the 1.5 s central
    await until_recorded(central, [detected["event_id"]], timeout=30)
    assert central.recorded([detected["event_id"]]) == {detected["event_id"]: 1}


async def test_heartbeats_reach_central(broker: Mosquitto, central: CentralProcess, linked) -> None:
    gateway = linked(heartbeat_interval=0.5)
    gateway.process.start()
    async with asyncio.timeout(10):
        while True:
            gateways = central.admin("GET", "/v1/gateways?store=store-1")["items"]
            mine = next(g for g in gateways if g["id"] == "gw-1")
            if mine["state"] == "online":
                break
            await asyncio.sleep(0.3)
    assert mine["stale"] is False
    request = urllib.request.Request(f"{gateway.process.base_url}/v1/status")
    with urllib.request.urlopen(request) as response:
        status = json.loads(response.read())
    assert status["central"]["reachable"] is True
