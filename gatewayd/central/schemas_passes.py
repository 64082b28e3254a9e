"""Request and response bodies of pass products, pass sales and time sessions.

Kept apart from ``passes.py`` so the JSON contract reads in one place and the service module
holds only behaviour; every name stays importable from ``passes`` as before.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .schemas import Body, EntityId, Fen, Name, Out, RowId

RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
Secret = Annotated[str, Field(min_length=1, max_length=128)]


class PassProductIn(Body):
    name: Name
    kind: Literal["count", "time"]
    quantity: Annotated[int, Field(ge=0, le=1_000_000, description="uses, or minutes")]
    price_fen: Fen
    valid_days: Annotated[int, Field(ge=1, le=36_500)] | None = None
    step_minutes: Annotated[int, Field(ge=1, le=1440)] = 1
    step_fen: Fen = 0

    @model_validator(mode="after")
    def _count_cards_have_uses(self) -> PassProductIn:
        if self.kind == "count" and self.quantity < 1:
            raise ValueError("a count card needs at least one use")
        return self


class PassProductOut(Out):
    id: int
    name: str
    kind: str
    quantity: int
    price_fen: int
    valid_days: int | None
    step_minutes: int
    step_fen: int
    active: bool
    created_at: str


class PassProductList(Out):
    items: list[PassProductOut]


class StoredValueAuth(Body):
    """Only when stored value pays: the member's password or a consumption code."""

    password: Secret | None = None
    consumption_code: Annotated[str, Field(min_length=1, max_length=40)] | None = None


class PassSale(StoredValueAuth):
    request_id: RequestId
    store: EntityId
    terminal: EntityId
    member: RowId
    product: RowId
    method: Literal["cash", "wechat", "alipay", "stored_value"]


class PassOut(Out):
    id: int
    member_id: int
    product_id: int
    kind: str
    remaining: int
    expires_at: str | None
    expired: bool
    store: str
    created_at: str


class PassList(Out):
    items: list[PassOut]


class SessionStart(Body):
    request_id: RequestId
    store: EntityId
    terminal: EntityId
    member: RowId
    product: RowId = Field(description="the time-card product whose step and rate apply")
    pass_id: RowId | None = Field(default=None, description="the time card to draw minutes from")


class SessionStop(StoredValueAuth):
    request_id: RequestId
    store: EntityId
    terminal: EntityId


class SessionOut(Out):
    id: int
    member_id: int
    product_id: int
    pass_id: int | None
    store: str
    terminal: str
    started_at: str
    stopped_at: str | None
    billed_minutes: int | None
    pass_minutes: int | None
    charged_fen: int | None
    balance_fen: int | None = None
