"""Line framing for serial scanners and terminals: bytes in, complete lines out.

A scanner ends each code with CR, LF or CRLF (per profile). A code whose terminator never
comes (a misconfigured scanner, a cable pulled mid-code) is flushed after an idle timeout;
the caller passes the clock in. A line longer than ``max_line`` is discarded, reported once
as ``Overflow``, and framing resumes at the next terminator, so garbage never grows a buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import ProtocolError

Terminator = Literal["CR", "LF", "CRLF", "any", "TAB"]
_TERMINATOR_BYTES: dict[str, bytes] = {"CR": b"\r", "LF": b"\n", "CRLF": b"\n", "TAB": b"\t"}


class FramingError(ProtocolError):
    """A framing setting is invalid."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Line:
    """One complete code, terminator removed. ``flushed`` when ended by the idle timeout."""

    data: bytes
    flushed: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Overflow:
    """A line exceeded ``max_line`` bytes and was discarded."""

    discarded: int


class LineFramer:
    """Incremental splitter: ``feed()`` bytes, then take ``next_item()`` until None."""

    def __init__(self, terminator: Terminator = "any", max_line: int = 4096) -> None:
        if terminator not in (*_TERMINATOR_BYTES, "any"):
            raise FramingError(f"unknown terminator {terminator!r}")
        if max_line < 1:
            raise FramingError("max_line must be positive")
        self.terminator = terminator
        self.max_line = max_line
        self._buffer = bytearray()
        self._items: list[Line | Overflow] = []
        self._discarding = 0
        self._last_data: float | None = None

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line."""
        return len(self._buffer)

    def feed(self, data: bytes, now: float = 0.0) -> None:
        """Add bytes received at time ``now`` (seconds, any monotonic clock)."""
        if not data:
            return
        self._last_data = now
        for chunk in self._split(data):
            if chunk is None:
                self._end_line()
            else:
                self._append(chunk)

    def _split(self, data: bytes) -> list[bytes | None]:
        """Break ``data`` into content runs and line ends (None)."""
        if self.terminator == "any":
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            sep = b"\n"
        else:
            sep = _TERMINATOR_BYTES[self.terminator]
        out: list[bytes | None] = []
        parts = data.split(sep)
        for index, part in enumerate(parts):
            if part:
                out.append(part)
            if index < len(parts) - 1:
                out.append(None)
        return out

    def _append(self, chunk: bytes) -> None:
        if self._discarding:
            self._discarding += len(chunk)
            return
        room = self.max_line - len(self._buffer)
        if len(chunk) > room:
            self._discarding = len(self._buffer) + len(chunk)
            self._buffer.clear()
            return
        self._buffer += chunk

    def _end_line(self) -> None:
        if self._discarding:
            self._items.append(Overflow(discarded=self._discarding))
            self._discarding = 0
            return
        data = bytes(self._buffer)
        self._buffer.clear()
        if self.terminator == "CRLF":
            data = data.removesuffix(b"\r")
        if data:
            self._items.append(Line(data=data))

    def flush_if_idle(self, now: float, timeout: float) -> None:
        """End a partial line when nothing arrived for ``timeout`` seconds."""
        if self._last_data is None or now - self._last_data < timeout:
            return
        if self._discarding:
            self._items.append(Overflow(discarded=self._discarding))
            self._discarding = 0
        elif self._buffer:
            self._items.append(Line(data=bytes(self._buffer), flushed=True))
            self._buffer.clear()

    def next_item(self) -> Line | Overflow | None:
        """The next complete item, or None when more data is needed."""
        return self._items.pop(0) if self._items else None
