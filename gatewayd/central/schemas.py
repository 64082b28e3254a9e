"""Request and response bodies as pydantic models; ``/openapi.json`` is generated from them.

Every string is checked for NUL characters and unencodable surrogates and every length and
integer is bounded to what the columns hold, so that bad input is a 422 here rather than a
database error (a 500) later.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from gatewayd.protocols.checks import gb11643_valid
from gatewayd.protocols.tokens import Method, TokenKind

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_FEN = 10**15  # ten trillion yuan: far beyond any balance, well inside BIGINT
MAX_ROW_ID = 2**31 - 1

EntityId = Annotated[str, Field(pattern=ID_PATTERN, description="1-64 of A-Z a-z 0-9 _ . -")]
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]
Fen = Annotated[int, Field(ge=0, le=MAX_FEN, description="integer minor units (fen)")]
Phone = Annotated[str, Field(pattern=r"^\+?[0-9]{3,20}$", description="digits, +86 allowed")]
Name = Annotated[str, Field(min_length=1, max_length=200)]


def _iso_date(value: Any) -> Any:
    """Dates are ``YYYY-MM-DD`` strings in JSON; nothing else (not epoch numbers)."""
    if isinstance(value, str):
        try:
            if not _DATE.fullmatch(value):
                raise ValueError(value)
            return dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("must be a date as YYYY-MM-DD") from exc
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
Gender = Literal["male", "female", "other"]
CardKind = Literal["barcode", "magstripe", "ic", "virtual"]
Provider = Literal["wechat", "alipay"]
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PHONE_PREFIX = re.compile(r"^(?:\+86|0086)")


def normalise_phone(value: str) -> str:
    """Digits only, without the +86 country prefix."""
    return _PHONE_PREFIX.sub("", value).lstrip("+")


def _check_text(value: Any) -> Any:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("must be valid Unicode text") from exc
    elif isinstance(value, list):
        for item in value:
            _check_text(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    return value


class Body(BaseModel):
    """Base of every request body: unknown fields are an error, text must be storable.

    Strict: ``0`` is not ``false`` and ``"5"`` is not ``5``, exactly as the schema says.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        return _check_text(value)


class Out(BaseModel):
    """Base of every response body."""


# --- errors -------------------------------------------------------------------------------


class ErrorDetail(Out):
    code: str = Field(description="stable, machine-readable: e.g. not_found, expired")
    message: str = Field(description="for people; never contains personal data")
    details: Any = None


class ErrorResponse(Out):
    """The one error shape, for every status including 404 routes and 405."""

    error: ErrorDetail


# --- members and cards --------------------------------------------------------------------


class MemberSummary(Out):
    """What a till shows: no full phone, no ID number."""

    id: int
    name: str
    level: str
    phone_masked: str | None
    points: int
    balance_fen: int


class CardSummary(Out):
    id: int
    number: str
    kind: str
    main: bool


class CardOut(CardSummary):
    member_id: int
    checked: bool = Field(description="the number carries a Luhn check digit")
    member_code: str = Field(description="fixed member code: 96 + 17 digits + Luhn digit")
    legacy_code: str | None
    ic_uid: str | None
    active: bool
    created_at: str
    last_used_at: str | None


class MemberCreate(Body):
    name: Name
    phone: Phone | None = None
    gender: Gender | None = None
    birthday: IsoDate | None = None
    level: Annotated[str, Field(min_length=1, max_length=32)] = "default"
    id_number: Annotated[str, Field(pattern=r"^[0-9]{17}[0-9Xx]$")] | None = Field(
        default=None, description="GB 11643 ID number; stored only as a keyed hash + last 4"
    )
    address: Annotated[str, Field(max_length=500)] | None = None
    email: Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    notes: Annotated[str, Field(max_length=2000)] | None = None
    password: Annotated[str, Field(min_length=6, max_length=128)] | None = Field(
        default=None, description="hashed with argon2; never returned"
    )
    points: Annotated[int, Field(ge=0, le=MAX_FEN)] = 0
    balance_fen: Fen = 0
    custom: dict[str, str | int | float | bool | None] | None = Field(
        default=None, description="custom fields by key (see /v1/custom-fields)"
    )

    @field_validator("id_number")
    @classmethod
    def _valid_id(cls, value: str | None) -> str | None:
        if value is not None and not gb11643_valid(value.upper()):
            raise ValueError("not a valid ID number (check character or birth date)")
        return value.upper() if value else value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalise_phone(value) if value else value


class MemberUpdate(MemberCreate):
    """PATCH: only the fields sent change; ``null`` clears an optional field.

    ``name``, ``level``, ``points`` and ``balance_fen`` may be left out but not cleared.
    """

    # Not nullable, yet absent by default: the schema says "string", never "null".
    name: Name = Field(default=None)  # type: ignore[assignment]
    level: Annotated[str, Field(min_length=1, max_length=32)] = Field(default=None)  # type: ignore[assignment]
    points: Annotated[int, Field(ge=0, le=MAX_FEN)] = Field(default=None)  # type: ignore[assignment]
    balance_fen: Fen = Field(default=None)  # type: ignore[assignment]


class MemberOut(Out):
    id: int
    name: str
    phone: str | None
    gender: str | None
    birthday: dt.date | None
    level: str
    has_id_number: bool
    id_number_last4: str | None
    address: str | None
    email: str | None
    notes: str | None
    has_password: bool
    points: int
    balance_fen: int
    active: bool
    created_at: str
    updated_at: str
    cards: list[CardOut]
    custom: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class CardCreate(Body):
    kind: CardKind
    main: bool = Field(default=False, description="make this the main card (the first is)")
    number: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{4,40}$")] | None = Field(
        default=None,
        description="import an existing number; omitted: a new 16-digit number with a Luhn digit",
    )
    legacy_code: Annotated[str, Field(pattern=r"^[A-Za-z]{36}$")] | None = Field(
        default=None, description="the card's old 36-letter WeChat member code"
    )
    ic_uid: Annotated[str, Field(pattern=r"^(?:[0-9A-Fa-f]{2}){4,10}$")] | None = None


class CardList(Out):
    items: list[CardOut]


class PasswordCheck(Body):
    password: Annotated[str, Field(min_length=1, max_length=128)]


class PasswordResult(Out):
    valid: bool


class PaymentBindingCreate(Body):
    provider: Provider
    account_id: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="WeChat openid or Alipay user_id"
    )
    card_id: RowId | None = Field(default=None, description="default: the member's main card")


class PaymentBindingOut(Out):
    id: int
    provider: str
    account_id: str
    member_id: int
    card_id: int
    created_at: str


class PaymentBindingList(Out):
    items: list[PaymentBindingOut]


# --- codes ----------------------------------------------------------------------------------


class ConsumptionCodeOut(Out):
    code: str = Field(description="97 + 19 random digits + Luhn digit; shown once")
    member_id: int
    expires_at: str
    valid_seconds: int


class RedeemRequest(Body):
    code: Annotated[str, Field(pattern=r"^[0-9]{22}$", description="a consumption code")]
    store: EntityId
    terminal: EntityId
    amount_fen: Fen | None = Field(
        default=None, description="debit this much stored value in the same transaction"
    )


class RedeemResponse(Out):
    member: MemberSummary
    code_last4: str
    redeemed_at: str
    debited_fen: int
    balance_fen: int


# --- identify ---------------------------------------------------------------------------------


class IdentifyRequest(Body):
    token: Annotated[str, Field(min_length=1, max_length=600)] = Field(
        description="what the device read: a code, a card number, track data, a phone…"
    )
    kind: TokenKind | None = Field(
        default=None, description="skip classification and treat the token as this kind"
    )
    method: Method = Field(default=Method.BARCODE, description="how the token was read")
    store: EntityId
    terminal: EntityId
    event_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = Field(
        default=None, description="the gateway's event id; a replay returns the first answer"
    )
    id_number: Annotated[str, Field(pattern=r"^[0-9]{17}[0-9Xx]$")] | None = Field(
        default=None,
        description="an ID card read with the member card: the answer says if they match",
    )

    @field_validator("token", mode="before")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        # Replaces Body's check of every field (the tills' hot path: each check is a call
        # back into Python): the other fields are patterns and enums, which no NUL and no
        # lone surrogate can pass.
        return _check_text(value)


class IdentifyResponse(Out):
    member: MemberSummary
    card: CardSummary | None
    method: str = Field(description="the token kind that identified the member")
    via: str = Field(description="how the token was read (barcode, face, palm, ic_card…)")
    id_match: bool | None = Field(
        description="with id_number: whether it is this member's ID number; else null"
    )
    identification_id: int


# --- stores, terminals, gateways, keys, settings -----------------------------------------


class StoreCreate(Body):
    id: EntityId
    name: Name
    address: Annotated[str, Field(max_length=500)] | None = None


class StoreOut(Out):
    id: str
    name: str
    address: str | None
    created_at: str


class StoreList(Out):
    items: list[StoreOut]


class TerminalCreate(Body):
    id: EntityId
    name: Name
    kind: Literal["pos", "kiosk", "other"] = "pos"


class TerminalOut(Out):
    store: str
    id: str
    name: str
    kind: str
    created_at: str


class TerminalList(Out):
    items: list[TerminalOut]


class GatewayCreate(Body):
    id: EntityId
    store: EntityId
    name: Name


class DeviceStatus(Body):
    id: Annotated[str, Field(min_length=1, max_length=128)]
    state: Literal["starting", "online", "offline", "failed", "stopped"]
    detail: Annotated[str, Field(max_length=500)] | None = None


class Heartbeat(Body):
    devices: Annotated[list[DeviceStatus], Field(max_length=256)] = []
    counters: Annotated[
        dict[Annotated[str, Field(max_length=64)], Annotated[int, Field(ge=0, le=2**63 - 1)]],
        Field(max_length=256),
    ] = {}
    version: Annotated[str, Field(max_length=64)] | None = None


class GatewayOut(Out):
    id: str
    store: str
    name: str
    created_at: str
    last_seen_at: str | None
    state: Literal["never_seen", "online", "stale"]
    stale: bool = Field(description="no heartbeat for longer than the stale limit (90 s)")
    devices: list[dict[str, Any]]
    counters: dict[str, int]
    version: str | None


class GatewayList(Out):
    items: list[GatewayOut]


class GatewayCreated(Out):
    gateway: GatewayOut
    api_key: str = Field(description="shown once; central keeps only its SHA-256")


class AdminKeyCreate(Body):
    name: Name


class AdminKeyCreated(Out):
    id: int
    name: str
    api_key: str = Field(description="shown once; central keeps only its SHA-256")
    created_at: str


class ChainSettings(Out):
    allow_legacy_card_numbers: bool = Field(
        description="accept imported card numbers that carry no check digit"
    )


class ChainSettingsUpdate(Body):
    allow_legacy_card_numbers: bool | None = None


class Health(Out):
    status: Literal["ok"]
    worker: int
