"""Token classification: what kind of code did a device just hand us?

A scanned or read string plus the method that produced it decide the kind. The method
matters: an 18-digit value from an ID-card reader is an ID number, from a barcode gun it is
a WeChat payment code (whose prefixes 10-15 are also valid region codes of ID numbers).

The chain's own formats are reserved here so that they can never collide with a payment
code, a phone number or an ID number:

* ``member_code``: ``96`` + 17 digits + Luhn check digit (20 digits). Fixed per card.
* ``consumption_code``: ``97`` + 19 random digits + Luhn check digit (22 digits, 63 bits).

No payment-code family uses the prefix 96 or 97 (WeChat 10-15, Alipay 25-30, UnionPay 62).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from .checks import gb11643_valid, luhn_valid
from .errors import ProtocolError

MEMBER_CODE_PREFIX: Final = "96"
MEMBER_CODE_LENGTH: Final = 20
CONSUMPTION_CODE_PREFIX: Final = "97"
CONSUMPTION_CODE_LENGTH: Final = 22
MAX_TOKEN_LENGTH: Final = 256


class TokenError(ProtocolError):
    """A raw input that cannot be a token at all (empty, oversized, binary)."""


class Method(StrEnum):
    """How the token reached the gateway."""

    BARCODE = "barcode"
    MAGSTRIPE = "magstripe"
    IC_CARD = "ic_card"
    ID_CARD = "id_card"
    FACE = "face"
    PALM = "palm"
    CALLER_ID = "caller_id"
    MANUAL = "manual"


class TokenKind(StrEnum):
    """What the token is. Central resolves each kind to a member in its own way."""

    WECHAT_PAYMENT_CODE = "wechat_payment_code"
    ALIPAY_PAYMENT_CODE = "alipay_payment_code"
    UNIONPAY_PAYMENT_CODE = "unionpay_payment_code"
    LEGACY_MEMBER_CODE = "legacy_member_code"
    MEMBER_CODE = "member_code"
    CONSUMPTION_CODE = "consumption_code"
    CARD_NUMBER = "card_number"
    IC_UID = "ic_uid"
    PHONE = "phone"
    ID_NUMBER = "id_number"
    UNKNOWN = "unknown"


PAYMENT_CODE_KINDS: Final = frozenset(
    {
        TokenKind.WECHAT_PAYMENT_CODE,
        TokenKind.ALIPAY_PAYMENT_CODE,
        TokenKind.UNIONPAY_PAYMENT_CODE,
    }
)
# Kinds that identify a person and must never appear in full in a log line.
SENSITIVE_KINDS: Final = PAYMENT_CODE_KINDS | {
    TokenKind.CONSUMPTION_CODE,
    TokenKind.PHONE,
    TokenKind.ID_NUMBER,
    TokenKind.CARD_NUMBER,
    TokenKind.MEMBER_CODE,
    TokenKind.LEGACY_MEMBER_CODE,
    TokenKind.IC_UID,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Token:
    """A classified token: its kind, its normalised value and kind-specific fields."""

    kind: TokenKind
    value: str
    extra: dict[str, str | bool | int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, str | bool | int]:
        """The JSON shape used by events and ``gatewayd decode token``."""
        return {"kind": self.kind.value, "value": self.value, **self.extra}


_WECHAT = re.compile(r"1[0-5]\d{16}")
_ALIPAY = re.compile(r"(?:2[5-9]|30)\d{14,22}")
_UNIONPAY = re.compile(r"62\d{14,18}")
_PHONE = re.compile(r"1[3-9]\d{9}")
_LEGACY = re.compile(r"[A-Za-z]{36}")
_ID_NUMBER = re.compile(r"\d{17}[\dXx]")
_HEX_UID = re.compile(r"(?:[0-9A-Fa-f]{2}){4,10}")
_CARD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{3,39}")
_AIM = re.compile(r"\][A-Za-z][0-9A-Za-z]")
_NOISE = re.compile(r"[\s\x00-\x1f\x7f]+")
_PHONE_PREFIX = re.compile(r"^(?:\+86|0086)")


def strip_aim_prefix(text: str) -> tuple[str | None, str]:
    """Split an AIM symbology identifier (``]C0``, ``]Q1``, ``]E0``…) from the data."""
    if _AIM.match(text):
        return text[:3], text[3:]
    return None, text


def normalise(raw: str) -> str:
    """Remove scanner noise: CR/LF, spaces, control characters.

    Raises ``TokenError`` for input that cannot be a token (empty or oversized).
    """
    if len(raw) > MAX_TOKEN_LENGTH * 2 + 16:
        raise TokenError(f"input of {len(raw)} characters is too long for a token")
    text = _NOISE.sub("", raw)
    if not text:
        raise TokenError("empty input")
    return text


def _undouble(text: str, method: Method) -> str:
    """Undo an over-sensitive scanner emitting the same code twice in one read."""
    half, odd = divmod(len(text), 2)
    if odd or half == 0 or text[:half] != text[half:]:
        return text
    half_kind = _classify(text[:half], method).kind
    if half_kind in (TokenKind.UNKNOWN, TokenKind.CARD_NUMBER):
        # A doubled plain card number is indistinguishable from a longer card: keep it whole,
        # unless the whole is not a token at all.
        whole_unknown = _classify(text, method).kind is TokenKind.UNKNOWN
        return text[:half] if whole_unknown and half_kind is not TokenKind.UNKNOWN else text
    return text[:half]


def classify(raw: str, method: Method | str = Method.BARCODE) -> Token:
    """Classify one raw input. Never raises for garbage: unknown input is kind ``unknown``.

    Raises ``TokenError`` only when the input is empty or longer than any token can be.
    """
    method = Method(method)
    text = normalise(raw)
    symbology, text = strip_aim_prefix(text)
    if not text:
        raise TokenError("empty input after the symbology identifier")
    if len(text) > MAX_TOKEN_LENGTH:
        raise TokenError(f"token of {len(text)} characters is too long")
    text = _undouble(text, method)
    token = _classify(text, method)
    if symbology is not None:
        return Token(kind=token.kind, value=token.value, extra={**token.extra, "aim": symbology})
    return token


def _classify(text: str, method: Method) -> Token:
    if method is Method.ID_CARD:
        return _as_id_number(text)
    if method is Method.CALLER_ID:
        return _as_phone(text)
    if method is Method.IC_CARD and _HEX_UID.fullmatch(text):
        # A reader's UID; a number stored on the card is built by its driver as card_number.
        return Token(kind=TokenKind.IC_UID, value=text.upper())
    if _LEGACY.fullmatch(text):
        return Token(kind=TokenKind.LEGACY_MEMBER_CODE, value=text.upper())
    if text.isdigit() and text.isascii():
        return _classify_digits(text, method)
    if _ID_NUMBER.fullmatch(text):
        return _as_id_number(text)
    if _CARD.fullmatch(text) and text.isascii():
        return Token(kind=TokenKind.CARD_NUMBER, value=text.upper())
    return Token(kind=TokenKind.UNKNOWN, value=text, extra={"reason": "unrecognised format"})


def _classify_digits(text: str, method: Method) -> Token:
    if len(text) == 18 and method is Method.MANUAL and gb11643_valid(text):
        # A cashier typing 18 digits is far likelier to type an ID number than a payment code.
        return Token(kind=TokenKind.ID_NUMBER, value=text)
    if _WECHAT.fullmatch(text):
        return Token(kind=TokenKind.WECHAT_PAYMENT_CODE, value=text)
    if _ALIPAY.fullmatch(text):
        return Token(kind=TokenKind.ALIPAY_PAYMENT_CODE, value=text)
    if _UNIONPAY.fullmatch(text):
        return Token(kind=TokenKind.UNIONPAY_PAYMENT_CODE, value=text)
    if text.startswith(MEMBER_CODE_PREFIX) and len(text) == MEMBER_CODE_LENGTH:
        return _checked(text, TokenKind.MEMBER_CODE)
    if text.startswith(CONSUMPTION_CODE_PREFIX) and len(text) == CONSUMPTION_CODE_LENGTH:
        return _checked(text, TokenKind.CONSUMPTION_CODE)
    if _PHONE.fullmatch(text):
        return Token(kind=TokenKind.PHONE, value=text)
    if len(text) == 18 and gb11643_valid(text):
        return Token(kind=TokenKind.ID_NUMBER, value=text)
    if 4 <= len(text) <= 24:
        return Token(
            kind=TokenKind.CARD_NUMBER, value=text, extra={"check_digit": luhn_valid(text)}
        )
    return Token(kind=TokenKind.UNKNOWN, value=text, extra={"reason": "unrecognised format"})


def _checked(text: str, kind: TokenKind) -> Token:
    if luhn_valid(text):
        return Token(kind=kind, value=text)
    return Token(
        kind=TokenKind.UNKNOWN, value=text, extra={"reason": f"{kind.value} check digit mismatch"}
    )


def _as_id_number(text: str) -> Token:
    value = text.upper()
    if gb11643_valid(value):
        return Token(kind=TokenKind.ID_NUMBER, value=value)
    return Token(kind=TokenKind.UNKNOWN, value=value, extra={"reason": "invalid ID number"})


def _as_phone(text: str) -> Token:
    digits = _PHONE_PREFIX.sub("", text)
    if not digits.isdigit() or not digits.isascii() or not 3 <= len(digits) <= 20:
        return Token(kind=TokenKind.UNKNOWN, value=text, extra={"reason": "not a phone number"})
    return Token(
        kind=TokenKind.PHONE, value=digits, extra={"mobile": bool(_PHONE.fullmatch(digits))}
    )


def mask(value: str, keep: int = 4) -> str:
    """Show at most the last ``keep`` characters: ``*************1234``."""
    if len(value) <= keep:
        return "*" * len(value)
    return "*" * (len(value) - keep) + value[-keep:]


class RepeatSuppressor:
    """Drops a repeat of the same code from the same device within a window.

    Sans-I/O: the caller passes the current monotonic time in seconds.
    Memory is bounded: entries older than the window are pruned on every call.
    """

    def __init__(self, window: float = 0.5) -> None:
        self.window = window
        self._seen: dict[tuple[str, str], float] = {}

    def is_repeat(self, device: str, value: str, now: float) -> bool:
        """True when ``value`` came from ``device`` less than ``window`` seconds ago."""
        if len(self._seen) > 64:
            self._seen = {k: t for k, t in self._seen.items() if now - t < self.window}
        key = (device, value)
        last = self._seen.get(key)
        self._seen[key] = now
        return last is not None and now - last < self.window
