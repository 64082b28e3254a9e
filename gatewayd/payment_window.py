"""The payment-code window: a payment code that identified a member before goods were entered
is kept for that terminal, so checkout within the window charges without a second scan.

Memory only, by design: the code is never written to disk or logged in full. A code is taken
once (``claim``), by its own terminal only, and is gone after the window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

DEFAULT_WINDOW = 300.0


@dataclass(frozen=True, slots=True)
class HeldCode:
    terminal: str
    kind: str
    code: str
    event_id: str
    member: dict[str, Any] | None
    expires: float

    def as_claim(self, now: float) -> dict[str, Any]:
        return {
            "terminal": self.terminal,
            "kind": self.kind,
            "code": self.code,
            "event_id": self.event_id,
            "member": self.member,
            "expires_in": round(max(0.0, self.expires - now), 3),
        }


class PaymentWindow:
    def __init__(self, window: float = DEFAULT_WINDOW) -> None:
        self.window = window
        self._held: dict[str, HeldCode] = {}

    def hold(
        self,
        terminal: str,
        kind: str,
        code: str,
        event_id: str,
        member: dict[str, Any] | None,
        now: float | None = None,
        window: float | None = None,
    ) -> None:
        """Keep ``code`` for ``terminal``; a newer code replaces an older one."""
        now = time.monotonic() if now is None else now
        expires = now + (self.window if window is None else window)
        self._held[terminal] = HeldCode(terminal, kind, code, event_id, member, expires)

    def claim(self, terminal: str, now: float | None = None) -> HeldCode | None:
        """Take the terminal's code once; None when there is none or the window has passed."""
        now = time.monotonic() if now is None else now
        held = self._held.pop(terminal, None)
        if held is None or held.expires <= now:
            return None
        return held

    def peek(self, terminal: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        held = self._held.get(terminal)
        return held is not None and held.expires > now

    def expire(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._held = {t: h for t, h in self._held.items() if h.expires > now}
