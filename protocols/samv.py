"""SAM_V (GA/T 467) frames of second-generation Chinese ID-card readers.

Every frame is ``AA AA AA 96 69 | LEN (BE) | body | CHK`` where LEN counts the body and CHK,
and the XOR of LEN_H through CHK is zero. A request body is ``CMD PARA DATA``, a response body
``SW1 SW2 SW3 DATA``. Reader flow: find (20 01) → select (20 02) → read (30 01).

The decoders resynchronise on the preamble, so line noise before a frame costs nothing; a
frame with a bad length or checksum raises ``SamvFrameError`` once and decoding goes on.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from .checks import gb11643_valid
from .errors import ProtocolError
from .samv_tables import (
    BAUD_RATES,
    NATION_CODES,
    NATIONS,
    OK_STATUSES,
    STATUS_TEXT,
    TEXT_BLOCK_SIZE,
    TEXT_FIELDS,
)

PREAMBLE: Final = b"\xaa\xaa\xaa\x96\x69"
PHOTO_SIZE: Final = 1024
FINGERPRINT_SIZE: Final = 1024
LONG_TERM: Final = "long-term"
_LONG_TERM_TEXT: Final = "长期"
# The largest legitimate frame (text + photo + fingerprint) has LEN 2314.
DEFAULT_MAX_LENGTH: Final = 4096


class SamvError(ProtocolError):
    """Root of the SAM_V codec's errors."""


class SamvFrameError(SamvError):
    """A frame that is broken on the wire: bad length, bad checksum, truncated."""


class SamvStatusError(SamvError):
    """A well-formed response whose SW3 reports a failure."""

    def __init__(self, sw3: int) -> None:
        self.sw3 = sw3
        text = STATUS_TEXT.get(sw3, "unknown status")
        super().__init__(f"status {sw3:02X}: {text}")


class CardNotFoundError(SamvStatusError):
    """SW3 80: no card in the field (the normal answer while polling)."""


class CardSelectError(SamvStatusError):
    """SW3 81: the card left the field or did not answer the select."""


class CardReadError(SamvStatusError):
    """SW3 40/41: the card could not be read (unknown card type, read failed)."""


class SamAuthError(SamvStatusError):
    """SW3 31/32/33/47: card and SAM did not authenticate each other."""


class SamFaultError(SamvStatusError):
    """SW3 60/66: the SAM module itself is faulty or not authorised."""


class SamCommandError(SamvStatusError):
    """SW3 10/11/21/23/24: the SAM rejected our request frame."""


_STATUS_ERRORS: Final[dict[int, type[SamvStatusError]]] = {
    0x80: CardNotFoundError,
    0x81: CardSelectError,
    0x40: CardReadError,
    0x41: CardReadError,
    0x31: SamAuthError,
    0x32: SamAuthError,
    0x33: SamAuthError,
    0x47: SamAuthError,
    0x60: SamFaultError,
    0x66: SamFaultError,
    0x10: SamCommandError,
    0x11: SamCommandError,
    0x21: SamCommandError,
    0x23: SamCommandError,
    0x24: SamCommandError,
}


def status_error(sw3: int) -> SamvStatusError:
    """The named error for a failing SW3 (``SamvStatusError`` itself for unknown codes)."""
    return _STATUS_ERRORS.get(sw3, SamvStatusError)(sw3)


def xor_checksum(data: bytes) -> int:
    """XOR of all bytes; folds a big integer so a 2 KiB frame costs a dozen operations."""
    if len(data) < 32:
        result = 0
        for byte in data:
            result ^= byte
        return result
    width = 1 << (len(data) - 1).bit_length()
    value = int.from_bytes(data, "little")
    while width > 1:
        width //= 2
        value = (value >> (8 * width)) ^ (value & ((1 << (8 * width)) - 1))
    return value


def encode_frame(body: bytes) -> bytes:
    """Wrap a request or response body in preamble, length and checksum."""
    if len(body) + 1 > 0xFFFF:
        raise SamvError(f"body of {len(body)} bytes does not fit a frame")
    head = (len(body) + 1).to_bytes(2, "big")
    return PREAMBLE + head + body + bytes([xor_checksum(head + body)])


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    """A host→reader command."""

    cmd: int
    para: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not (0 <= self.cmd <= 0xFF and 0 <= self.para <= 0xFF):
            raise SamvError(f"CMD {self.cmd} / PARA {self.para} out of byte range")

    def encode(self) -> bytes:
        return encode_frame(bytes([self.cmd, self.para]) + self.data)


@dataclass(frozen=True, kw_only=True, slots=True)
class Response:
    """A reader→host answer; ``ok`` is False for any failing SW3."""

    sw3: int
    data: bytes = b""
    sw1: int = 0
    sw2: int = 0

    def __post_init__(self) -> None:
        if not all(0 <= b <= 0xFF for b in (self.sw1, self.sw2, self.sw3)):
            raise SamvError("status bytes out of byte range")

    @property
    def ok(self) -> bool:
        return self.sw3 in OK_STATUSES

    @property
    def status(self) -> str:
        """SW3 as two hex digits, as field engineers read it off a trace."""
        return f"{self.sw3:02X}"

    def raise_for_status(self) -> None:
        if not self.ok:
            raise status_error(self.sw3)

    def encode(self) -> bytes:
        return encode_frame(bytes([self.sw1, self.sw2, self.sw3]) + self.data)


def request_bytes(cmd: int, para: int, data: bytes = b"") -> bytes:
    return Request(cmd=cmd, para=para, data=data).encode()


RESET_SAM: Final = request_bytes(0x10, 0xFF)
SAM_STATUS: Final = request_bytes(0x11, 0xFF)
READ_SAM_ID: Final = request_bytes(0x12, 0xFF)
FIND_CARD: Final = request_bytes(0x20, 0x01)
SELECT_CARD: Final = request_bytes(0x20, 0x02)
READ_CARD: Final = request_bytes(0x30, 0x01)
READ_APPENDED_ADDRESS: Final = request_bytes(0x30, 0x03)
READ_CARD_WITH_FINGERPRINT: Final = request_bytes(0x30, 0x10)


def set_baud_request(baud: int) -> bytes:
    """CMD 60 with PARA 00..04 for 115200, 57600, 38400, 19200, 9600."""
    if baud not in BAUD_RATES:
        raise SamvError(f"baud {baud} is not one of {BAUD_RATES}")
    return request_bytes(0x60, BAUD_RATES.index(baud))


def set_max_rf_bytes_request(count: int) -> bytes:
    if not 0 <= count <= 0xFF:
        raise SamvError(f"max RF byte count {count} out of range")
    return request_bytes(0x61, 0xFF, bytes([count]))


class _FrameReader:
    """Preamble hunting and length/checksum checks shared by both directions."""

    def __init__(self, *, min_length: int, max_length: int) -> None:
        self._min = min_length
        self._max = max_length
        self._buf = bytearray()
        self._eof = False

    def feed(self, data: bytes) -> None:
        """Add received bytes; ``b""`` marks end of input (a partial frame then raises)."""
        if not data:
            self._eof = True
        self._buf += data

    def _next_body(self) -> bytes | None:
        buf = self._buf
        start = buf.find(PREAMBLE)
        if start < 0:
            # Keep only what could still be the start of a preamble: the buffer stays bounded.
            del buf[: max(0, len(buf) - (0 if self._eof else len(PREAMBLE) - 1))]
            return None
        del buf[:start]
        if len(buf) < 7:
            self._check_eof()
            return None
        length = buf[5] << 8 | buf[6]
        if not self._min <= length <= self._max:
            del buf[: len(PREAMBLE)]
            raise SamvFrameError(f"bad length {length} (allowed {self._min}..{self._max})")
        if len(buf) < 7 + length:
            self._check_eof()
            return None
        frame = bytes(buf[: 7 + length])
        if xor_checksum(frame[5:]) != 0:
            # Drop only the preamble: if noise faked it, the real frames it spanned survive.
            del buf[: len(PREAMBLE)]
            expected = xor_checksum(frame[5:-1])
            raise SamvFrameError(f"checksum mismatch: got {frame[-1]:02X}, expected {expected:02X}")
        del buf[: 7 + length]
        return frame[7:-1]

    def _check_eof(self) -> None:
        if self._eof:
            size = len(self._buf)
            self._buf.clear()
            raise SamvFrameError(f"truncated frame at end of input ({size} bytes)")


class ResponseDecoder(_FrameReader):
    """Reader→host frames, h11 style: ``feed()`` then ``next_item()`` until None."""

    def __init__(self, *, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        super().__init__(min_length=4, max_length=max_length)

    def next_item(self) -> Response | None:
        body = self._next_body()
        if body is None:
            return None
        return Response(sw1=body[0], sw2=body[1], sw3=body[2], data=body[3:])


class RequestDecoder(_FrameReader):
    """Host→reader frames, for reader simulators."""

    def __init__(self, *, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        super().__init__(min_length=3, max_length=max_length)

    def next_item(self) -> Request | None:
        body = self._next_body()
        if body is None:
            return None
        return Request(cmd=body[0], para=body[1], data=body[2:])


def decode_responses(data: bytes) -> list[Response]:
    """All response frames in a whole input; raises on the first broken one."""
    decoder = ResponseDecoder()
    decoder.feed(data)
    decoder.feed(b"")
    items: list[Response] = []
    while (item := decoder.next_item()) is not None:
        items.append(item)
    return items


class Sex(StrEnum):
    """GB/T 2261.1; the card stores 1 or 2, codes 0 and 9 both mean not known."""

    MALE = "male"
    FEMALE = "female"
    UNKNOWN = "unknown"


_SEX_CODES: Final = {"1": Sex.MALE, "2": Sex.FEMALE, "0": Sex.UNKNOWN, "9": Sex.UNKNOWN}
_SEX_OUT: Final = {Sex.MALE: "1", Sex.FEMALE: "2", Sex.UNKNOWN: "0"}


def _iso_date(text: str, field: str) -> str:
    """``YYYYMMDD`` → ``YYYY-MM-DD``, refusing impossible dates."""
    if len(text) != 8 or not text.isdigit() or not text.isascii():
        raise SamvError(f"{field} {text!r} is not YYYYMMDD")
    try:
        return _dt.date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
    except ValueError as exc:
        raise SamvError(f"{field} {text!r} is not a real date") from exc


def _check_iso(value: str, field: str) -> None:
    if len(value) != 10 or value[4] != "-" or value[7] != "-":
        raise SamvError(f"{field} {value!r} is not YYYY-MM-DD")
    _iso_date(value.replace("-", ""), field)


@dataclass(frozen=True, kw_only=True, slots=True)
class IdCard:
    """The text of a resident ID card; dates are ``YYYY-MM-DD``, ``valid_to`` may be long-term."""

    name: str
    sex: Sex
    nation: str
    birth_date: str
    address: str
    id_number: str
    authority: str
    valid_from: str
    valid_to: str

    def __post_init__(self) -> None:
        if not isinstance(self.sex, Sex):
            raise SamvError(f"sex {self.sex!r} is not a Sex")
        if self.nation not in NATION_CODES:
            raise SamvError(f"nation {self.nation!r} is not in GB 3304")
        if not gb11643_valid(self.id_number):
            raise SamvError("ID number fails the GB 11643 check")
        _check_iso(self.birth_date, "birth date")
        _check_iso(self.valid_from, "valid from")
        if self.valid_to != LONG_TERM:
            _check_iso(self.valid_to, "valid to")
        for field in ("name", "address", "authority"):
            value: str = getattr(self, field)
            limit = TEXT_FIELDS[field][1] // 2
            if len(value) > limit or any(ord(c) > 0xFFFF for c in value):
                raise SamvError(f"{field} does not fit {limit} UCS-2 characters")

    @property
    def nation_code(self) -> str:
        return NATION_CODES[self.nation]


@dataclass(frozen=True, kw_only=True, slots=True)
class CardRead:
    """A read (30 01 / 30 10) answer: the text, the WLT photo, the fingerprint if asked for."""

    card: IdCard
    photo: bytes
    fingerprint: bytes | None = None


def _text_field(block: bytes, field: str) -> str:
    offset, length = TEXT_FIELDS[field]
    try:
        text = block[offset : offset + length].decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise SamvError(f"{field} is not UCS-2 text") from exc
    return text.strip(" \x00")


def decode_text_block(block: bytes) -> IdCard:
    """The 256-byte UCS-2LE text block → an ``IdCard`` (raises on anything implausible)."""
    if len(block) != TEXT_BLOCK_SIZE:
        raise SamvError(f"text block of {len(block)} bytes, expected {TEXT_BLOCK_SIZE}")
    sex_code = _text_field(block, "sex")
    if sex_code not in _SEX_CODES:
        raise SamvError(f"sex code {sex_code!r} is not in GB/T 2261.1")
    nation_code = _text_field(block, "nation")
    if nation_code not in NATIONS:
        raise SamvError(f"nation code {nation_code!r} is not in GB 3304")
    valid_to = _text_field(block, "valid_to")
    valid_to = LONG_TERM if valid_to == _LONG_TERM_TEXT else _iso_date(valid_to, "valid to")
    return IdCard(
        name=_text_field(block, "name"),
        sex=_SEX_CODES[sex_code],
        nation=NATIONS[nation_code],
        birth_date=_iso_date(_text_field(block, "birth_date"), "birth date"),
        address=_text_field(block, "address"),
        id_number=_text_field(block, "id_number").upper(),
        authority=_text_field(block, "authority"),
        valid_from=_iso_date(_text_field(block, "valid_from"), "valid from"),
        valid_to=valid_to,
    )


def encode_text_block(card: IdCard) -> bytes:
    """The card's 256-byte text block, padded with UCS-2 spaces as real cards are."""
    valid_to = card.valid_to.replace("-", "")
    values = {
        "name": card.name,
        "sex": _SEX_OUT[card.sex],
        "nation": card.nation_code,
        "birth_date": card.birth_date.replace("-", ""),
        "address": card.address,
        "id_number": card.id_number,
        "authority": card.authority,
        "valid_from": card.valid_from.replace("-", ""),
        "valid_to": _LONG_TERM_TEXT if card.valid_to == LONG_TERM else valid_to,
        "reserved": "",
    }
    block = bytearray()
    for field, (_, length) in TEXT_FIELDS.items():
        block += values[field].ljust(length // 2).encode("utf-16-le")
    return bytes(block)


def _read_layout(data: bytes) -> tuple[int, int, int | None, int]:
    """(text, photo, fingerprint or None, header size) from the length words of a read."""
    if len(data) < 4:
        raise SamvError("read response too short for its length words")
    text, photo = int.from_bytes(data[0:2], "big"), int.from_bytes(data[2:4], "big")
    if 4 + text + photo == len(data):
        return text, photo, None, 4
    if len(data) >= 6:
        finger = int.from_bytes(data[4:6], "big")
        if 6 + text + photo + finger == len(data):
            return text, photo, finger, 6
    raise SamvError(f"read response length words do not add up to its {len(data)} data bytes")


def is_read_response(response: Response) -> bool:
    """Whether an OK response is shaped like a text+photo read (the command is not echoed)."""
    if response.sw3 != 0x90:
        return False
    try:
        text = _read_layout(response.data)[0]
    except SamvError:
        return False
    return text == TEXT_BLOCK_SIZE


def decode_read(response: Response) -> CardRead:
    """Decode a read answer; a failing SW3 raises its named ``SamvStatusError``."""
    response.raise_for_status()
    text, photo, finger, offset = _read_layout(response.data)
    if text != TEXT_BLOCK_SIZE:
        raise SamvError(f"text block of {text} bytes, expected {TEXT_BLOCK_SIZE}")
    data = response.data
    card = decode_text_block(data[offset : offset + text])
    offset += text
    photo_bytes = data[offset : offset + photo]
    fingerprint = None if finger is None else data[offset + photo :]
    return CardRead(card=card, photo=photo_bytes, fingerprint=fingerprint)


def decode_sam_id(data: bytes) -> str:
    """The 16-byte SAM ID as printed by vendor tools: ``%02d.%02d-%08u-%010u-%010u``."""
    if len(data) != 16:
        raise SamvError(f"SAM ID of {len(data)} bytes, expected 16")
    a, b = (int.from_bytes(data[i : i + 2], "little") for i in (0, 2))
    c, d, e = (int.from_bytes(data[i : i + 4], "little") for i in (4, 8, 12))
    return f"{a:02d}.{b:02d}-{c:08d}-{d:010d}-{e:010d}"


def find_ok_response(iin: bytes = bytes(4)) -> bytes:
    return Response(sw3=0x9F, data=iin).encode()


def find_fail_response() -> bytes:
    return Response(sw3=0x80).encode()


def select_ok_response(serial: bytes = bytes(8)) -> bytes:
    return Response(sw3=0x90, data=serial).encode()


def select_fail_response() -> bytes:
    return Response(sw3=0x81).encode()


def read_fail_response() -> bytes:
    return Response(sw3=0x41).encode()


def read_ok_response(
    card: IdCard, photo: bytes = bytes(PHOTO_SIZE), fingerprint: bytes | None = None
) -> bytes:
    """A 30 01 answer (or 30 10 when ``fingerprint`` is given) for simulators."""
    text = encode_text_block(card)
    lengths = len(text).to_bytes(2, "big") + len(photo).to_bytes(2, "big")
    tail = text + photo
    if fingerprint is not None:
        lengths += len(fingerprint).to_bytes(2, "big")
        tail += fingerprint
    return Response(sw3=0x90, data=lengths + tail).encode()
