"""Engine of ``gatewayd decode``: a field engineer's capture in, one JSON object per item out.

Each protocol runs the same incremental decoder the drivers use, fed in chunks, so a capture
decodes exactly as it would have live. The first malformed item ends the run with exit code
1 and a single ``error: <reason>`` line on ``err``; everything decoded before it is already
on ``out``.

For modem caller ID the capture is decoded as a whole, so the decoder waits for NAME (no
latency to save offline) and ``rings`` is the number of RINGs of the call's ring sequence in
the capture, not the count when the call was recognised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import IO, Any, Final, Protocol, TextIO

from gatewayd.protocols.callerid import Call, FskDecoder, MessageWaiting, ModemDecoder, Ring
from gatewayd.protocols.callerid_dtmf import DtmfDecoder
from gatewayd.protocols.msr import Swipe, SwipeDecoder
from gatewayd.protocols.samv import ResponseDecoder, decode_read, is_read_response

EXIT_OK: Final = 0
EXIT_DATA: Final = 1
EXIT_USAGE: Final = 2
CHUNK: Final = 65536
_HEX_NOISE: Final = re.compile(r"\s+")
_NOT_HEX: Final = re.compile(r"[^0-9A-Fa-f]")

Item = dict[str, Any]


class DecodeError(ValueError):
    """Input that is not what ``--hex`` promised."""


class _Session(Protocol):
    def feed(self, data: bytes) -> Iterator[Item]: ...

    def held(self) -> list[Item]: ...


def _call_item(call: Call) -> Item:
    return {
        "number": call.number,
        "name": call.name,
        "date": call.date,
        "time": call.time,
        "reason": None if call.reason is None else call.reason.value,
    }


def _swipe_item(swipe: Swipe) -> Item:
    one, two = swipe.track1_fields, swipe.track2_fields
    return {
        "track1": None
        if one is None
        else {
            "pan": one.pan,
            "name": one.name,
            "expiry": one.expiry,
            "service_code": one.service_code,
        },
        "track2": None
        if two is None
        else {
            "pan": two.pan,
            "expiry": two.expiry,
            "service_code": two.service_code,
            "discretionary": two.discretionary,
        },
        "track3": swipe.track3,
        "errors": list(swipe.errors),
    }


class _Msr:
    def __init__(self) -> None:
        self._decoder = SwipeDecoder()

    def feed(self, data: bytes) -> Iterator[Item]:
        self._decoder.feed(data)
        while (swipe := self._decoder.next_item()) is not None:
            yield _swipe_item(swipe)

    def held(self) -> list[Item]:
        return []


class _IdCard:
    def __init__(self) -> None:
        self._decoder = ResponseDecoder()

    def feed(self, data: bytes) -> Iterator[Item]:
        self._decoder.feed(data)
        while (response := self._decoder.next_item()) is not None:
            response.raise_for_status()
            item: Item = {"status": response.status}
            if is_read_response(response):
                card = decode_read(response).card
                item.update(
                    name=card.name,
                    sex=card.sex.value,
                    nation=card.nation,
                    birth_date=card.birth_date,
                    address=card.address,
                    id_number=card.id_number,
                    authority=card.authority,
                    valid_from=card.valid_from,
                    valid_to=card.valid_to,
                )
            yield item

    def held(self) -> list[Item]:
        return []


class _Modem:
    """Holds each call until its ring sequence is over, to report how often it rang."""

    def __init__(self) -> None:
        self._decoder = ModemDecoder(wait_for_name=True)
        self._call: Call | None = None
        self._rings = 0

    def feed(self, data: bytes) -> Iterator[Item]:
        self._decoder.feed(data)
        while (item := self._decoder.next_item()) is not None:
            if isinstance(item, Call):
                yield from self.held()
                self._call, self._rings = item, item.rings
            elif isinstance(item, Ring) and self._call is not None:
                if item.count > self._rings:
                    self._rings = item.count
                else:  # the count restarted: a new ring sequence, so a new call
                    yield from self.held()

    def held(self) -> list[Item]:
        if self._call is None:
            return []
        item = {**_call_item(self._call), "rings": self._rings}
        self._call = None
        return [item]


class _Fsk:
    def __init__(self) -> None:
        self._decoder = FskDecoder()

    def feed(self, data: bytes) -> Iterator[Item]:
        self._decoder.feed(data)
        while (item := self._decoder.next_item()) is not None:
            if isinstance(item, MessageWaiting):
                yield {"message_waiting": item.active, "date": item.date, "time": item.time}
            else:
                yield _call_item(item)

    def held(self) -> list[Item]:
        return []


class _Dtmf:
    def __init__(self) -> None:
        self._decoder = DtmfDecoder()

    def feed(self, data: bytes) -> Iterator[Item]:
        self._decoder.feed(data)
        while (call := self._decoder.next_item()) is not None:
            yield _call_item(call)

    def held(self) -> list[Item]:
        return []


SESSIONS: Final[dict[str, type[_Session]]] = {
    "msr": _Msr,
    "idcard": _IdCard,
    "callerid": _Modem,
    "callerid-fsk": _Fsk,
    "callerid-dtmf": _Dtmf,
}
PROTOCOLS: Final = tuple(SESSIONS)


def _raw_chunks(stream: IO[bytes] | IO[str]) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        if isinstance(chunk, str):
            yield chunk.encode("utf-8", "surrogateescape")
        else:
            yield chunk


def _hex_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Hex text → bytes, whitespace anywhere (even inside a byte pair split across chunks)."""
    carry = ""
    for chunk in chunks:
        text = carry + _HEX_NOISE.sub("", chunk.decode("latin-1"))
        bad = _NOT_HEX.search(text)
        if bad is not None:
            raise DecodeError(f"--hex input contains {bad[0]!r}, which is not a hex digit")
        even = len(text) - len(text) % 2
        carry = text[even:]
        yield bytes.fromhex(text[:even])
    if carry:
        raise DecodeError("--hex input has an odd number of hex digits")


def run_decode(
    protocol: str, stream: IO[bytes] | IO[str], hex_input: bool, out: TextIO, err: TextIO
) -> int:
    """Decode ``stream`` as ``protocol``; returns the exit code (0 ok, 1 bad data, 2 usage)."""
    factory = SESSIONS.get(protocol)
    if factory is None:
        print(f"error: unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}", file=err)
        return EXIT_USAGE
    session = factory()
    chunks = _raw_chunks(stream)
    if hex_input:
        chunks = _hex_chunks(chunks)

    def emit(items: Iterable[Item]) -> None:
        for item in items:
            print(json.dumps(item, ensure_ascii=False), file=out, flush=True)

    try:
        for chunk in chunks:
            if chunk:
                emit(session.feed(chunk))
        emit(session.feed(b""))
        emit(session.held())
    except (ValueError, OSError) as exc:  # ProtocolError is a ValueError
        emit(session.held())
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {reason}", file=err, flush=True)
        return EXIT_DATA
    return EXIT_OK
