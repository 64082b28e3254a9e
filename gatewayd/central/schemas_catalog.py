"""Bodies of the catalog and pricing admin endpoints (``routes_catalog.py``).

Factors are decimals, sent as JSON numbers or strings (``0.95`` or ``"0.95"``) and answered
as strings; a number is read through its shortest decimal form, so ``0.95`` is exactly 0.95.
A rule body is one shape for every kind; which fields a kind needs and allows is the table
``KIND_FIELDS`` below, checked field by field so the 422 says exactly what is wrong.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from .pricing import ONE
from .schemas import Body, EntityId, Fen, Name, Out

DiscountFactor = Annotated[
    Decimal,
    Field(
        strict=False, ge=0, le=10, decimal_places=4, description="price multiplier: 0.9 = 10 % off"
    ),
]
PointsFactor = Annotated[
    Decimal,
    Field(strict=False, ge=0, le=100, decimal_places=4, description="points multiplier: 2 = 200 %"),
]
Percent = Annotated[Decimal, Field(strict=False, ge=0, le=100, decimal_places=2)]
PointsPercent = Annotated[Decimal, Field(strict=False, ge=0, le=10_000, decimal_places=2)]
ClockTime = Annotated[
    str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$", description="HH:MM local")
]
Kind = Literal["level", "product", "category", "birthday", "store", "time_slot", "order_amount"]
Unit = Annotated[str, Field(pattern=r"^[a-z]{1,16}$", description="piece, kg, hour…")]
LEVEL_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"  # members.level holds 32 characters
LevelId = Annotated[str, Field(pattern=LEVEL_PATTERN, description="an id in members.level")]

_COMMON: Final = frozenset(
    {"kind", "name", "store", "level", "members_only", "active", "discount", "points"}
)
KIND_FIELDS: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    # kind: (required fields, allowed fields beyond the common ones)
    "level": (frozenset({"level"}), frozenset()),
    "product": (frozenset({"product"}), frozenset({"product"})),
    "category": (frozenset({"category"}), frozenset({"category"})),
    "birthday": (frozenset({"birthday_window"}), frozenset({"birthday_window"})),
    "store": (frozenset({"store"}), frozenset()),
    "time_slot": (
        frozenset({"slot"}),
        frozenset({"slot", "days", "date", "from_time", "until_time"}),
    ),
    "order_amount": (
        frozenset({"min_fen"}),
        frozenset({"min_fen", "max_fen", "extra_discount_percent", "extra_points_percent"}),
    ),
}
_MEMBER_KINDS: Final = frozenset({"level", "birthday", "order_amount"})
_MONTH_DAY = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


def minutes_of(value: str | None) -> int | None:
    """``"HH:MM"`` as minutes after midnight (``"24:00"`` is 1440)."""
    if value is None:
        return None
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def time_of(minutes: int | None) -> str | None:
    return None if minutes is None else f"{minutes // 60:02d}:{minutes % 60:02d}"


class CategoryIn(Body):
    name: Name


class CategoryOut(Out):
    id: str
    name: str
    updated_at: str


class CategoryList(Out):
    items: list[CategoryOut]


class ProductIn(Body):
    name: Name
    category: EntityId | None = None
    price_fen: Fen = Field(description="list price of one unit")
    unit: Unit = "piece"
    active: bool = True
    custom: dict[str, str | int | float | bool | None] | None = Field(
        default=None,
        description=(
            "custom item fields by key (see /v1/custom-fields); a new product takes the "
            "defaults of those left out, a replaced one changes only those sent (null clears)"
        ),
    )


class ProductOut(Out):
    id: str
    name: str
    category: str | None
    price_fen: int
    unit: str
    active: bool
    updated_at: str
    custom: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class ProductList(Out):
    items: list[ProductOut]


class LevelIn(Body):
    name: Name = Field(description="shown to people, e.g. 金卡 / Gold")
    discount: DiscountFactor = ONE
    points: PointsFactor = ONE


class LevelOut(Out):
    level: str = Field(description="the id in members.level")
    name: str
    discount: Decimal
    points: Decimal
    updated_at: str


class LevelList(Out):
    items: list[LevelOut]


class StorePricingIn(Body):
    timezone: Annotated[str, Field(min_length=1, max_length=64, description="IANA zone")]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("not an IANA time zone, e.g. Asia/Shanghai") from exc
        return value


class StorePricingOut(Out):
    store: str
    timezone: str
    updated_at: str | None = Field(description="None while the defaults apply")


class RuleIn(Body):
    """A pricing rule. Which fields each ``kind`` needs is in docs/programme-pricing.md."""

    kind: Kind
    name: Name
    store: EntityId | None = Field(default=None, description="None: every store")
    level: LevelId | None = Field(
        default=None, description="level rules: the level; others: only members of this level"
    )
    members_only: bool = Field(default=True, description="False: walk-ins get it too")
    active: bool = True
    discount: DiscountFactor = ONE
    points: PointsFactor = ONE
    product: EntityId | None = None
    category: EntityId | None = None
    birthday_window: Literal["day", "week", "month"] | None = None
    slot: Literal["weekly", "monthly", "yearly", "date"] | None = None
    days: Annotated[list[Annotated[int, Field(ge=1, le=31)]], Field(max_length=31)] | None = Field(
        default=None, description="weekly: ISO weekdays 1 (Mon)-7; monthly: 1-31"
    )
    date: Annotated[str, Field(max_length=10)] | None = Field(
        default=None, description="yearly: MM-DD; date: YYYY-MM-DD"
    )
    from_time: ClockTime | None = None
    until_time: ClockTime | None = None
    min_fen: Fen | None = Field(default=None, description="list total from (inclusive)")
    max_fen: Fen | None = Field(default=None, description="list total to (inclusive)")
    extra_discount_percent: Percent = Decimal(0)
    extra_points_percent: PointsPercent = Decimal(0)

    @model_validator(mode="after")
    def _fits_kind(self) -> RuleIn:
        required, allowed = KIND_FIELDS[self.kind]
        given = {name for name in self.model_fields_set if getattr(self, name) is not None}
        if self.kind == "order_amount":
            allowed_here = (_COMMON - {"discount", "points"}) | allowed
        else:
            allowed_here = _COMMON | allowed
        extra = sorted(given - allowed_here)
        if extra:
            raise ValueError(f"not used by a {self.kind} rule: {', '.join(extra)}")
        missing = sorted(required - given)
        if missing:
            raise ValueError(f"a {self.kind} rule needs {', '.join(missing)}")
        if self.kind in _MEMBER_KINDS and not self.members_only:
            raise ValueError(f"a {self.kind} rule is for members only")
        if self.kind == "time_slot":
            self._check_slot()
        if self.min_fen is not None and self.max_fen is not None and self.max_fen < self.min_fen:
            raise ValueError("max_fen is below min_fen")
        return self

    def _check_slot(self) -> None:
        if self.slot in ("weekly", "monthly"):
            if not self.days or self.date is not None:
                raise ValueError(f"a {self.slot} slot needs days and no date")
            if self.slot == "weekly" and max(self.days) > 7:
                raise ValueError("weekly days are ISO weekdays 1 (Monday) to 7 (Sunday)")
        else:
            if self.date is None or self.days is not None:
                raise ValueError(f"a {self.slot} slot needs a date and no days")
            if self.slot == "yearly" and not _MONTH_DAY.fullmatch(self.date):
                raise ValueError("a yearly slot's date is MM-DD")
            if self.slot == "date":
                try:
                    if len(self.date) != 10:
                        raise ValueError(self.date)
                    dt.date.fromisoformat(self.date)
                except ValueError as exc:
                    raise ValueError("a date slot's date is YYYY-MM-DD") from exc
        if (self.from_time is None) != (self.until_time is None):
            raise ValueError("from_time and until_time go together")
        start, end = minutes_of(self.from_time), minutes_of(self.until_time)
        if start is not None and end is not None and start >= end:
            raise ValueError("from_time must be before until_time (same day)")


class RuleOut(Out):
    id: int
    kind: str
    name: str
    store: str | None
    level: str | None
    members_only: bool
    active: bool
    discount: Decimal = Field(description="order_amount: 1 − extra discount % / 100")
    points: Decimal = Field(description="order_amount: 1 + extra points % / 100")
    product: str | None
    category: str | None
    birthday_window: str | None
    slot: str | None
    days: list[int] | None
    date: str | None
    from_time: str | None
    until_time: str | None
    min_fen: int | None
    max_fen: int | None
    extra_discount_percent: Decimal | None
    extra_points_percent: Decimal | None
    created_at: str
    updated_at: str


class RuleList(Out):
    items: list[RuleOut]
