"""ESC/POS, the sans-I/O part: real-time status replies and the text layout of a slip.

No I/O, no python-escpos: a ``DLE EOT n`` reply byte in, the printer's state out; text and
widths in, printable lines out. The driver (``plugins/escpos_printer.py``) renders jobs with
python-escpos's ``Dummy`` canvas and sends them; this module holds what can be checked on its
own, by value, and fuzzed (``tests/protocols/test_escpos.py``).
"""

from __future__ import annotations

import unicodedata
from typing import Final, Literal

DLE_EOT: Final = b"\x10\x04"  # real-time status request; DLE EOT n asks status n
PRINTER_OFFLINE: Final = 0x08  # DLE EOT 1, bit 3
PAPER_NEAR_END: Final = 0x0C  # DLE EOT 4, bits 2-3
PAPER_END: Final = 0x60  # DLE EOT 4, bits 5-6
Paper = Literal["ok", "near_end", "out", "unknown"]


def paper_state(status: int) -> Paper:
    """The paper of a ``DLE EOT 4`` reply."""
    if status & PAPER_END:
        return "out"
    return "near_end" if status & PAPER_NEAR_END else "ok"


def text_width(text: str) -> int:
    """Columns on the printer: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def kv_line(label: str, value: str, width: int) -> str:
    """``label`` left and ``value`` right on one line, or on two when they do not fit."""
    gap = width - text_width(label) - text_width(value)
    if gap >= 1:
        return f"{label}{' ' * gap}{value}"
    return f"{label}\n{' ' * max(0, width - text_width(value))}{value}"


def mask_card(number: str) -> str:
    """Only the last 4 characters, and never how long the number is."""
    return "****" + number[-4:] if len(number) > 4 else "****"


def yuan(fen: int) -> str:
    """Fen (integer) as yuan with two decimals, without floats: -1234 -> "-12.34"."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"
