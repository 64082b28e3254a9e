"""Simulated devices on pseudo-terminals, for tests, demos and field engineers.

A ``PtyDevice`` owns the master side of a pseudo-terminal; the gateway opens the slave path
like any serial port. ``link`` adds a stable symlink (like ``/dev/serial/by-id/…``), so a
device can be "unplugged" (master closed, node gone) and "plugged back" (a new pty behind
the same link).
"""

from __future__ import annotations

import argparse
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


def run_simulator(args: argparse.Namespace) -> int:
    """``gatewayd simulate KIND``: print the port path, then play the device until Ctrl-C."""
    if args.kind != "scanner":
        print(f"error: unknown simulator {args.kind!r} (known: scanner)", file=sys.stderr)
        return 2
    device = PtyDevice(args.link)
    print(device.path, flush=True)
    try:
        if args.stdin:
            for line in sys.stdin:
                device.write(line.rstrip("\r\n").encode() + b"\r")
            time.sleep(0.2)
            return 0
        codes = args.code or ["13800138000"]
        cycle = 0
        while args.repeat == 0 or cycle < args.repeat:
            for code in codes:
                time.sleep(args.interval)
                device.write(code.encode() + b"\r")
            cycle += 1
        time.sleep(0.2)
        return 0
    finally:
        device.close()
