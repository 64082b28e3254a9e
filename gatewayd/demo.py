"""``gatewayd demo``: a whole chain on one machine, no hardware, no broker, no database server.

It starts central (SQLite in a temporary folder, filled with the demo chain, a local stand-in
for WeChat Pay), one store gateway with the embedded MQTT broker, and simulated devices on
pseudo-terminals (barcode scanner, magnetic-stripe reader, ID-card reader, caller-ID modem,
face-payment terminal, and a virtual IC card when pcscd with vpcd runs). Demo members present
themselves every few seconds; the resolved events are printed live as a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from gatewayd.config import settings_from_dict
from gatewayd.events import DeviceStatus, IdentifyEvent, Phase
from gatewayd.logging import configure_logging
from gatewayd.simulate import PtyDevice
from gatewayd.sinks import Sink
from gatewayd.watch import COLUMNS, format_event, format_row

PAYMENT_CODE = "134567890123456789"
DEMO_OPENID = "o-demo-member-1"
STORE, GATEWAY, TERMINAL = "store-1", "gw-1", "pos-1"


class TablePrinter(Sink):
    """Prints every resolution (and device state) as a table row."""

    name = "demo-table"
    immediate = True

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def offer(self, item: IdentifyEvent | DeviceStatus) -> None:
        if isinstance(item, IdentifyEvent):
            if item.phase is Phase.DETECTED:
                return
            print(format_event("identify", item.model_dump(mode="json")), file=self.out, flush=True)
        else:
            print(format_event("device", item.model_dump(mode="json")), file=self.out, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoCentral:
    """Central as a child process over a seeded SQLite file, and the WeChat Pay stand-in."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "GATEWAYD_CENTRAL_SECRET": secrets.token_hex(32)}
        self.db = f"sqlite:///{workdir / 'central.db'}"
        self.keys: dict[str, Any] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self._wechat: web.AppRunner | None = None

    async def start(self) -> None:
        from gatewayd.central.testing import FakeWeChatPay

        fake = FakeWeChatPay(openids={PAYMENT_CODE: DEMO_OPENID})
        self._wechat = web.AppRunner(fake.app(), access_log=None)
        await self._wechat.setup()
        wechat_port = _free_port()
        await web.TCPSite(self._wechat, "127.0.0.1", wechat_port).start()
        self.env |= {
            "GATEWAYD_CENTRAL_WECHAT_BASE_URL": f"http://127.0.0.1:{wechat_port}",
            "GATEWAYD_CENTRAL_WECHAT_APPID": fake.appid,
            "GATEWAYD_CENTRAL_WECHAT_MCH_ID": fake.mch_id,
            "GATEWAYD_CENTRAL_WECHAT_API_KEY": fake.api_key,
        }
        keys = self.workdir / "keys.json"
        await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "gatewayd",
                "central",
                "seed",
                "--demo",
                "--db",
                self.db,
                "--keys-out",
                str(keys),
            ],
            check=True,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.keys = json.loads(keys.read_text())
        self.process = await asyncio.to_thread(self._spawn)
        for _ in range(200):
            try:
                await asyncio.to_thread(urllib.request.urlopen, f"{self.url}/healthz", None, 1)
                break
            except OSError:
                await asyncio.sleep(0.05)
        await asyncio.to_thread(
            self._admin,
            "/v1/members/1/payment-accounts",
            {"provider": "wechat", "account_id": DEMO_OPENID},
            "POST",
        )
        # The simulated ID-card reader's card belongs to member 5.
        from gatewayd.simulators import DEMO_CARD

        with contextlib.suppress(OSError):
            await asyncio.to_thread(
                self._admin, "/v1/members/5", {"id_number": DEMO_CARD.id_number}, "PATCH"
            )

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.workdir / "central.log", "ab") as log:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gatewayd",
                    "central",
                    "--db",
                    self.db,
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--log-level",
                    "warning",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _admin(self, path: str, body: dict[str, Any], method: str) -> None:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": f"Bearer {self.keys['admin_key']}",
                "Content-Type": "application/json",
            },
        )
        urllib.request.urlopen(request, timeout=5).close()

    async def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.process.wait, 5)
            if self.process.poll() is None:
                self.process.kill()
        if self._wechat is not None:
            await self._wechat.cleanup()


def _pcsc_available() -> bool:
    return Path("/run/pcscd/pcscd.comm").exists()


def _devices(workdir: Path) -> tuple[list[dict[str, Any]], dict[str, Any], list[Any]]:
    """Device entries for the gateway, the simulators behind them, and what to close."""
    from gatewayd.simulators import IdCardReaderSim, ModemSim

    scanner, msr, face = (PtyDevice(workdir / name) for name in ("scanner", "msr", "face"))
    idcard = IdCardReaderSim(link=workdir / "idcard").start()
    modem = ModemSim(link=workdir / "modem").start()
    entries: list[dict[str, Any]] = [
        {
            "id": "lane1-scanner",
            "driver": "serial_scanner",
            "terminal": TERMINAL,
            "port": scanner.path,
        },
        {"id": "lane1-msr", "driver": "msr_reader", "terminal": TERMINAL, "port": msr.path},
        {"id": "lane1-idcard", "driver": "samv_reader", "terminal": TERMINAL, "port": idcard.path},
        {
            "id": "counter-modem",
            "driver": "callerid_modem",
            "terminal": TERMINAL,
            "port": modem.path,
        },
        {
            "id": "lane1-face",
            "driver": "serial_scanner",
            "terminal": TERMINAL,
            "port": face.path,
            "method": "face",
        },
    ]
    if _pcsc_available():
        entries.append(
            {
                "id": "lane1-ic",
                "driver": "pcsc",
                "terminal": TERMINAL,
                "reader": "Virtual PCD 00 00",
            }
        )
    sims = {"scanner": scanner, "msr": msr, "face": face, "idcard": idcard, "modem": modem}
    return entries, sims, [scanner, msr, face, idcard, modem]


def _actions(sims: dict[str, Any], samples: dict[str, list[str]]) -> list[Callable[[], None]]:
    """One presentation each: the members of the demo chain, every way they can identify."""
    from gatewayd.simulators import demo_swipe

    card, member_code, phone = (
        samples["card_numbers"][0],
        samples["member_codes"][1],
        samples["phones"][2],
    )

    def id_card() -> None:
        sims["idcard"].place()
        threading.Timer(2.0, sims["idcard"].remove).start()

    def call() -> None:
        threading.Thread(
            target=sims["modem"].play_call,
            args=(phone,),
            kwargs={"rings": 2, "period": 0.5},
            daemon=True,
        ).start()

    actions: list[Callable[[], None]] = [
        lambda: sims["scanner"].write(f"{card}\r\n".encode()),
        lambda: sims["msr"].write(demo_swipe(samples["card_numbers"][3])),
        lambda: sims["scanner"].write(f"{member_code}\r\n".encode()),
        call,
        lambda: sims["face"].write(f"{PAYMENT_CODE}\r\n".encode()),
        id_card,
    ]
    if _pcsc_available():
        from gatewayd.vpcd_card import VirtualCard

        def ic_card() -> None:
            virtual = VirtualCard(uid=bytes.fromhex("04A1B2C3"))
            with contextlib.suppress(OSError):
                virtual.insert(0, timeout=1)
                threading.Timer(1.5, virtual.remove).start()

        actions.append(ic_card)
    return actions


async def _present(actions: list[Callable[[], None]], interval: float) -> None:
    for action in itertools.cycle(actions):
        await asyncio.sleep(interval)
        action()


async def run_demo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from gatewayd.daemon import Gateway

    out = out or sys.stdout
    configure_logging("error")
    workdir = Path(tempfile.mkdtemp(prefix="gatewayd-demo-"))
    central = DemoCentral(workdir)
    print(
        f"gatewayd demo: starting central, a gateway and simulated devices in {workdir}",
        file=out,
        flush=True,
    )
    await central.start()
    entries, sims, closables = _devices(workdir)
    mqtt_port, http_port = _free_port(), args.http_port or _free_port()
    settings = settings_from_dict(
        {
            "gateway": {"id": GATEWAY, "store": STORE, "state_dir": str(workdir / "gateway")},
            "mqtt": {"url": "embedded", "embedded_listen": f"127.0.0.1:{mqtt_port}"},
            "http": {"listen": f"127.0.0.1:{http_port}"},
            "central": {"url": central.url, "key": central.keys["gateways"][GATEWAY]["api_key"]},
            "devices": entries,
        },
        source="<demo>",
    )
    gateway = Gateway(settings, extra_sinks=[TablePrinter(out)])
    print(
        f"  central API   {central.url}/docs   (admin key in {workdir / 'keys.json'})\n"
        f"  local API     http://127.0.0.1:{http_port}/v1/status\n"
        f"  live events   http://127.0.0.1:{http_port}/v1/events   (EventSource, curl -N)\n"
        f"  MQTT          mqtt://127.0.0.1:{mqtt_port}   "
        f"(gatewayd watch --mqtt mqtt://127.0.0.1:{mqtt_port})\n"
        f"  devices       {len(entries)} simulated; a member presents every {args.interval:g} s\n"
        "Ctrl-C stops.\n",
        file=out,
        flush=True,
    )
    print(format_row(COLUMNS), file=out, flush=True)
    run = asyncio.create_task(gateway.run(install_signals=True))
    feeder = asyncio.create_task(_present(_actions(sims, central.keys["samples"]), args.interval))
    try:
        await asyncio.wait({run}, timeout=args.duration or None)
    finally:
        feeder.cancel()
        gateway.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        for closable in closables:
            with contextlib.suppress(Exception):
                (closable.stop if hasattr(closable, "stop") else closable.close)()
        await central.stop()
    return 0
