"""DTMF caller ID (sent before the first ring, as in much of China) and DLE-shielded digits.

Caller-ID strings (ETSI EN 300 659 CLIP-DTMF variants, spandsp ``adsi.h``):

* ``A<number>C``, optionally ``A<number>D<redirect>B<info>C`` (B00 unavailable, B10 private);
* ``A<number>#``, or ``D1#`` private / ``D2#`` international / ``D3#`` unavailable;
* ``D<number>C`` (Taiwan, Kuwait);
* ``B00`` / ``B10`` alone complete after their two digits (a trailing ``C`` is ignored).

Digits outside a message (a keypad, line noise) are skipped: no start code, no caller ID.

A voice modem in ``AT+FCLASS=8`` reports keypad digits in its data stream as DLE (0x10)
followed by the digit; ``DLE DLE`` is a literal 0x10 of audio data, other DLE codes are events
(busy, dial tone, silence…). ``DtmfCollector`` turns those digits into a typed password.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

from .callerid import AbsenceReason, Call, CallerIdError

DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
MAX_MESSAGE: Final = 40
_START: Final = "ABD"
_HASH_REASONS: Final = {
    "1": AbsenceReason.PRIVATE,
    "2": AbsenceReason.UNAVAILABLE,  # international: the number is not delivered
    "3": AbsenceReason.UNAVAILABLE,
}
_INFO_CODES: Final = {"00": AbsenceReason.UNAVAILABLE, "10": AbsenceReason.PRIVATE}
_FIELD: Final = re.compile(r"([ABD])([0-9*]*)")


def _digits(value: str, what: str) -> str | None:
    if not value:
        return None
    if not value.isdigit() or not value.isascii():
        raise CallerIdError(f"{what} {value!r} is not digits")
    return value


def _message(text: str) -> Call:
    """One complete message, start code through end code."""
    call = _fields(text)
    if call.number is None and call.reason is None:
        raise CallerIdError(f"DTMF message {text!r} carries no number and no reason")
    return call


def _fields(text: str) -> Call:
    start, end, inner = text[0], text[-1], text[1:-1]
    if end == "#":
        if start == "A":
            return Call(number=_digits(inner, "number"))
        if start == "D" and inner in _HASH_REASONS:
            return Call(reason=_HASH_REASONS[inner])
        raise CallerIdError(f"DTMF message {text!r} is neither A<number># nor D1#/D2#/D3#")
    fields: dict[str, str] = {}
    position = 0
    for match in _FIELD.finditer(text[:-1]):
        if match.start() != position or match[1] in fields:
            break
        fields[match[1]] = match[2]
        position = match.end()
    if position != len(text) - 1:
        raise CallerIdError(f"DTMF message {text!r} is not A…D…B…C")
    reason = None
    if "B" in fields:
        reason = _INFO_CODES.get(fields["B"])
        if reason is None:
            raise CallerIdError(f"DTMF information code {fields['B']!r} is neither 00 nor 10")
    number = _digits(fields.get("A", ""), "number")
    if "A" not in fields:  # D<number>C is the Taiwan variant; with an A, D is a redirect
        number = _digits(fields.get("D", ""), "number")
    return Call(number=number, reason=None if number else reason)


class DtmfDecoder:
    """China/ETSI DTMF caller ID from a stream of detected digits (``feed`` str or bytes)."""

    def __init__(self) -> None:
        self._current: list[str] = []
        self._items: deque[Call | CallerIdError] = deque()

    def feed(self, data: str | bytes) -> None:
        """Add digits; whitespace is ignored, ``""`` ends input (a partial message raises)."""
        text = data.decode("latin-1") if isinstance(data, bytes) else data
        if not text:
            if self._current:
                partial = "".join(self._current)
                self._current = []
                self._items.append(CallerIdError(f"DTMF message {partial!r} has no end code"))
            return
        for char in text:
            if char.isspace():
                continue
            char = char.upper()
            if char not in DTMF_DIGITS:
                self._items.append(CallerIdError(f"{char!r} is not a DTMF digit"))
                continue
            self._digit(char)

    def _digit(self, char: str) -> None:
        current = self._current
        if not current:
            if char in _START:
                current.append(char)
            return
        current.append(char)
        text = "".join(current)
        done = char in "C#" or (text[0] == "B" and len(text) == 3)
        if done:
            self._current = []
            try:
                self._items.append(_message(text + "C" if char not in "C#" else text))
            except CallerIdError as exc:
                self._items.append(exc)
        elif len(current) > MAX_MESSAGE:
            self._current = []
            self._items.append(CallerIdError(f"DTMF message longer than {MAX_MESSAGE} digits"))

    def next_item(self) -> Call | None:
        if not self._items:
            return None
        item = self._items.popleft()
        if isinstance(item, CallerIdError):
            raise item
        return item


def decode_dtmf(text: str) -> list[Call]:
    """Every caller-ID message in a whole digit string; raises on the first bad one."""
    decoder = DtmfDecoder()
    decoder.feed(text)
    decoder.feed("")
    calls: list[Call] = []
    while (call := decoder.next_item()) is not None:
        calls.append(call)
    return calls


DtmfStyle = Literal["c", "hash", "taiwan"]


def encode_dtmf(call: Call, *, style: DtmfStyle = "c") -> str:
    """The digit string an exchange sends for ``call`` in the given variant."""
    if call.number is not None:
        start = "D" if style == "taiwan" else "A"
        return f"{start}{call.number}{'#' if style == 'hash' else 'C'}"
    reason = call.reason or AbsenceReason.UNAVAILABLE
    if style == "hash":
        return "D1#" if reason is AbsenceReason.PRIVATE else "D3#"
    return "B10C" if reason is AbsenceReason.PRIVATE else "B00C"


# ---- DLE-shielded voice-modem stream ---------------------------------------------------

DLE: Final = 0x10
DLE_EVENTS: Final = {
    "b": "busy",
    "c": "fax_calling_tone",
    "d": "dial_tone",
    "e": "data_calling_tone",
    "a": "fax_answer_tone",
    "h": "line_on_hook",
    "H": "line_off_hook",
    "q": "quiet",
    "s": "silence",
    "R": "ring",
    "T": "timing_mark",
    "u": "underrun",
    "o": "overrun",
    "/": "dtmf_start",
    "~": "dtmf_end",
    "\x03": "end_of_data",
    "!": "abort",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class DtmfDigit:
    """A keypad digit the modem detected on the line."""

    digit: str


@dataclass(frozen=True, kw_only=True, slots=True)
class DleEvent:
    """Any other DLE code; ``name`` is ``unknown`` for codes outside V.253's common set."""

    code: str
    name: str


class DleDecoder:
    """Pick the DLE-shielded digits and events out of a voice-mode byte stream.

    Audio bytes (and ``DLE DLE``, a literal 0x10 of audio) are skipped; only a DLE split
    across two ``feed()`` calls is buffered, so memory stays constant.
    """

    def __init__(self) -> None:
        self._after_dle = False
        self._items: deque[DtmfDigit | DleEvent] = deque()

    def feed(self, data: bytes) -> None:
        for byte in data:
            if not self._after_dle:
                self._after_dle = byte == DLE
                continue
            self._after_dle = False
            if byte == DLE:
                continue
            code = chr(byte)
            if code in DTMF_DIGITS:
                self._items.append(DtmfDigit(digit=code))
            else:
                self._items.append(DleEvent(code=code, name=DLE_EVENTS.get(code, "unknown")))

    def next_item(self) -> DtmfDigit | DleEvent | None:
        return self._items.popleft() if self._items else None


def encode_dle_digits(digits: str, *, shielded: bool = False) -> bytes:
    """DLE-shielded digits as a modem sends them; ``shielded`` wraps each in DLE / … DLE ~."""
    out = bytearray()
    for digit in digits:
        if digit not in DTMF_DIGITS:
            raise CallerIdError(f"{digit!r} is not a DTMF digit")
        if shielded:
            out += b"\x10/"
        out += bytes([DLE, ord(digit)])
        if shielded:
            out += b"\x10~"
    return bytes(out)


class DtmfCollector:
    """Collect a password typed on a phone keypad: ``*`` starts over, ``#`` submits."""

    def __init__(self, *, submit: str = "#", clear: str = "*", max_digits: int = 16) -> None:
        if submit == clear or not {submit, clear} <= DTMF_DIGITS:
            raise CallerIdError("submit and clear must be two different DTMF digits")
        self._submit = submit
        self._clear = clear
        self._max = max_digits
        self._digits: list[str] = []

    def push(self, digit: str) -> str | None:
        """Add one digit; returns the collected password when ``submit`` arrives."""
        if digit not in DTMF_DIGITS:
            raise CallerIdError(f"{digit!r} is not a DTMF digit")
        if digit == self._submit:
            password, self._digits = "".join(self._digits), []
            return password
        if digit == self._clear:
            self._digits = []
            return None
        if len(self._digits) >= self._max:
            self._digits = []
            raise CallerIdError(f"more than {self._max} digits before {self._submit!r}")
        self._digits.append(digit)
        return None
