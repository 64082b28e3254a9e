"""``gatewayd demo``: a whole store gateway on one machine, no hardware and no broker needed.

An embedded MQTT broker, a simulated serial scanner on a pseudo-terminal that presents demo
codes every few seconds, and the gateway itself; the events are printed live as a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from gatewayd.config import settings_from_dict
from gatewayd.events import DeviceStatus, IdentifyEvent
from gatewayd.logging import configure_logging
from gatewayd.protocols.checks import luhn_check_digit
from gatewayd.simulate import PtyDevice
from gatewayd.sinks import Sink
from gatewayd.watch import COLUMNS, _row, format_event

_MEMBER = "96" + "00000000000000042"
DEMO_CODES = (
    "13800138000",  # a phone number typed at the counter
    "134567890123456789",  # a WeChat payment code
    _MEMBER + luhn_check_digit(_MEMBER),  # a member code from the member centre
    "6200000000000000017",  # a UnionPay payment code
    "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ",  # the legacy 36-letter WeChat member code
    "8800001234",  # a plain barcode card
)


class TablePrinter(Sink):
    """Prints every event and device state as a table row."""

    name = "demo-table"
    immediate = True

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def offer(self, item: IdentifyEvent | DeviceStatus) -> None:
        kind = "identify" if isinstance(item, IdentifyEvent) else "device"
        print(format_event(kind, item.model_dump(mode="json")), file=self.out, flush=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _present_codes(scanner: PtyDevice, interval: float) -> None:
    for code in itertools.cycle(DEMO_CODES):
        await asyncio.sleep(interval)
        scanner.write(code.encode() + b"\r\n")


async def run_demo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from gatewayd.daemon import Gateway

    out = out or sys.stdout
    configure_logging("warning")
    workdir = Path(tempfile.mkdtemp(prefix="gatewayd-demo-"))
    scanner = PtyDevice(workdir / "scanner")
    mqtt_port, http_port = _free_port(), args.http_port or _free_port()
    settings = settings_from_dict(
        {
            "gateway": {"id": "demo-gw", "store": "demo-store", "state_dir": str(workdir)},
            "mqtt": {"url": "embedded", "embedded_listen": f"127.0.0.1:{mqtt_port}"},
            "http": {"listen": f"127.0.0.1:{http_port}"},
            "devices": [
                {"id": "lane1-scanner", "driver": "serial_scanner", "terminal": "pos-1",
                 "port": scanner.path},
            ],
        },
        source="<demo>",
    )
    gateway = Gateway(settings, extra_sinks=[TablePrinter(out)])
    print(
        f"gatewayd demo: store demo-store, gateway demo-gw (files in {workdir})\n"
        f"  local API   http://127.0.0.1:{http_port}/v1/status\n"
        f"  live events http://127.0.0.1:{http_port}/v1/events   (EventSource / curl -N)\n"
        f"  MQTT        mqtt://127.0.0.1:{mqtt_port}   "
        f"(gatewayd watch --mqtt mqtt://127.0.0.1:{mqtt_port})\n"
        f"  scanner     {scanner.path} presents a demo code every {args.interval:g} s\n"
        "Ctrl-C stops.\n",
        file=out, flush=True,
    )
    print(_row(COLUMNS), file=out, flush=True)
    run = asyncio.create_task(gateway.run(install_signals=True))
    feeder = asyncio.create_task(_present_codes(scanner, args.interval))
    try:
        if args.duration:
            await asyncio.wait({run}, timeout=args.duration)
        else:
            await asyncio.wait({run})
    finally:
        feeder.cancel()
        gateway.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        scanner.close()
    return 0
