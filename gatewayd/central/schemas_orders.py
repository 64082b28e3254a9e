"""Request and response bodies of orders and refunds (the JSON contract POS software codes to).

Kept apart from the services so the contract reads in one place, and so the order service
(``orders.py``), the refund arithmetic (``refunds.py``) and the routes share these models
without importing each other.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import Field, model_validator

from .pricing import QuoteLine
from .schemas import MAX_FEN, Body, EntityId, Fen, Out, RowId

RequestId = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", description="unique per store")
]
Method = Literal["cash", "wechat", "alipay", "stored_value", "points", "count_card"]
EXTERNAL: Final = ("cash", "wechat", "alipay")
MAX_PAYMENTS: Final = 16


class OrderPayment(Body):
    """One way the order is paid. ``amount_fen`` is the part of the total it covers."""

    method: Method
    amount_fen: Fen | None = Field(
        default=None, description="required except for points (computed from points)"
    )
    points: Annotated[int, Field(ge=1, le=MAX_FEN)] | None = None
    uses: Annotated[int, Field(ge=1, le=10_000)] | None = None
    pass_id: RowId | None = None
    password: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    consumption_code: Annotated[str, Field(min_length=1, max_length=40)] | None = None

    @model_validator(mode="after")
    def _fields_per_method(self) -> OrderPayment:
        if self.method == "points":
            if self.points is None:
                raise ValueError("a points payment needs points")
        elif self.amount_fen is None:
            raise ValueError(f"a {self.method} payment needs amount_fen")
        if self.method == "count_card" and (self.pass_id is None or self.uses is None):
            raise ValueError("a count_card payment needs pass_id and uses")
        if self.method != "count_card" and (self.pass_id or self.uses):
            raise ValueError("pass_id and uses belong to count_card payments")
        if self.method != "points" and self.points is not None:
            raise ValueError("points belong to points payments")
        if self.method != "stored_value" and (self.password or self.consumption_code):
            raise ValueError("password and consumption_code belong to stored_value payments")
        return self


class OrderCreate(Body):
    """Commit an order: product ``lines`` or a quick-spend ``amount_fen`` (exactly one)."""

    request_id: RequestId
    store: EntityId
    terminal: EntityId
    member: RowId | None = None
    lines: Annotated[list[QuoteLine], Field(max_length=500)] = Field(default_factory=list)
    amount_fen: Fen | None = None
    payments: Annotated[list[OrderPayment], Field(min_length=1, max_length=MAX_PAYMENTS)]

    @model_validator(mode="after")
    def _one_kind(self) -> OrderCreate:
        if (self.amount_fen is None) == (not self.lines):
            raise ValueError("send either lines (product spend) or amount_fen (quick spend)")
        for method in ("stored_value", "points"):
            if sum(p.method == method for p in self.payments) > 1:
                raise ValueError(f"at most one {method} payment")
        member_only = {"stored_value", "points", "count_card"}
        if self.member is None and any(p.method in member_only for p in self.payments):
            raise ValueError("stored value, points and count cards need a member")
        return self

    def digest_body(self) -> dict[str, Any]:
        """The body as hashed for request_id reuse: secrets left out (never stored)."""
        return self.model_dump(
            mode="json", exclude={"payments": {"__all__": {"password", "consumption_code"}}}
        )


class PaymentOut(Out):
    method: str
    amount_fen: int
    points: int
    uses: int
    pass_id: int | None


class Balances(Out):
    points: int
    balance_fen: int
    earned_points: int


class OrderOut(Out):
    id: int
    request_id: str
    store: str
    terminal: str
    member: int | None
    kind: Literal["product", "quick"]
    list_fen: int
    total_fen: int
    points_earned: int
    payments: list[PaymentOut]
    lines: list[dict[str, Any]] = Field(description="the quote's lines as priced at commit")
    balances: Balances | None = Field(description="the member's balances after the order")
    upgrades: list[dict[str, Any]]
    created_at: str


class OrderRecord(Out):
    """A committed order as stored (``GET /v1/orders/{id}``)."""

    id: int
    store: str
    terminal: str
    request_id: str
    member: int | None
    kind: str
    list_fen: int
    total_fen: int
    points_earned: int
    refunded_fen: int
    payments: list[PaymentOut]
    lines: list[dict[str, Any]]
    created_at: str


class RefundCreate(Body):
    """Refund part or all of an order, by amount (of the order's total)."""

    request_id: RequestId
    store: EntityId
    terminal: EntityId
    amount_fen: Annotated[int, Field(ge=1, le=MAX_FEN)]


class RefundOut(Out):
    id: int
    order_id: int
    amount_fen: int
    refunded_total_fen: int = Field(description="all refunds of the order so far")
    stored_value_fen: int = Field(description="put back on the member's stored value")
    points_returned: int = Field(description="redeemed points given back")
    points_revoked: int = Field(description="earned points taken back")
    points_shortfall: int = Field(
        description="earned points that could not be taken back (already spent)"
    )
    uses_returned: list[dict[str, int]]
    pay_back: list[dict[str, Any]] = Field(description="cash/external amounts the till returns")
    balances: Balances | None
    created_at: str
