"""Injectable time: services ask a ``Clock``, so tests control code expiry and staleness."""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in epoch seconds (UTC). The only source of "now" in central."""

    def now(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward (or back, with a negative value)."""
        self._now += seconds


def to_millis(seconds: float) -> int:
    """Epoch seconds to the integer milliseconds the database stores."""
    return round(seconds * 1000)


def iso(millis: int | None) -> str | None:
    """Stored milliseconds as RFC 3339 UTC with milliseconds, or None."""
    if millis is None:
        return None
    when = dt.datetime.fromtimestamp(millis / 1000, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
