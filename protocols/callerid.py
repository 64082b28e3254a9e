"""Caller ID: a voice modem's formatted text and raw Bellcore SDMF/MDMF packets.

China DTMF caller ID and DLE-shielded keypad digits live in ``callerid_dtmf``; the ``Call``
value and the error type here are shared by all of them.

When the modem decoder emits a call (documented because modems disagree on order, and many
Chinese lines send no NAME at all):

* by default a call is emitted as soon as ``NMBR`` (or ``DDN_NMBR``) arrives, with whatever
  DATE/TIME/NAME came before it; lines of the same block after that (a late NAME, MESG) are
  dropped. The number is what identifies a member, and it is on screen before the first ring
  ends. ``wait_for_name=True`` (NCID's default) waits for NAME instead;
* caller-ID lines without a number (DATE/TIME only, or NAME only) are emitted by the next
  RING, by ``flush()`` (the caller's idle timer) or at end of input;
* ``rings`` is the number of RINGs of the call counted when it is emitted (0 when caller ID
  comes before the first ring, as in China). Every RING is also its own ``Ring`` item with a
  running count. A ring sequence ends, and the count restarts, when caller-ID data for a new
  call begins, or when lines are fed with timestamps and ``ring_gap`` seconds pass after a RING.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from .errors import ProtocolError

MAX_FIELD: Final = 64


class CallerIdError(ProtocolError):
    """Caller-ID input that cannot be decoded (bad checksum, bad length, bad field)."""


class AbsenceReason(StrEnum):
    """Why the number (or name) is missing: ``P`` private, ``O`` out of area/unavailable."""

    PRIVATE = "private"
    UNAVAILABLE = "unavailable"


_REASON_CODES: Final = {
    "P": AbsenceReason.PRIVATE,
    "PRIVATE": AbsenceReason.PRIVATE,
    "O": AbsenceReason.UNAVAILABLE,
    "OUT OF AREA": AbsenceReason.UNAVAILABLE,
    "UNAVAILABLE": AbsenceReason.UNAVAILABLE,
}


def _check_mmdd(value: str) -> None:
    if not (len(value) == 4 and value.isdigit() and value.isascii()):
        raise CallerIdError(f"date {value!r} is not MMDD")
    if not (1 <= int(value[:2]) <= 12 and 1 <= int(value[2:]) <= 31):
        raise CallerIdError(f"date {value!r} is not a calendar day")


def _check_hhmm(value: str) -> None:
    if not (len(value) == 4 and value.isdigit() and value.isascii()):
        raise CallerIdError(f"time {value!r} is not HHMM")
    if not (int(value[:2]) <= 23 and int(value[2:]) <= 59):
        raise CallerIdError(f"time {value!r} is not a time of day")


def _check_text(value: str | None, what: str) -> None:
    if value is None:
        return
    if not value or len(value) > MAX_FIELD or not value.isprintable():
        raise CallerIdError(f"{what} {value!r} is empty, too long or not printable")


@dataclass(frozen=True, kw_only=True, slots=True)
class Call:
    """One incoming call's caller ID. ``date`` is MMDD and ``time`` HHMM (no year on the wire)."""

    number: str | None = None
    name: str | None = None
    date: str | None = None
    time: str | None = None
    reason: AbsenceReason | None = None
    rings: int = 0
    messages: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _check_text(self.number, "number")
        _check_text(self.name, "name")
        if self.date is not None:
            _check_mmdd(self.date)
        if self.time is not None:
            _check_hhmm(self.time)
        if self.reason is not None and not isinstance(self.reason, AbsenceReason):
            raise CallerIdError(f"reason {self.reason!r} is not an AbsenceReason")
        if self.number is not None and self.reason is not None:
            raise CallerIdError("a call with a number has no absence reason")
        if self.rings < 0:
            raise CallerIdError("negative ring count")


@dataclass(frozen=True, kw_only=True, slots=True)
class Ring:
    """One RING; ``count`` runs 1, 2, 3… within a call, ``cadence`` is A/B for distinctive rings."""

    count: int
    cadence: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ModemReply:
    """A final result code answering an AT command: OK, ERROR, NO CARRIER…"""

    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageWaiting:
    """Voice-mail indicator (SDMF 0x06 / MDMF 0x82); None when the packet does not say."""

    active: bool | None
    date: str | None = None
    time: str | None = None


_RING: Final = re.compile(r"RING(?:\s+(\w))?")
_REPLIES: Final = ("OK", "ERROR", "NO CARRIER", "BUSY", "NO DIALTONE", "NO DIAL TONE", "NO ANSWER")
# Searched, not matched, like ncidd's strstr: modems put junk before NAME or say DDN_NMBR.
_CID_LINE: Final = re.compile(r"(DDN_NMBR|NMBR|NAME|DATE|TIME|MESG)\s*=\s*(.*)")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(kw_only=True, slots=True)
class _Pending:
    number: str | None = None
    name: str | None = None
    date: str | None = None
    time: str | None = None
    number_reason: AbsenceReason | None = None
    name_reason: AbsenceReason | None = None
    name_seen: bool = False
    number_seen: bool = False
    messages: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return self == _Pending()


class ModemDecoder:
    """Formatted caller-ID text from a modem (``AT+VCID=1``), one line at a time.

    ``feed()`` bytes (``b""`` = end of input), then ``next_item()`` until None; items are
    ``Call``, ``Ring`` and ``ModemReply``. A bad line raises ``CallerIdError`` from
    ``next_item()`` and is dropped; the decoder stays usable. Lines are at most ``max_line``.
    """

    def __init__(
        self, *, wait_for_name: bool = False, ring_gap: float = 8.0, max_line: int = 256
    ) -> None:
        self._wait_for_name = wait_for_name
        self._ring_gap = ring_gap
        self._max_line = max_line
        self._buf = bytearray()
        self._discarding = False
        self._items: deque[Call | Ring | ModemReply | CallerIdError] = deque()
        self._pending = _Pending()
        self._emitted = False
        self._ring_since_emit = False
        self._rings = 0
        self._last_ring: float | None = None

    def feed(self, data: bytes, now: float | None = None) -> None:
        """Add bytes; ``now`` (monotonic seconds) lets a long silence end a ring sequence."""
        if not data:
            self._end_line(now)
            self.flush()
            return
        for chunk in re.split(rb"([\r\n])", data):
            if chunk in (b"\r", b"\n"):
                self._end_line(now)
            elif chunk and not self._discarding:
                self._buf += chunk
                if len(self._buf) > self._max_line:
                    self._items.append(CallerIdError(f"line longer than {self._max_line} bytes"))
                    self._buf.clear()
                    self._discarding = True

    def flush(self) -> None:
        """Emit caller-ID data still waiting for a NAME or a NMBR (idle timer, end of input)."""
        if not self._pending.empty() and not self._emitted:
            self._emit()

    def next_item(self) -> Call | Ring | ModemReply | None:
        if not self._items:
            return None
        item = self._items.popleft()
        if isinstance(item, CallerIdError):
            raise item
        return item

    def _end_line(self, now: float | None) -> None:
        raw, self._discarding = bytes(self._buf), False
        self._buf.clear()
        line = _CONTROL.sub("", raw.decode("utf-8", "replace")).strip()
        if not line:
            return
        try:
            self._line(line, now)
        except CallerIdError as exc:
            self._items.append(exc)

    def _new_sequence(self) -> None:
        self.flush()
        self._pending = _Pending()
        self._emitted = self._ring_since_emit = False
        self._rings = 0
        self._last_ring = None

    def _line(self, line: str, now: float | None) -> None:
        last = self._last_ring
        if now is not None and last is not None and now - last > self._ring_gap:
            self._new_sequence()
        ring = _RING.fullmatch(line)
        if ring is not None:
            self.flush()
            self._rings += 1
            self._ring_since_emit = self._emitted
            self._last_ring = now
            self._items.append(Ring(count=self._rings, cadence=ring[1]))
            return
        if line in _REPLIES or line.startswith("CONNECT"):
            self._items.append(ModemReply(text=line))
            return
        match = _CID_LINE.search(line)
        if match is None or line.startswith("AT"):
            return  # command echo or noise the modem prints between calls
        key, value = match[1], match[2].strip()
        if self._emitted:
            if key not in ("DATE", "TIME") and not self._ring_since_emit:
                return  # the rest of a block whose call is already out
            self._new_sequence()  # caller-ID data of the next call
        self._field(key, value)

    def _field(self, key: str, value: str) -> None:
        pending = self._pending
        if key == "DATE":
            digits = value.replace(" ", "")
            if len(digits) not in (4, 8):
                raise CallerIdError(f"DATE {value!r} is neither MMDD nor MMDDHHMM")
            _check_mmdd(digits[:4])
            if len(digits) == 8:
                _check_hhmm(digits[4:])
                pending.time = digits[4:]
            pending.date = digits[:4]
        elif key == "TIME":
            _check_hhmm(value)
            pending.time = value
        elif key == "MESG":
            if len(pending.messages) < 8:
                pending.messages.append(value[:MAX_FIELD])
        elif key == "NAME":
            pending.name_seen = True
            reason = _REASON_CODES.get(value.upper())
            if reason is not None:
                pending.name_reason = reason
            elif value:
                _check_text(value, "name")
                pending.name = value
            if self._wait_for_name and pending.number_seen:
                self._emit()
        else:  # NMBR, DDN_NMBR: ncidd keeps the first number of a block
            if pending.number_seen:
                return
            pending.number_seen = True
            reason = _REASON_CODES.get(value.upper())
            if reason is not None:
                pending.number_reason = reason
            elif value:
                _check_text(value, "number")
                pending.number = value
            if not self._wait_for_name or pending.name_seen:
                self._emit()

    def _emit(self) -> None:
        pending = self._pending
        reason = None
        if pending.number is None:
            reason = pending.number_reason or pending.name_reason
        self._items.append(
            Call(
                number=pending.number,
                name=pending.name,
                date=pending.date,
                time=pending.time,
                reason=reason,
                rings=self._rings,
                messages=tuple(pending.messages),
            )
        )
        self._pending = _Pending()
        self._emitted, self._ring_since_emit = True, False


def decode_modem_text(data: bytes, *, wait_for_name: bool = True) -> list[Call]:
    """The calls in a whole capture (offline, so it waits for names by default)."""
    decoder = ModemDecoder(wait_for_name=wait_for_name, max_line=max(256, len(data)))
    decoder.feed(data)
    decoder.feed(b"")
    calls: list[Call] = []
    while (item := decoder.next_item()) is not None:
        if isinstance(item, Call):
            calls.append(item)
    return calls


def encode_modem_text(
    call: Call, *, rings_before: int = 1, rings_after: int = 1, spaces: bool = True
) -> bytes:
    """What a modem prints for ``call``: RINGs around a DATE/TIME/NMBR/NAME block."""
    eq = " = " if spaces else "="
    lines = ["RING", ""] * rings_before
    if call.date is not None:
        lines.append(f"DATE{eq}{call.date}")
    if call.time is not None:
        lines.append(f"TIME{eq}{call.time}")
    reason_code = {AbsenceReason.PRIVATE: "P", AbsenceReason.UNAVAILABLE: "O", None: None}
    number = call.number or reason_code[call.reason]
    if number is not None:
        lines.append(f"NMBR{eq}{number}")
    if call.name is not None:
        lines.append(f"NAME{eq}{call.name}")
    lines.extend(f"MESG{eq}{message}" for message in call.messages)
    lines += ["", "RING"] * rings_after
    return ("\r\n".join(lines) + "\r\n").encode()


# ---- SDMF / MDMF packets (Bellcore GR-30) ----------------------------------------------

SDMF_CALL: Final = 0x04
MDMF_CALL: Final = 0x80
SDMF_MESSAGE_WAITING: Final = 0x06
MDMF_MESSAGE_WAITING: Final = 0x82
_PACKET_TYPES: Final = frozenset({SDMF_CALL, MDMF_CALL, SDMF_MESSAGE_WAITING, MDMF_MESSAGE_WAITING})
_SEIZURE: Final = 0x55


def _text(raw: bytes, what: str) -> str:
    """ASCII as sent by Bellcore exchanges; GB 18030 as some Chinese exchanges send names."""
    for encoding in ("ascii", "gb18030"):
        try:
            value = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        _check_text(value, what)
        return value
    raise CallerIdError(f"{what} is neither ASCII nor GB 18030")


def _datetime(raw: bytes) -> tuple[str, str]:
    if len(raw) != 8 or not raw.isdigit():
        raise CallerIdError(f"date/time {raw!r} is not MMDDHHMM")
    text = raw.decode("ascii")
    _check_mmdd(text[:4])
    _check_hhmm(text[4:])
    return text[:4], text[4:]


def _parameters(body: bytes) -> dict[int, bytes]:
    params: dict[int, bytes] = {}
    index = 0
    while index < len(body):
        if index + 2 > len(body):
            raise CallerIdError("MDMF parameter header cut short")
        kind, length = body[index], body[index + 1]
        value = body[index + 2 : index + 2 + length]
        if len(value) != length:
            raise CallerIdError(f"MDMF parameter {kind:#04x} runs past the message")
        params.setdefault(kind, value)
        index += 2 + length
    return params


def _reason(raw: bytes | None) -> AbsenceReason | None:
    if raw is None:
        return None
    reason = _REASON_CODES.get(raw.decode("latin-1").strip().upper())
    if reason is None:
        raise CallerIdError(f"absence reason {raw!r} is neither O nor P")
    return reason


def _packet(kind: int, body: bytes) -> Call | MessageWaiting:
    if kind == SDMF_CALL:
        if len(body) < 8:
            raise CallerIdError("SDMF message shorter than its date and time")
        date, time = _datetime(body[:8])
        rest = body[8:]
        if rest in (b"O", b"P"):
            return Call(date=date, time=time, reason=_reason(rest))
        return Call(date=date, time=time, number=_text(rest, "number") if rest else None)
    if kind == SDMF_MESSAGE_WAITING:
        active = {b"\x42\x42\x42": True, b"\x6f\x6f\x6f": False}.get(body)
        return MessageWaiting(active=active)
    return _mdmf(kind, _parameters(body))


def _mdmf(kind: int, params: dict[int, bytes]) -> Call | MessageWaiting:
    date: str | None = None
    time: str | None = None
    if 0x01 in params:
        date, time = _datetime(params[0x01])
    if kind == MDMF_MESSAGE_WAITING:
        indicator = params.get(0x0B)
        active = None if indicator is None else {b"\xff": True, b"\x00": False}.get(indicator)
        return MessageWaiting(active=active, date=date, time=time)
    number = _text(params[0x02], "number") if params.get(0x02) else None
    name = _text(params[0x07], "name") if params.get(0x07) else None
    reason = None
    if number is None:
        reason = _reason(params.get(0x04)) or _reason(params.get(0x08))
    return Call(number=number, name=name, date=date, time=time, reason=reason)


class FskDecoder:
    """SDMF/MDMF packets as a modem's raw caller-ID mode (``AT+VCID=2``) delivers them.

    Leading channel-seizure bytes (0x55) are skipped. An unknown message type raises once
    and costs one byte; a bad checksum raises and costs the packet.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False

    def feed(self, data: bytes) -> None:
        """Add bytes; ``b""`` marks end of input (a partial packet then raises)."""
        self._eof = not data
        self._buf += data

    def next_item(self) -> Call | MessageWaiting | None:
        buf = self._buf
        while buf and buf[0] == _SEIZURE:
            del buf[0]
        if not buf:
            return None
        if buf[0] not in _PACKET_TYPES:
            kind = buf[0]
            del buf[0]
            raise CallerIdError(f"unknown message type {kind:#04x}")
        if len(buf) < 2 or len(buf) < buf[1] + 3:
            if self._eof:
                size = len(buf)
                buf.clear()
                raise CallerIdError(f"packet cut short at end of input ({size} bytes)")
            return None
        packet = bytes(buf[: buf[1] + 3])
        del buf[: len(packet)]
        if sum(packet) & 0xFF:
            raise CallerIdError(f"checksum mismatch in message type {packet[0]:#04x}")
        return _packet(packet[0], packet[2:-1])


def decode_fsk(data: bytes) -> list[Call | MessageWaiting]:
    """Every packet of a whole input, starting at a message type; raises on the first bad one."""
    decoder = FskDecoder()
    decoder.feed(data)
    decoder.feed(b"")
    items: list[Call | MessageWaiting] = []
    while (item := decoder.next_item()) is not None:
        items.append(item)
    return items


def _finish_packet(kind: int, body: bytes) -> bytes:
    if len(body) > 0xFF:
        raise CallerIdError(f"message body of {len(body)} bytes does not fit a packet")
    head = bytes([kind, len(body)]) + body
    return head + bytes([-sum(head) & 0xFF])


def _ascii(value: str) -> bytes:
    try:
        return value.encode("ascii")
    except UnicodeEncodeError:
        return value.encode("gb18030")


_REASON_BYTES: Final = {AbsenceReason.PRIVATE: b"P", AbsenceReason.UNAVAILABLE: b"O"}


def encode_sdmf(call: Call) -> bytes:
    """An SDMF packet (type 0x04); SDMF has no name and needs a date and time."""
    if call.date is None or call.time is None:
        raise CallerIdError("SDMF needs a date and a time")
    if call.number is not None:
        tail = _ascii(call.number)
    else:
        tail = _REASON_BYTES[call.reason or AbsenceReason.UNAVAILABLE]
    return _finish_packet(SDMF_CALL, (call.date + call.time).encode() + tail)


def encode_mdmf(call: Call) -> bytes:
    """An MDMF packet (type 0x80) with the parameters ``call`` has."""
    params: list[tuple[int, bytes]] = []
    if call.date is not None and call.time is not None:
        params.append((0x01, (call.date + call.time).encode()))
    if call.number is not None:
        params.append((0x02, _ascii(call.number)))
    elif call.reason is not None:
        params.append((0x04, _REASON_BYTES[call.reason]))
    if call.name is not None:
        params.append((0x07, _ascii(call.name)))
    elif call.number is None and call.reason is not None:
        params.append((0x08, _REASON_BYTES[call.reason]))
    return _finish_packet(MDMF_CALL, b"".join(bytes([k, len(v)]) + v for k, v in params))


def encode_message_waiting(active: bool, *, mdmf: bool = False) -> bytes:
    if mdmf:
        return _finish_packet(MDMF_MESSAGE_WAITING, b"\x0b\x01" + (b"\xff" if active else b"\x00"))
    return _finish_packet(SDMF_MESSAGE_WAITING, b"\x42\x42\x42" if active else b"\x6f\x6f\x6f")
