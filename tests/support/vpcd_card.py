"""A MIFARE Classic 1K card speaking the vpcd socket protocol, and a private pcscd to host it.

vpcd (vsmartcard-vpcd) is a pcscd reader driver that listens on 127.0.0.1:35963 (reader
"Virtual PCD 00 00") and 35964 ("... 00 01"). A card *connects* to it: connected = inserted,
socket closed = removed. Every message is a 2-byte big-endian length and a payload; a 1-byte
payload is a control message (00 power off, 01 power on, 02 reset: no reply, 04 send the ATR),
anything else is a C-APDU answered with an R-APDU. The stock ``vicc`` cannot answer the reader
pseudo-APDUs (FF CA, FF 82, FF 86, FF B0), hence this card.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from smartcard import scard

from gatewayd.vpcd_card import (  # noqa: F401 - re-exported for the tests
    MIFARE_1K_ATR,
    VPCD_PORTS,
    VPCD_READERS,
    VirtualCard,
)

VPCD_LIBRARY = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
PCSCD_PIDFILE = Path("/run/pcscd/pcscd.pid")


# -- the daemon -------------------------------------------------------------------------------


def pcscd_in_service() -> str | None:
    """Describe a pcscd that is serving clients now (ours or not), else None."""
    if not PCSCD_SOCKET.exists():
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(PCSCD_SOCKET))
        except OSError:
            return None  # a stale socket file: pcscd replaces it
    pid = PCSCD_PIDFILE.read_text().strip("\x00 \n") if PCSCD_PIDFILE.exists() else "?"
    return f"pcscd (pid {pid}) is serving {PCSCD_SOCKET}"


class PcscdProcess:
    """A pcscd of our own whose only readers are the two vpcd ones.

    pcscd's socket path is fixed (``/run/pcscd/pcscd.comm``; the daemon ignores
    ``PCSCLITE_CSOCK_NAME``), so there is one pcscd per machine. ``--config`` takes a folder
    whose every file is parsed as a reader.conf: it must hold the vpcd entry only.
    """

    def __init__(self, workdir: Path) -> None:
        self.confdir = workdir / "reader.conf.d"
        self.logfile = workdir / "pcscd.log"
        self._process: subprocess.Popen[bytes] | None = None

    def preflight(self) -> str | None:
        """Why this machine cannot host our pcscd, or None."""
        if shutil.which("pcscd") is None:
            return "pcscd is not installed (Debian: apt-get install pcscd)"
        if not VPCD_LIBRARY.exists():
            return f"{VPCD_LIBRARY} is missing (Debian: apt-get install vsmartcard-vpcd)"
        if os.environ.get("PCSCLITE_CSOCK_NAME"):
            return "PCSCLITE_CSOCK_NAME is set: pcscd does not honour it; unset it"
        running = self._process is None and pcscd_in_service()
        if running:
            return (
                f"another {running}. The PC/SC tests run their own pcscd with only the vpcd "
                "reader, and stop and restart it. Stop the other one first "
                "(systemctl stop pcscd.socket pcscd.service) and re-run."
            )
        return None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        self.confdir.mkdir(parents=True, exist_ok=True)
        (self.confdir / "vpcd").write_text(
            f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x8C7B\nLIBPATH {VPCD_LIBRARY}\n'
        )
        with self.logfile.open("ab") as log:
            self._process = subprocess.Popen(
                ["pcscd", "--foreground", "--apdu", "--config", str(self.confdir)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if tuple(list_readers()) == VPCD_READERS:
                return
            time.sleep(0.05)
        self.stop()
        tail = self.logfile.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"pcscd did not offer the vpcd readers within {timeout}s:\n{tail}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def list_readers() -> list[str]:
    """The reader names pcscd offers now; empty when it does not answer."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return []
    try:
        hresult, readers = scard.SCardListReaders(context, [])
        return list(readers) if hresult == scard.SCARD_S_SUCCESS else []
    finally:
        scard.SCardReleaseContext(context)


def wait_card_state(reader: str, present: bool, timeout: float = 5.0) -> None:
    """Block until pcscd reports ``reader`` with (or without) a card; pcscd polls vpcd."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise RuntimeError(scard.SCardGetErrorMessage(hresult))
    try:
        wanted = scard.SCARD_STATE_PRESENT if present else scard.SCARD_STATE_EMPTY
        state, deadline = scard.SCARD_STATE_UNAWARE, time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = max(1, int((deadline - time.monotonic()) * 1000))
            hresult, states = scard.SCardGetStatusChange(context, left, [(reader, state)])
            if hresult != scard.SCARD_S_SUCCESS:
                break
            state = states[0][1] & ~scard.SCARD_STATE_CHANGED
            if state & wanted:
                return
        raise TimeoutError(f"{reader}: card {'not ' if present else 'still '}present")
    finally:
        scard.SCardReleaseContext(context)
