"""Check-digit algorithms shared by the codecs and by central."""

from __future__ import annotations

import datetime as _dt
from typing import Final

_GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_GB11643_CHECK = "10X98765432"


# ASCII digit → the digit sum of twice its value, as a byte (for ``bytes.translate``).
_LUHN_DOUBLED: Final = bytes(
    (2 * (i - 48)) - 9 * (i >= 53) if 48 <= i <= 57 else i for i in range(256)
)


def luhn_check_digit(payload: str) -> str:
    """The Luhn digit that makes ``payload + digit`` valid. ``payload`` is decimal digits."""
    if not payload.isdigit() or not payload.isascii():
        raise ValueError("luhn payload must be ASCII digits")
    # Counting from the right of the full number, the check digit is position 1, so the
    # payload's rightmost digit and every second one left of it are doubled (digit sums:
    # 5 → 10 → 1). The digits are summed as bytes, in C: member codes are checked on every
    # identify.
    reversed_digits = payload.encode()[::-1]
    doubled = reversed_digits[0::2].translate(_LUHN_DOUBLED)
    kept = reversed_digits[1::2]
    total = sum(doubled) + sum(kept) - 48 * len(kept)
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """True when ``number`` (two or more ASCII digits) ends in its Luhn check digit."""
    if len(number) < 2 or not number.isdigit() or not number.isascii():
        return False
    return luhn_check_digit(number[:-1]) == number[-1]


def gb11643_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a GB 11643 ID number ('0'-'9' or 'X')."""
    if len(first17) != 17 or not first17.isdigit() or not first17.isascii():
        raise ValueError("GB 11643 needs 17 ASCII digits")
    total = sum((ord(c) - 48) * w for c, w in zip(first17, _GB11643_WEIGHTS, strict=True))
    return _GB11643_CHECK[total % 11]


def gb11643_birth_date(id_number: str) -> _dt.date | None:
    """The birth date encoded at positions 7-14, or None when it is not a real date."""
    try:
        return _dt.date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return None


def gb11643_valid(id_number: str) -> bool:
    """True for an 18-character ID number with a real birth date and a matching check char."""
    if len(id_number) != 18 or not id_number.isascii():
        return False
    body, check = id_number[:17], id_number[17].upper()
    if not body.isdigit():
        return False
    born = gb11643_birth_date(id_number)
    if born is None or born.year < 1850:
        return False
    return gb11643_check_char(body) == check
