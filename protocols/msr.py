"""ISO/IEC 7811/7813 magnetic stripes as keyboard-wedge and serial readers type them.

The reader's firmware has already checked parity and LRC, so what reaches the host is text:
``%<track 1>?;<track 2>?;<track 3>?`` (track 3 is sent with ``+`` by several readers), often
followed by CR or LF. A track the head could not read arrives as ``E`` between its sentinels
(``%E?``), which is not the same as a track that is absent from the card.

A swipe ends at CR/LF, at end of input (``feed(b"")``), when a new ``%`` begins while the swipe
already has a track (track 1 always comes first), or when the caller's idle timer says so
(``end_swipe()``): readers configured without a suffix give no other sign.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

from .checks import luhn_valid
from .errors import ProtocolError

TRACK_MAX_CHARS: Final = {1: 79, 2: 40, 3: 107}
_TRACK1_CHARS: Final = re.compile(r"[\x20-\x5f]*")
_TRACK23_CHARS: Final = re.compile(r"[0-9:<=>]*")
_FORMAT_B: Final = re.compile(
    r"B(?P<pan>\d{1,19})\^(?P<name>[^^]{2,26})\^(?P<expiry>\d{4}|\^)(?P<service>\d{3}|\^)(?P<disc>.*)"
)
_TRACK2: Final = re.compile(
    r"(?P<pan>\d{1,19})=(?P<expiry>\d{4}|=)(?P<service>\d{3}|=)(?P<disc>.*)"
)
_DIGITS_ONLY: Final = re.compile(r"\d{1,19}")
_SENTINELS: Final = "%;+"


class MsrError(ProtocolError):
    """A swipe that cannot be decoded: no readable track, a broken sentinel, a bad character."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Track1:
    """Track 1 format B (IATA), the banking layout; other formats keep only the raw track."""

    pan: str
    name: str
    expiry: str | None
    service_code: str | None
    discretionary: str
    pan_valid: bool

    @property
    def surname(self) -> str:
        return self.name.split("/", 1)[0].strip()

    @property
    def given_name(self) -> str:
        return self.name.split("/", 1)[1].strip() if "/" in self.name else ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Track2:
    """Track 2 (ABA). A bare digit string (common on member cards) is read as a PAN alone."""

    pan: str
    expiry: str | None
    service_code: str | None
    discretionary: str
    pan_valid: bool


def _check_track(number: int, data: str) -> None:
    if len(data) > TRACK_MAX_CHARS[number]:
        raise MsrError(f"track {number} has {len(data)} characters, max {TRACK_MAX_CHARS[number]}")
    charset = _TRACK1_CHARS if number == 1 else _TRACK23_CHARS
    if not charset.fullmatch(data) or "%" in data or "?" in data:
        bad = next(c for c in data if not charset.fullmatch(c) or c in "%?")
        raise MsrError(f"track {number} contains {bad!r}, outside its character set")
    if data in ("", "E"):
        raise MsrError(f"track {number} data {data!r} is reserved (absent or read error)")


@dataclass(frozen=True, kw_only=True, slots=True)
class Swipe:
    """One card swipe: the raw data of each readable track, and which tracks read as E."""

    track1: str | None = None
    track2: str | None = None
    track3: str | None = None
    errors: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not set(self.errors) <= {1, 2, 3} or len(set(self.errors)) != len(self.errors):
            raise MsrError(f"bad error track list {self.errors!r}")
        for number, data in ((1, self.track1), (2, self.track2), (3, self.track3)):
            if data is None:
                continue
            if number in self.errors:
                raise MsrError(f"track {number} is both read and in error")
            _check_track(number, data)
        if self.track1 is None and self.track2 is None and self.track3 is None:
            reason = f"tracks {list(self.errors)} read as E" if self.errors else "no track"
            raise MsrError(f"swipe has no readable track ({reason})")

    @property
    def track1_fields(self) -> Track1 | None:
        """Track 1 split per format B, or None when absent or in another format."""
        match = _FORMAT_B.fullmatch(self.track1 or "")
        if match is None:
            return None
        return Track1(
            pan=match["pan"],
            name=match["name"].strip(),
            expiry=None if match["expiry"] == "^" else match["expiry"],
            service_code=None if match["service"] == "^" else match["service"],
            discretionary=match["disc"],
            pan_valid=luhn_valid(match["pan"]),
        )

    @property
    def track2_fields(self) -> Track2 | None:
        """Track 2 split at its separators, or None when absent or not PAN-shaped."""
        data = self.track2 or ""
        if _DIGITS_ONLY.fullmatch(data):
            return Track2(
                pan=data,
                expiry=None,
                service_code=None,
                discretionary="",
                pan_valid=luhn_valid(data),
            )
        match = _TRACK2.fullmatch(data)
        if match is None:
            return None
        return Track2(
            pan=match["pan"],
            expiry=None if match["expiry"] == "=" else match["expiry"],
            service_code=None if match["service"] == "=" else match["service"],
            discretionary=match["disc"],
            pan_valid=luhn_valid(match["pan"]),
        )


def _parse_line(line: str) -> list[Swipe]:
    """Split one line into swipes; a ``%`` after a track starts the next swipe."""
    swipes: list[Swipe] = []
    tracks: dict[int, str] = {}
    errors: list[int] = []
    index = 0
    while index < len(line):
        char = line[index]
        if char in " \t":
            index += 1
            continue
        if char not in _SENTINELS:
            raise MsrError(f"unexpected {char!r} at column {index}, outside any track")
        end = line.find("?", index + 1)
        if end < 0:
            raise MsrError(f"track starting with {char!r} at column {index} has no end sentinel")
        data = line[index + 1 : end]
        index = end + 1
        seen = set(tracks) | set(errors)
        if char == "%" and seen:
            swipes.append(_make_swipe(tracks, errors))
            tracks, errors, seen = {}, [], set()
        if char == "%":
            number = 1
        elif char == "+" or seen & {2, 3}:
            number = 3
        else:
            number = 2
        if number in seen:
            raise MsrError(f"track {number} appears twice in one swipe")
        if data == "E":
            errors.append(number)
        else:
            tracks[number] = data
    if tracks or errors:
        swipes.append(_make_swipe(tracks, errors))
    return swipes


def _make_swipe(tracks: dict[int, str], errors: list[int]) -> Swipe:
    # An empty track (``;?``) is a blank stripe: it takes its slot but carries no data.
    data = {number: value or None for number, value in tracks.items()}
    return Swipe(track1=data.get(1), track2=data.get(2), track3=data.get(3), errors=tuple(errors))


class SwipeDecoder:
    """Incremental swipe decoder: ``feed()`` text or bytes, then ``next_item()`` until None.

    ``next_item()`` raises ``MsrError`` for a bad swipe; the swipe is dropped and the decoder
    stays usable. A line longer than ``max_line`` is dropped up to its end with one error.
    """

    def __init__(self, *, max_line: int = 512) -> None:
        self._max_line = max_line
        self._line: list[str] = []
        self._length = 0
        self._discarding = False
        self._queue: deque[Swipe | MsrError | str] = deque()

    def feed(self, data: bytes | str) -> None:
        """Add input; empty input means end of input and completes a pending swipe."""
        if not data:
            self.end_swipe()
            return
        text = data.decode("latin-1") if isinstance(data, bytes) else data
        parts = re.split(r"[\r\n]", text)
        for number, part in enumerate(parts):
            if number:
                self.end_swipe()
            if self._discarding or not part:
                continue
            self._length += len(part)
            if self._length > self._max_line:
                self._queue.append(MsrError(f"swipe longer than {self._max_line} characters"))
                self._line, self._length, self._discarding = [], 0, True
                continue
            self._line.append(part)

    def end_swipe(self) -> None:
        """Complete the pending swipe (the caller's idle timer fired, or a CR/LF arrived)."""
        if self._line:
            self._queue.append("".join(self._line))
        self._line, self._length, self._discarding = [], 0, False

    def next_item(self) -> Swipe | None:
        """The next decoded swipe, or None when more input is needed."""
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, MsrError):
                raise item
            if isinstance(item, Swipe):
                return item
            swipes = _parse_line(item)
            for extra in reversed(swipes[1:]):
                self._queue.appendleft(extra)
            if swipes:
                return swipes[0]
        return None


def decode_swipes(data: bytes | str) -> list[Swipe]:
    """Every swipe of a whole input (one per line); raises on the first bad one."""
    decoder = SwipeDecoder(max_line=max(512, len(data) + 1))
    decoder.feed(data)
    decoder.feed(b"")
    swipes: list[Swipe] = []
    while (swipe := decoder.next_item()) is not None:
        swipes.append(swipe)
    return swipes


def decode_swipe(data: bytes | str) -> Swipe:
    """Exactly one swipe, with an optional trailing CR/LF."""
    swipes = decode_swipes(data)
    if len(swipes) != 1:
        raise MsrError(f"expected one swipe, got {len(swipes)}")
    return swipes[0]


CardField = Literal["pan", "discretionary", "raw", "name"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CardNumberRule:
    """Where a store's member card keeps its number, from the device profile.

    ``field`` is taken from ``track`` (``name`` needs track 1 format B; track 3 has only
    ``raw``), then sliced ``[start:stop]``, then searched with ``pattern``: its group
    ``number`` if named, else group 1 if any, else the whole match.
    """

    track: int = 2
    field: CardField = "pan"
    start: int | None = None
    stop: int | None = None
    pattern: str | None = None

    def __post_init__(self) -> None:
        if self.track not in (1, 2, 3):
            raise MsrError(f"card number rule: no track {self.track}")
        if self.field not in ("pan", "discretionary", "raw", "name"):
            raise MsrError(f"card number rule: unknown field {self.field!r}")
        if self.track == 3 and self.field != "raw":
            raise MsrError("card number rule: track 3 has only the raw field")
        if self.field == "name" and self.track != 1:
            raise MsrError("card number rule: only track 1 has a name")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise MsrError(f"card number rule: bad pattern: {exc}") from exc


def _field_value(swipe: Swipe, rule: CardNumberRule) -> str | None:
    if rule.field == "raw":
        return {1: swipe.track1, 2: swipe.track2, 3: swipe.track3}[rule.track]
    parsed: Track1 | Track2 | None = swipe.track1_fields if rule.track == 1 else swipe.track2_fields
    if parsed is None:
        return None
    if rule.field == "name":
        return parsed.name if isinstance(parsed, Track1) else None
    return parsed.pan if rule.field == "pan" else parsed.discretionary


def pick_card_number(swipe: Swipe, *rules: CardNumberRule) -> str | None:
    """The member card number per the first rule that yields one (default: track 2 PAN)."""
    for rule in rules or (CardNumberRule(),):
        value = _field_value(swipe, rule)
        if value is None:
            continue
        value = value[rule.start : rule.stop]
        if rule.pattern is not None:
            match = re.search(rule.pattern, value)
            if match is None:
                continue
            if "number" in match.re.groupindex:
                value = match["number"] or ""
            else:
                value = match[1] if match.re.groups else match[0]
                value = value or ""
        if value:
            return value
    return None


def format_track1(
    *,
    pan: str,
    name: str,
    expiry: str | None = None,
    service_code: str | None = None,
    discretionary: str = "",
) -> str:
    """Track 1 format B data (between the sentinels), for simulators and tests."""
    data = f"B{pan}^{name}^{expiry or '^'}{service_code or '^'}{discretionary}"
    if _FORMAT_B.fullmatch(data) is None:
        raise MsrError("fields do not make a format B track 1")
    _check_track(1, data)
    return data


def format_track2(
    *, pan: str, expiry: str | None = None, service_code: str | None = None, discretionary: str = ""
) -> str:
    """Track 2 data (between the sentinels), for simulators and tests."""
    data = f"{pan}={expiry or '='}{service_code or '='}{discretionary}"
    if _TRACK2.fullmatch(data) is None:
        raise MsrError("fields do not make a track 2")
    _check_track(2, data)
    return data


def encode_swipe(swipe: Swipe, *, track3_sentinel: str = "+", line_end: str = "\r") -> str:
    """What a keyboard-wedge reader types for ``swipe``, error tracks as ``E``."""
    if track3_sentinel not in (";", "+"):
        raise MsrError(f"track 3 sentinel must be ';' or '+', not {track3_sentinel!r}")
    has_track2 = swipe.track2 is not None or 2 in swipe.errors
    if track3_sentinel == ";" and not has_track2:
        raise MsrError("track 3 can start with ';' only after a track 2")
    parts: list[str] = []
    for number, sentinel, data in (
        (1, "%", swipe.track1),
        (2, ";", swipe.track2),
        (3, track3_sentinel, swipe.track3),
    ):
        if number in swipe.errors:
            parts.append(f"{sentinel}E?")
        elif data is not None:
            parts.append(f"{sentinel}{data}?")
    return "".join(parts) + line_end
