"""Simulated devices on pseudo-terminals, for tests, demos and field engineers.

A ``PtyDevice`` owns the master side of a pseudo-terminal; the gateway opens the slave path
like any serial port. ``link`` adds a stable symlink (like ``/dev/serial/by-id/…``), so a
device can be "unplugged" (master closed, node gone) and "plugged back" (a new pty behind
the same link).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import termios
import time
import tty
from pathlib import Path


class PtyDevice:
    def __init__(self, link: str | Path | None = None) -> None:
        self.link = Path(link) if link else None
        self.master = -1
        self.slave_path = ""
        self.plug()

    @property
    def path(self) -> str:
        """What a gateway should open: the link when there is one, else the pty."""
        return str(self.link) if self.link else self.slave_path

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self.slave_path = os.ttyname(slave)
        # Keep no slave fd open here: when the master closes, the reader must see EIO/EOF.
        os.close(slave)
        self.master = master
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.slave_path)
            os.replace(tmp, self.link)

    def unplug(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        if self.link is not None:
            self.link.unlink(missing_ok=True)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.master, view)
            view = view[written:]

    def read(self, size: int = 4096) -> bytes:
        return os.read(self.master, size)

    def close(self) -> None:
        self.unplug()


KINDS = ("scanner", "msr", "idcard", "modem", "face", "palm")
DEFAULT_CODES = {
    "scanner": ["13800138000"],
    "msr": ["8800001234567890"],
    "face": ["134567890123456789", "281234567890123456"],  # WeChat, Alipay payment codes
    "palm": ["134567890123456789"],
}


def run_simulator(args: argparse.Namespace) -> int:
    """``gatewayd simulate KIND``: print the port path, then play the device until Ctrl-C.

    ``scanner``, ``face`` and ``palm`` write codes as CR-terminated lines (``--code``,
    ``--stdin``); ``msr`` writes a two-track swipe per ``--code`` card number; ``idcard``
    answers SAM_V commands, placing ``--card`` (default: a demo card) for ``--interval``
    seconds, then removing it for as long; ``modem`` answers AT commands and plays a call
    from ``--number`` every ``--interval`` seconds.
    """
    kind = args.kind
    if kind not in KINDS:
        print(
            f"error: unknown simulator {kind!r} (known: {', '.join(KINDS)}, card)", file=sys.stderr
        )
        return 2
    if kind == "idcard":
        return _run_idcard(args)
    if kind == "modem":
        return _run_modem(args)
    device = PtyDevice(args.link)
    print(device.path, flush=True)
    try:
        encode = _swipe if kind == "msr" else _line
        if args.stdin:
            for line in sys.stdin:
                _send(device, encode(line.rstrip("\r\n")))
            time.sleep(0.2)
            return 0
        codes = args.code or DEFAULT_CODES[kind]
        cycle = 0
        while args.repeat == 0 or cycle < args.repeat:
            for code in codes:
                time.sleep(args.interval)
                _send(device, encode(code))
            cycle += 1
        time.sleep(0.2)
        return 0
    finally:
        device.close()


def _send(device: PtyDevice, data: bytes) -> None:
    """Write, or lose the bytes while no one has the port open (EIO), as a wire would."""
    try:
        device.write(data)
    except OSError as exc:
        print(f"not sent: {exc.strerror}", file=sys.stderr, flush=True)


def _line(code: str) -> bytes:
    return code.encode() + b"\r"


def _swipe(number: str) -> bytes:
    from gatewayd.simulators import demo_swipe

    return demo_swipe(number)


def _cycles(args: argparse.Namespace) -> range | itertools.count[int]:
    return itertools.count() if args.repeat == 0 else range(args.repeat)


def _run_idcard(args: argparse.Namespace) -> int:
    from gatewayd.simulators import DEMO_CARD, IdCardReaderSim, load_card

    card = load_card(args.card) if args.card else DEMO_CARD
    reader = IdCardReaderSim(card, args.link, baud=args.baud, pace=args.pace)
    print(reader.path, flush=True)
    reader.start()
    try:
        for _ in _cycles(args):
            time.sleep(args.interval)
            reader.place()
            print("card placed", file=sys.stderr, flush=True)
            time.sleep(args.interval)
            reader.remove()
            print("card removed", file=sys.stderr, flush=True)
        return 0
    finally:
        reader.stop()


def _run_modem(args: argparse.Namespace) -> int:
    from gatewayd.simulators import ModemSim

    modem = ModemSim(args.link, flavour=args.flavour, line=args.line, password=args.password)
    print(modem.path, flush=True)
    modem.start()
    try:
        for _ in _cycles(args):
            time.sleep(args.interval)
            modem.play_call(args.number, name=args.caller_name, period=args.ring_period)
        time.sleep(0.2)
        return 0
    finally:
        modem.stop()
