"""Linux input key events → text, for barcode guns and card readers that type like keyboards.

Works from the numeric key codes of ``linux/input-event-codes.h`` so the codec needs neither
evdev nor X; layouts are tables of (plain, Shift, AltGr) characters, as xkb's ``us``, ``fr``
and ``de`` basic variants produce them on a pc105 keyboard. A combining accent in a table is a
dead key: it composes with the next character (``^`` then ``e`` → ``ê``, ``^`` then space →
``^``), which matters because magstripe readers type ``^`` between track-1 fields.

A scan completes when the terminator key is *pressed* (value 1): scanners send press and
release back to back, so waiting for the release adds latency and gains nothing, and a
release lost to a re-grab would swallow the scan. The terminator's release is ignored.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Final, Literal

from .errors import ProtocolError

KEY_ESC: Final = 1
KEY_BACKSPACE: Final = 14
KEY_TAB: Final = 15
KEY_ENTER: Final = 28
KEY_LEFTCTRL: Final = 29
KEY_A: Final = 30
KEY_LEFTSHIFT: Final = 42
KEY_RIGHTSHIFT: Final = 54
KEY_LEFTALT: Final = 56
KEY_SPACE: Final = 57
KEY_CAPSLOCK: Final = 58
KEY_NUMLOCK: Final = 69
KEY_KPENTER: Final = 96
KEY_RIGHTCTRL: Final = 97
KEY_RIGHTALT: Final = 100  # AltGr on European layouts
KEY_MAX: Final = 0x2FF

TERMINATORS: Final = {"enter": KEY_ENTER, "kp_enter": KEY_KPENTER, "tab": KEY_TAB}
Terminator = Literal["enter", "kp_enter", "tab"]
LayoutName = Literal["us", "fr", "de"]

_CIRCUMFLEX, _DIAERESIS, _ACUTE, _GRAVE = "\u0302", "\u0308", "\u0301", "\u0300"
_SPACING: Final = {_CIRCUMFLEX: "^", _DIAERESIS: "¨", _ACUTE: "´", _GRAVE: "`"}

Keys = dict[int, tuple[str, str, str]]


class KeymapError(ProtocolError):
    """A bad key event, an unknown layout or terminator, or a scan with no end in sight."""


def _row(first: int, plain: str, shift: str, altgr: dict[int, str] | None = None) -> Keys:
    """Consecutive key codes from ``first``; a space in ``shift`` means the same as plain."""
    extra = altgr or {}
    keys: Keys = {}
    for index, (low, high) in enumerate(zip(plain, shift, strict=True)):
        code = first + index
        keys[code] = (low, low if high == " " else high, extra.get(code, ""))
    return keys


_KEYPAD: Final = {71: "7", 72: "8", 73: "9", 74: "-", 75: "4", 76: "5", 77: "6", 78: "+"}
_KEYPAD_REST: Final = {79: "1", 80: "2", 81: "3", 82: "0", 55: "*", 98: "/"}
_KEYPAD_CODES: Final = frozenset({*_KEYPAD, *_KEYPAD_REST, 83})


def _layout(*rows: Keys, keypad_dot: str = ".") -> Keys:
    keys: Keys = {KEY_SPACE: (" ", " ", "")}
    for row in rows:
        keys.update(row)
    for code, char in {**_KEYPAD, **_KEYPAD_REST, 83: keypad_dot}.items():
        keys[code] = (char, char, "")
    return keys


LAYOUTS: Final[dict[str, Keys]] = {
    "us": _layout(
        _row(2, "1234567890-=", "!@#$%^&*()_+"),
        _row(16, "qwertyuiop[]", "QWERTYUIOP{}"),
        _row(30, "asdfghjkl;'`", 'ASDFGHJKL:"~'),
        _row(43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
        {86: ("<", ">", "")},
    ),
    "fr": _layout(
        _row(
            2,
            "&é\"'(-è_çà)=",
            "1234567890°+",
            dict(zip(range(3, 14), "~#{[|`\\^@]}", strict=True)),
        ),
        _row(16, f"azertyuiop{_CIRCUMFLEX}$", f"AZERTYUIOP{_DIAERESIS}£", {18: "€", 27: "¤"}),
        _row(30, "qsdfghjklmù", "QSDFGHJKLM%"),
        {41: ("²", "²", ""), 43: ("*", "µ", ""), 86: ("<", ">", "")},
        _row(44, "wxcvbn,;:!", "WXCVBN?./§"),
    ),
    "de": _layout(
        _row(
            2,
            f"1234567890ß{_ACUTE}",
            f'!"§$%&/()=?{_GRAVE}',
            {3: "²", 4: "³", 8: "{", 9: "[", 10: "]", 11: "}", 12: "\\"},
        ),
        _row(16, "qwertzuiopü+", "QWERTZUIOPÜ*", {16: "@", 18: "€", 27: "~"}),
        _row(30, "asdfghjklöä", "ASDFGHJKLÖÄ"),
        {41: (_CIRCUMFLEX, "°", ""), 43: ("#", "'", "")},
        _row(44, "yxcvbnm,.-", "YXCVBNM;:_", {50: "µ"}),
        {86: ("<", ">", "|")},
        keypad_dot=",",
    ),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Scan:
    """One terminated input. ``duration`` runs from the first character's key-down to the
    terminator's; ``mean_interval`` is that divided by ``chars`` (seconds per character)."""

    text: str
    chars: int
    duration: float
    mean_interval: float


def is_machine_typed(scan: Scan, *, max_interval: float = 0.030, min_chars: int = 1) -> bool:
    """True when the scan came faster than a person types (jQuery scannerDetection: 30 ms)."""
    return scan.chars >= min_chars and scan.mean_interval <= max_interval


def _compose(accent: str, char: str) -> str:
    if char == " ":
        return _SPACING[accent]
    composed = unicodedata.normalize("NFC", char + accent)
    return composed if len(composed) == 1 else _SPACING[accent] + char


class KeyDecoder:
    """One input device's keystrokes → ``Scan`` values; modifier state is per instance."""

    def __init__(
        self,
        layout: LayoutName | str = "us",
        terminator: Terminator | str = "enter",
        *,
        max_chars: int = 1024,
        numlock: bool = True,
    ) -> None:
        if layout not in LAYOUTS:
            raise KeymapError(f"unknown layout {layout!r}; known: {sorted(LAYOUTS)}")
        if terminator not in TERMINATORS:
            raise KeymapError(f"unknown terminator {terminator!r}; known: {sorted(TERMINATORS)}")
        self._keys = LAYOUTS[layout]
        self._terminator = TERMINATORS[terminator]
        self._max_chars = max_chars
        self._numlock = numlock
        self.reset()

    def reset(self) -> None:
        """Forget text and held modifiers (the device was re-opened or re-grabbed)."""
        self._text: list[str] = []
        self._first: float | None = None
        self._shift: set[int] = set()
        self._altgr = False
        self._control: set[int] = set()
        self._capslock = False
        self._dead: str | None = None

    @property
    def pending(self) -> str:
        """Text typed since the last terminator."""
        return "".join(self._text)

    def feed(self, code: int, value: int, timestamp: float) -> Scan | None:
        """One EV_KEY event (value 1 down, 0 up, 2 repeat); returns a scan at the terminator."""
        if value not in (0, 1, 2):
            raise KeymapError(f"key value {value} is not 0, 1 or 2")
        if not 0 <= code <= KEY_MAX:
            raise KeymapError(f"key code {code} is out of range")
        if not math.isfinite(timestamp):
            raise KeymapError(f"timestamp {timestamp} is not a finite number")
        down = value != 0
        if code in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT):
            (self._shift.add if down else self._shift.discard)(code)
        elif code == KEY_RIGHTALT:
            self._altgr = down
        elif code in (KEY_LEFTCTRL, KEY_RIGHTCTRL, KEY_LEFTALT):
            (self._control.add if down else self._control.discard)(code)
        elif value != 1 and code in (KEY_CAPSLOCK, KEY_NUMLOCK, self._terminator):
            pass  # locks toggle once per press; the terminator's release is not a new scan
        elif code == KEY_CAPSLOCK:
            self._capslock = not self._capslock
        elif code == KEY_NUMLOCK:
            self._numlock = not self._numlock
        elif code == self._terminator:
            return self._finish(timestamp)
        elif down and code == KEY_BACKSPACE:
            if self._text:
                self._text.pop()
        elif down and not self._control:
            self._type(code, timestamp)
        return None

    def _type(self, code: int, timestamp: float) -> None:
        entry = self._keys.get(code)
        if entry is None or (code in _KEYPAD_CODES and not self._numlock):
            return  # unmapped keys (arrows, F-keys) and navigation-mode keypad type nothing
        plain, shifted, altgr = entry
        if self._altgr:
            char = altgr
        else:
            shift = bool(self._shift)
            if self._capslock and plain.isalpha() and plain.upper() == shifted:
                shift = not shift
            char = shifted if shift else plain
        if not char:
            return
        if char in _SPACING:
            if self._dead is None:
                self._dead = char
                self._mark(timestamp)
                return
            char, self._dead = _SPACING[self._dead], None if char == self._dead else char
        elif self._dead is not None:
            char, self._dead = _compose(self._dead, char), None
        self._mark(timestamp)
        if len(self._text) + len(char) > self._max_chars:
            self._text, self._first = [], None
            raise KeymapError(f"more than {self._max_chars} characters without a terminator")
        self._text.extend(char)

    def _mark(self, timestamp: float) -> None:
        if self._first is None:
            self._first = timestamp

    def _finish(self, timestamp: float) -> Scan | None:
        if self._dead is not None:
            self._text.append(_SPACING[self._dead])
            self._dead = None
        text, first = "".join(self._text), self._first
        self._text, self._first = [], None
        if not text or first is None:
            return None  # a lone Enter: nothing was scanned
        duration = max(0.0, timestamp - first)
        return Scan(
            text=text, chars=len(text), duration=duration, mean_interval=duration / len(text)
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyEvent:
    """One EV_KEY event as the kernel reports it."""

    code: int
    value: int
    timestamp: float


def _reverse(keys: Keys) -> dict[str, list[tuple[int, int]]]:
    """char → the (code, level) strokes that type it: main keys first, lowest level first."""
    strokes: dict[str, list[tuple[int, int]]] = {}
    main = sorted(set(keys) - _KEYPAD_CODES)
    # Main keys at any level before the keypad: a wedge types AZERTY digits with Shift.
    for group in (main, sorted(_KEYPAD_CODES)):
        for level in (0, 1, 2):
            for code in group:
                char = keys[code][level]
                if char and char not in _SPACING and char not in strokes:
                    strokes[char] = [(code, level)]
    dead = {keys[c][lv]: (c, lv) for c in main for lv in (0, 1, 2) if keys[c][lv] in _SPACING}
    for accent, stroke in dead.items():
        strokes.setdefault(_SPACING[accent], [stroke, (KEY_SPACE, 0)])
        for base in list(strokes):
            composed = unicodedata.normalize("NFC", base + accent)
            if len(base) == 1 and len(composed) == 1 and base.isalpha():
                strokes.setdefault(composed, [stroke, *strokes[base]])
    return strokes


_STROKES: Final = {name: _reverse(keys) for name, keys in LAYOUTS.items()}
_LEVEL_KEY: Final = {1: KEY_LEFTSHIFT, 2: KEY_RIGHTALT}


def text_to_events(
    text: str,
    layout: LayoutName | str = "us",
    terminator: Terminator | str = "enter",
    *,
    start: float = 0.0,
    interval: float = 0.005,
) -> list[KeyEvent]:
    """The key events a keyboard-wedge device sends to type ``text`` and its terminator.

    Each character's key-down comes ``interval`` after the previous one, so decoding the
    result gives a scan whose ``mean_interval`` is ``interval``.
    """
    if layout not in _STROKES or terminator not in TERMINATORS:
        raise KeymapError(f"unknown layout {layout!r} or terminator {terminator!r}")
    strokes = _STROKES[layout]
    events: list[KeyEvent] = []
    now = start
    for char in text:
        if char not in strokes:
            raise KeymapError(f"{char!r} cannot be typed on the {layout} layout")
        for number, (code, level) in enumerate(strokes[char]):
            at = now if number == 0 else now + interval / 4
            modifier = _LEVEL_KEY.get(level)
            if modifier is not None:
                events.append(KeyEvent(code=modifier, value=1, timestamp=at))
            events.append(KeyEvent(code=code, value=1, timestamp=at))
            events.append(KeyEvent(code=code, value=0, timestamp=at + interval / 8))
            if modifier is not None:
                events.append(KeyEvent(code=modifier, value=0, timestamp=at + interval / 8))
        now += interval
    code = TERMINATORS[terminator]
    events.append(KeyEvent(code=code, value=1, timestamp=now))
    events.append(KeyEvent(code=code, value=0, timestamp=now + interval / 8))
    return events
