"""Device-side players for ``gatewayd simulate`` and the tests: each plays one device model on
the master side of a pseudo-terminal (``PtyDevice``) from a background thread.

They behave like the hardware where the drivers depend on it: the ID-card reader answers
only at its own baud rate (read from the pty's termios, which the master shares with the
slave the gateway set) and can pace its bytes at that rate; it hides a card it has read until
the card leaves the field, as real SAM_V readers do. The modem answers AT commands like a
Conexant (``+VCID``) or a USR/Rockwell (``#CID``) chipset, forgets caller ID on ``ATZ``, and
prints caller ID only once enabled.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import select
import termios
import threading
import time
from pathlib import Path
from typing import Any, Literal

from gatewayd.protocols.callerid import Call, encode_mdmf
from gatewayd.protocols.callerid_dtmf import encode_dle_digits, encode_dtmf
from gatewayd.protocols.msr import Swipe, encode_swipe, format_track1, format_track2
from gatewayd.protocols.samv import (
    LONG_TERM,
    PHOTO_SIZE,
    IdCard,
    Request,
    RequestDecoder,
    Response,
    SamvError,
    Sex,
    find_fail_response,
    find_ok_response,
    read_fail_response,
    read_ok_response,
    select_fail_response,
    select_ok_response,
)
from gatewayd.protocols.samv_tables import BAUD_RATES, NATIONS
from gatewayd.simulate import PtyDevice

DEMO_CARD = IdCard(
    name="张三",
    sex=Sex.MALE,
    nation="汉",
    birth_date="1949-12-31",
    address="北京市东城区景山前街4号",
    id_number="11010519491231002X",  # the GB 11643 standard's own example number
    authority="北京市公安局东城分局",
    valid_from="2015-06-01",
    valid_to=LONG_TERM,
)
_SPEEDS = {getattr(termios, f"B{rate}"): rate for rate in (*BAUD_RATES, 4800, 230400)}


def host_baud(master: int) -> int | None:
    """The baud rate the gateway set on the slave side (the master shares its termios)."""
    try:
        return _SPEEDS.get(termios.tcgetattr(master)[5])
    except termios.error:
        return None


def _iso(value: str) -> str:
    value = value.strip()
    return f"{value[:4]}-{value[4:6]}-{value[6:]}" if len(value) == 8 else value


def load_card(path: str | Path) -> IdCard:
    """An ``IdCard`` from a JSON file: name, sex (male/female/1/2), nation (GB 3304 code or
    name), birth, address, id_number, authority, valid_from, valid_to (a date or long-term)."""
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    sex = str(data.get("sex", "1")).lower()
    nation = str(data.get("nation", "01"))
    valid_to = str(data.get("valid_to", LONG_TERM))
    return IdCard(
        name=data["name"],
        sex={"1": Sex.MALE, "male": Sex.MALE, "2": Sex.FEMALE, "female": Sex.FEMALE}.get(
            sex, Sex.UNKNOWN
        ),
        nation=NATIONS.get(nation.zfill(2), nation) if nation.isdigit() else nation,
        birth_date=_iso(str(data.get("birth", data.get("birth_date", "")))),
        address=data.get("address", ""),
        id_number=str(data["id_number"]).upper(),
        authority=data.get("authority", ""),
        valid_from=_iso(str(data["valid_from"])),
        valid_to=LONG_TERM if valid_to in (LONG_TERM, "长期") else _iso(valid_to),
    )


class PtyPlayer:
    """A device on a pseudo-terminal whose thread answers what the gateway sends."""

    def __init__(self, link: str | Path | None = None) -> None:
        self.device = PtyDevice(link)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return self.device.path

    def start(self) -> PtyPlayer:
        self._thread = threading.Thread(target=self._loop, daemon=True, name=type(self).__name__)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self.device.close()

    def unplug(self) -> None:
        with self._lock:
            self.device.unplug()

    def plug(self) -> None:
        with self._lock:
            self.device.plug()
            self.on_plug()

    def on_plug(self) -> None:
        """A new pty behind the link: forget per-connection state."""

    def write(self, data: bytes) -> None:
        with self._lock:
            if self.device.master >= 0:
                # Nobody has the port open: the bytes are lost, as on a wire.
                with contextlib.suppress(OSError):
                    self.device.write(data)

    def _loop(self) -> None:
        while not self._stop.is_set():
            master = self.device.master
            if master < 0:
                time.sleep(0.02)
                continue
            try:
                ready, _, _ = select.select([master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(master, 4096)
            except OSError as exc:
                # EIO: no process has the slave open (yet). EBADF: unplugged meanwhile.
                if exc.errno not in (errno.EIO, errno.EBADF):
                    raise
                time.sleep(0.02)
                continue
            if data:
                self.received(data)

    def received(self, data: bytes) -> None:
        """Bytes from the gateway (override)."""


class IdCardReaderSim(PtyPlayer):
    """A SAM_V reader: SAM status, find, select, read, set baud; a card placed or removed."""

    def __init__(
        self,
        card: IdCard = DEMO_CARD,
        link: str | Path | None = None,
        *,
        baud: int = 115200,
        pace: bool = False,
        hides_read_card: bool = True,
        photo: bytes = bytes(PHOTO_SIZE),
    ) -> None:
        super().__init__(link)
        self.card, self.baud, self.pace, self.photo = card, baud, pace, photo
        self.hides_read_card = hides_read_card
        self.present = False
        self.reads = 0
        self.requests: list[tuple[int, int]] = []
        self._decoder = RequestDecoder()
        self._read_since_placed = False
        self._selected = False

    def place(self, card: IdCard | None = None) -> None:
        self.card = card or self.card
        self.present, self._read_since_placed, self._selected = True, False, False

    def remove(self) -> None:
        self.present, self._selected = False, False

    def on_plug(self) -> None:
        self._decoder = RequestDecoder()

    def received(self, data: bytes) -> None:
        if host_baud(self.device.master) != self.baud:
            return  # at the wrong rate the reader sees only framing errors
        self._decoder.feed(data)
        while True:
            try:
                request = self._decoder.next_item()
            except SamvError:
                continue
            if request is None:
                return
            self.requests.append((request.cmd, request.para))
            answer, new_baud = self._answer(request)
            self.send(answer)
            if new_baud is not None:
                self.baud = new_baud

    def _answer(self, request: Request) -> tuple[bytes, int | None]:
        key = (request.cmd, request.para)
        if request.cmd in (0x10, 0x11):
            return Response(sw3=0x90).encode(), None
        if key == (0x12, 0xFF):
            return Response(sw3=0x90, data=bytes(range(16))).encode(), None
        if key == (0x20, 0x01):
            visible = self.present and not (self.hides_read_card and self._read_since_placed)
            return (find_ok_response() if visible else find_fail_response()), None
        if key == (0x20, 0x02):
            self._selected = self.present
            return (
                select_ok_response(b"SIMCARD1") if self.present else select_fail_response()
            ), None
        if request.cmd == 0x30 and request.para in (0x01, 0x10):
            if not (self.present and self._selected):
                return read_fail_response(), None
            self.reads += 1
            self._read_since_placed = True
            fingerprint = bytes(1024) if request.para == 0x10 else None
            return read_ok_response(self.card, self.photo, fingerprint), None
        if request.cmd == 0x60 and request.para < len(BAUD_RATES):
            return Response(sw3=0x90).encode(), BAUD_RATES[request.para]
        return Response(sw3=0x21).encode(), None

    def send(self, frame: bytes) -> None:
        """Write a frame, paced at the reader's baud rate (10 bits a byte) when ``pace``.

        Like a UART, a chunk is handed over only once its last byte has fully arrived.
        """
        if not self.pace:
            self.write(frame)
            return
        start, chunk = time.perf_counter(), 16
        for offset in range(0, len(frame), chunk):
            piece = frame[offset : offset + chunk]
            delay = start + (offset + len(piece)) * 10 / self.baud - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.write(piece)


Flavour = Literal["conexant", "usr"]
LineSignal = Literal["fsk", "dtmf"]


class ModemSim(PtyPlayer):
    """A voice modem: AT commands answered per chipset, RINGs and caller ID, keypad digits.

    ``line`` is what the exchange sends: ``fsk`` (shown as formatted text once ``+VCID=1`` /
    ``#CID=1``, as a hex line with ``=2``) or ``dtmf`` (digits before the first ring,
    reported DLE-shielded only in voice mode, ``+FCLASS=8``). ``password`` is what the caller
    types once the line is taken off hook (``+VLS=1`` or ``ATA``).
    """

    def __init__(
        self,
        link: str | Path | None = None,
        *,
        flavour: Flavour = "conexant",
        line: LineSignal = "fsk",
        password: str | None = None,
        password_delay: float = 0.6,
    ) -> None:
        super().__init__(link)
        self.flavour, self.line, self.password = flavour, line, password
        self.password_delay = password_delay
        self.commands: list[str] = []
        self._buffer = bytearray()
        self._reset()

    def _reset(self) -> None:
        self.echo = True
        self.caller_id = 0  # 0 off, 1 formatted, 2 unformatted (hex)
        self.voice = False
        self.off_hook = False

    def on_plug(self) -> None:
        self._buffer.clear()
        self._reset()  # a power cycle: everything not in NVRAM is gone

    def received(self, data: bytes) -> None:
        for byte in data:
            if byte in b"\r\n":
                line, self._buffer = bytes(self._buffer), bytearray()
                if line.strip():
                    self._command(line.decode("ascii", "replace").strip())
            else:
                self._buffer.append(byte)

    def _command(self, text: str) -> None:
        self.commands.append(text)
        if self.echo:
            self.write(text.encode() + b"\r\n")
        was_off_hook = self.off_hook
        ok = self._execute(text.upper().replace(" ", ""))
        self.write(b"\r\nOK\r\n" if ok else b"\r\nERROR\r\n")
        if self.off_hook and not was_off_hook and self.password is not None:
            digits = encode_dle_digits(self.password + "#", shielded=True)
            # A person needs a moment after pick-up: typing starts after the gateway's
            # repeat window (0.5 s), which would drop a second event for the same number.
            threading.Timer(self.password_delay, self.write, (digits,)).start()

    def _execute(self, cmd: str) -> bool:
        if not cmd.startswith("AT"):
            return False
        body = cmd[2:]
        if body in ("", "Z", "&F"):
            if body:
                self._reset()
            return True
        if body.startswith("E") and body[1:2] in ("0", "1") and set(body[2:]) <= set("V01Q"):
            self.echo = body[1] == "1"
            return True
        if body.startswith("+GCI="):
            return len(body) == 7
        cid = {"conexant": "+VCID=", "usr": "#CID="}[self.flavour]
        if body.startswith(cid) and body[len(cid) :] in ("0", "1", "2"):
            self.caller_id = int(body[len(cid) :])
            return True
        if body in ("+FCLASS=0", "+FCLASS=8"):
            self.voice = body.endswith("8")
            return True
        if body in ("+VLS=1", "A") and (self.voice or body == "A"):
            self.off_hook = True
            return True
        if body in ("+VLS=0", "H0", "H"):
            self.off_hook = False
            return True
        return False

    def play_call(
        self,
        number: str,
        *,
        name: str | None = None,
        rings: int = 3,
        period: float = 0.3,
        when: dt.datetime | None = None,
    ) -> None:
        """One incoming call (blocking: rings ``period`` apart); caller ID as the line sends it."""
        when = when or dt.datetime.now()
        call = Call(
            number=number, name=name, date=when.strftime("%m%d"), time=when.strftime("%H%M")
        )
        if self.line == "dtmf" and self.voice:
            self.write(encode_dle_digits(encode_dtmf(call)))
            time.sleep(period)
        for ring in range(1, rings + 1):
            if self.off_hook:
                return
            self.write(b"\r\nRING\r\n")
            if ring == 1 and self.line == "fsk":
                time.sleep(period / 2)
                self._caller_id(call)
            time.sleep(period)

    def _caller_id(self, call: Call) -> None:
        if self.caller_id == 1:
            lines = [f"DATE = {call.date}", f"TIME = {call.time}", f"NMBR = {call.number}"]
            if call.name:
                lines.append(f"NAME = {call.name}")
            self.write(("\r\n" + "\r\n".join(lines) + "\r\n").encode())
        elif self.caller_id == 2:
            self.write(b"\r\n" + encode_mdmf(call).hex().upper().encode() + b"\r\n")


def demo_swipe(number: str) -> bytes:
    """What a keyboard-wedge or serial reader sends for a member card with ``number``."""
    swipe = Swipe(
        track1=format_track1(pan=number, name="MEMBER/DEMO", expiry="3012", service_code="101"),
        track2=format_track2(pan=number, expiry="3012", service_code="101"),
    )
    return encode_swipe(swipe, line_end="\r\n").encode()
