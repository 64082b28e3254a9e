"""The pricing contract: what POS sends to ``POST /v1/orders/quote`` and what it gets back.

Kept apart from the engine (``pricing.py``) so the JSON shapes POS codes to read in one place;
the order commit (``schemas_orders.py``) reuses ``QuoteLine``. Every name stays importable
from ``pricing`` as before.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .schemas import MAX_FEN, MAX_ROW_ID, EntityId

MAX_LINES: Final = 500
ONE: Final = Decimal(1)
FactorKind = Literal[
    "level", "product", "category", "birthday", "store", "time_slot", "order_amount"
]
StrictFen = Annotated[int, Field(strict=True, ge=0, le=MAX_FEN, description="integer fen")]
Quantity = Annotated[
    Decimal, Field(gt=0, le=1_000_000, decimal_places=3, description="e.g. 1.5 (kg)")
]
EpochMillis = Annotated[int, Field(strict=True, ge=0, le=253_402_300_799_000)]


class QuoteLine(BaseModel):
    """One line of an order: a catalog product and a quantity, optionally another price."""

    model_config = ConfigDict(extra="forbid")

    product: EntityId | None = None
    quantity: Quantity = ONE
    unit_price_fen: StrictFen | None = Field(
        default=None, description="overrides the catalog price of one unit"
    )


class QuoteRequest(BaseModel):
    """Price an order: product lines, or a quick spend by amount only (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    store: EntityId
    terminal: EntityId | None = None
    member: Annotated[int, Field(strict=True, ge=1, le=MAX_ROW_ID)] | None = None
    lines: Annotated[list[QuoteLine], Field(max_length=MAX_LINES)] = []
    amount_fen: StrictFen | None = Field(default=None, description="quick spend: amount only")
    at_ms: EpochMillis | None = Field(default=None, description="price at this instant")

    @model_validator(mode="after")
    def _one_kind_of_spend(self) -> QuoteRequest:
        if (self.amount_fen is None) == (not self.lines):
            raise ValueError("send either lines (product spend) or amount_fen (quick spend)")
        if any(line.product is None for line in self.lines):
            raise ValueError("every line needs a product (quick spend uses amount_fen)")
        return self


class AppliedFactor(BaseModel):
    """One rule that applied, and why, so a cashier can explain the price."""

    kind: FactorKind
    rule_id: int | None = Field(description="None for a level's own factors")
    discount: Decimal = Field(description="price multiplier: 0.9 = 10 % off, 1 = none")
    points: Decimal = Field(description="points multiplier: 2 = double points")
    reason: str


class LineQuote(BaseModel):
    product: str | None
    name: str | None
    quantity: Decimal
    list_fen: int = Field(description="unit price × quantity, before discounts")
    price_fen: int = Field(description="after discounts: what is charged")
    points: int = Field(description="points this line earns (0 for walk-ins)")
    discount_factor: Decimal
    points_factor: Decimal
    factors: list[AppliedFactor]


class Quote(BaseModel):
    store: str
    member: int | None
    level: str | None
    at_ms: int = Field(description="the instant priced (epoch ms)")
    lines: list[LineQuote]
    list_fen: int
    total_fen: int
    points: int
    order_factors: list[AppliedFactor]
