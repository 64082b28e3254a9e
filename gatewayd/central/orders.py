"""Orders: commit a priced order with its payments, and refund it in proportion.

``POST /v1/orders`` takes the lines (or a quick-spend amount) and the payments. Pricing
(``pricing.py``) prices it first; then one write transaction claims the request_id,
stores the order, posts every ledger entry (stored value, points redeemed and earned, count
uses), uses up a consumption code, applies level upgrades and emits member events. Any
failure rolls back all of it. Payments must add up to the quoted total exactly.

Refunds (``POST /v1/orders/{id}/refunds``) give back a share of the order: each ledger
component (stored value, points redeemed, count uses, points earned) is reversed by
``component × refunded_so_far / total`` minus what earlier refunds already reversed, so
rounding never drifts and a full refund reverses everything exactly. Cash and external
payments are listed for the till to pay back.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, Literal

import sqlalchemy as sa
from pydantic import Field, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from . import ledger
from .clock import Clock, iso, to_millis
from .db import Database
from .errors import Conflict, Invalid, NotFound
from .levels import LevelService, programme_settings_in
from .member_events import MemberEvent, MemberEvents
from .models_members_ext import order_committed as member_stats_order
from .models_programme import order_payments, orders, refunds
from .passes import check_pass
from .pricing import Quote, QuoteLine, QuoteRequest
from .schemas import MAX_FEN, Body, EntityId, Fen, Out, RowId

RequestId = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", description="unique per store")
]
Method = Literal["cash", "wechat", "alipay", "stored_value", "points", "count_card"]
EXTERNAL: Final = ("cash", "wechat", "alipay")
MAX_PAYMENTS: Final = 16
Quoter = Callable[[QuoteRequest], Awaitable[Quote]]


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


def share(component: int, part: int, whole: int) -> int:
    """``component × part / whole`` rounded half up, in integers (no floats near money)."""
    return (2 * component * part + whole) // (2 * whole)


class OrderService:
    """Commits orders and refunds through the ledger."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        events: MemberEvents,
        levels: LevelService,
        spend: ledger.SpendAuthorizer,
    ) -> None:
        self._db = db
        self._clock = clock
        self._events = events
        self._levels = levels
        self._spend = spend

    async def commit(self, data: OrderCreate, quoter: Quoter) -> ledger.Replay:
        """Price the order with ``quoter`` and store it with its postings, once per
        (store, request_id): a retry is answered from the stored answer without pricing."""
        digest_body = data.digest_body()
        stored = await ledger.stored_answer(
            self._db,
            store=data.store,
            request_id=data.request_id,
            operation="order",
            digest=ledger.body_hash(digest_body),
        )
        if stored is not None:
            return stored
        quote = await quoter(
            QuoteRequest(
                store=data.store,
                terminal=data.terminal,
                member=data.member,
                lines=data.lines,
                amount_fen=data.amount_fen,
            )
        )
        now = to_millis(self._clock.now())
        sv = next((p for p in data.payments if p.method == "stored_value"), None)
        auth = await self._spend.check_password(data.member, sv) if sv else ledger.SpendAuth()

        async def work(conn: AsyncConnection) -> tuple[int, Any]:
            settings = await programme_settings_in(conn)
            payments = self._amounts(data, settings["fen_per_point"])
            paid = sum(amount for _, amount in payments)
            if paid != quote.total_fen:
                raise Invalid(
                    f"payments add up to {paid} fen, the order totals {quote.total_fen}",
                    code="payments_mismatch",
                )
            member = data.member
            earned = self._earned(quote, payments, settings) if member is not None else 0
            order_id = await conn.scalar(
                orders.insert()
                .values(
                    store_id=data.store,
                    terminal_id=data.terminal,
                    request_id=data.request_id,
                    member_id=data.member,
                    kind="quick" if data.amount_fen is not None else "product",
                    list_fen=quote.list_fen,
                    total_fen=quote.total_fen,
                    points_earned=earned,
                    refunded_fen=0,
                    quote=quote.model_dump_json(),
                    created_at=now,
                )
                .returning(orders.c.id)
            )
            assert order_id is not None
            out = await self._post_payments(conn, data, payments, order_id, auth, now)
            upgrades: list[dict[str, Any]] = []
            if member is not None and earned:
                for account in ("points", "earned"):
                    await ledger.post(
                        conn,
                        member_id=member,
                        store=data.store,
                        account=account,
                        amount=earned,
                        kind="earn",
                        now=now,
                        order_id=order_id,
                    )
                await self._emit(conn, "points_earned", member, order_id, data.store, earned)
            if member is not None:
                # Member management (issue 8): visits, spending and last visit for search.
                await member_stats_order(conn, member, data.store, quote.total_fen, now)
                key = f"order:{order_id}"
                upgrades = await self._levels.apply(
                    conn, member, store=data.store, now=now, key=key
                )
            balances = await ledger.balances(conn, member) if member is not None else None
            body = {
                "id": order_id,
                "request_id": data.request_id,
                "store": data.store,
                "terminal": data.terminal,
                "member": member,
                "kind": "quick" if data.amount_fen is not None else "product",
                "list_fen": quote.list_fen,
                "total_fen": quote.total_fen,
                "points_earned": earned,
                "payments": out,
                "lines": [line.model_dump(mode="json") for line in quote.lines],
                "balances": balances,
                "upgrades": upgrades,
                "created_at": iso(now),
            }
            return 201, OrderOut.model_validate(body).model_dump(mode="json")

        return await ledger.run_idempotent(
            self._db,
            store=data.store,
            request_id=data.request_id,
            operation="order",
            body=digest_body,
            now=now,
            work=work,
        )

    @staticmethod
    def _amounts(data: OrderCreate, fen_per_point: int) -> list[tuple[OrderPayment, int]]:
        out = []
        for payment in data.payments:
            if payment.method == "points":
                assert payment.points is not None
                amount = payment.points * fen_per_point
                if payment.amount_fen is not None and payment.amount_fen != amount:
                    raise Invalid(
                        f"{payment.points} points are worth {amount} fen, not {payment.amount_fen}",
                        code="points_value_mismatch",
                    )
            else:
                assert payment.amount_fen is not None
                amount = payment.amount_fen
            out.append((payment, amount))
        return out

    @staticmethod
    def _earned(
        quote: Quote, payments: list[tuple[OrderPayment, int]], settings: dict[str, Any]
    ) -> int:
        """The quote's points, less the share paid with points (unless settings say so)."""
        if not quote.total_fen or settings["earn_on_points_payment"]:
            return quote.points
        by_points = sum(amount for p, amount in payments if p.method == "points")
        return (quote.points * (quote.total_fen - by_points)) // quote.total_fen

    async def _post_payments(
        self,
        conn: AsyncConnection,
        data: OrderCreate,
        payments: list[tuple[OrderPayment, int]],
        order_id: int,
        auth: ledger.SpendAuth,
        now: int,
    ) -> list[dict[str, Any]]:
        out = []
        for payment, amount in payments:
            member = data.member
            common: dict[str, Any] = {"store": data.store, "now": now, "order_id": order_id}
            if payment.method == "stored_value" and member is not None:
                await self._spend.authorize(conn, member, payment, auth, data, amount, now)
                if amount:
                    await ledger.post(
                        conn,
                        member_id=member,
                        account="stored_value",
                        amount=-amount,
                        kind="debit",
                        **common,
                    )
                    await self._emit(
                        conn, "stored_value_debited", member, order_id, data.store, amount
                    )
            elif payment.method == "points" and member is not None:
                await ledger.post(
                    conn,
                    member_id=member,
                    account="points",
                    amount=-(payment.points or 0),
                    kind="redeem",
                    **common,
                )
            elif payment.method == "count_card" and member is not None:
                assert payment.pass_id is not None and payment.uses is not None
                await check_pass(conn, member, payment.pass_id, "count", now)
                await ledger.post(
                    conn,
                    member_id=member,
                    account="count_card",
                    amount=-payment.uses,
                    kind="use",
                    pass_id=payment.pass_id,
                    **common,
                )
            row = {
                "method": payment.method,
                "amount_fen": amount,
                "points": payment.points or 0,
                "uses": payment.uses or 0,
                "pass_id": payment.pass_id,
            }
            await conn.execute(order_payments.insert().values(order_id=order_id, **row))
            out.append(row)
        return out

    async def _emit(
        self, conn: AsyncConnection, kind: str, member: int, order_id: int, store: str, amount: int
    ) -> None:
        field = "points" if kind.startswith("points") else "amount_fen"
        await self._events.emit(
            conn,
            MemberEvent(
                kind=kind,
                member_id=member,
                key=f"order:{order_id}:{kind}",
                store_id=store,
                data={field: amount, "order_id": order_id},
            ),
        )

    async def get(self, order_id: int) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (await conn.execute(sa.select(orders).where(orders.c.id == order_id))).first()
            if row is None:
                raise NotFound(f"no order {order_id}", code="order_not_found")
            pays = (
                await conn.execute(
                    sa.select(order_payments)
                    .where(order_payments.c.order_id == order_id)
                    .order_by(order_payments.c.id)
                )
            ).all()
        return {
            "id": row.id,
            "store": row.store_id,
            "terminal": row.terminal_id,
            "request_id": row.request_id,
            "member": row.member_id,
            "kind": row.kind,
            "list_fen": row.list_fen,
            "total_fen": row.total_fen,
            "points_earned": row.points_earned,
            "refunded_fen": row.refunded_fen,
            "payments": [
                {
                    "method": p.method,
                    "amount_fen": p.amount_fen,
                    "points": p.points,
                    "uses": p.uses,
                    "pass_id": p.pass_id,
                }
                for p in pays
            ],
            "lines": json.loads(row.quote)["lines"],
            "created_at": iso(row.created_at),
        }

    # --- refunds ---------------------------------------------------------------------------

    async def refund(self, order_id: int, data: RefundCreate) -> ledger.Replay:
        now = to_millis(self._clock.now())

        async def work(conn: AsyncConnection) -> tuple[int, Any]:
            # Lock the order (PostgreSQL) so concurrent refunds of it run one after another.
            locked = sa.select(orders).where(orders.c.id == order_id)
            if conn.dialect.name == "postgresql":
                locked = locked.with_for_update()
            order = (await conn.execute(locked)).first()
            if order is None:
                raise NotFound(f"no order {order_id}", code="order_not_found")
            before, after = order.refunded_fen, order.refunded_fen + data.amount_fen
            if after > order.total_fen:
                raise Conflict(
                    f"only {order.total_fen - before} fen of order {order_id} are refundable",
                    code="refund_exceeds_order",
                )
            refund_id = await conn.scalar(
                refunds.insert()
                .values(
                    order_id=order_id,
                    store_id=data.store,
                    terminal_id=data.terminal,
                    amount_fen=data.amount_fen,
                    created_at=now,
                )
                .returning(refunds.c.id)
            )
            assert refund_id is not None
            await conn.execute(
                orders.update().where(orders.c.id == order_id).values(refunded_fen=after)
            )
            result = await self._reverse(conn, order, refund_id, before, after, data.store, now)
            member = order.member_id
            if member is not None:
                result["balances"] = await ledger.balances(conn, member)
                await self._events.emit(
                    conn,
                    MemberEvent(
                        kind="refunded",
                        member_id=member,
                        key=f"refund:{refund_id}",
                        store_id=data.store,
                        data={"order_id": order_id, "amount_fen": data.amount_fen},
                    ),
                )
            else:
                result["balances"] = None
            body = {
                "id": refund_id,
                "order_id": order_id,
                "amount_fen": data.amount_fen,
                "refunded_total_fen": after,
                "created_at": iso(now),
                **result,
            }
            return 201, RefundOut.model_validate(body).model_dump(mode="json")

        return await ledger.run_idempotent(
            self._db,
            store=data.store,
            request_id=data.request_id,
            operation=f"refund:{order_id}",
            body=data.model_dump(mode="json"),
            now=now,
            work=work,
        )

    async def _reverse(
        self,
        conn: AsyncConnection,
        order: Any,
        refund_id: int,
        before: int,
        after: int,
        store: str,
        now: int,
    ) -> dict[str, Any]:
        total, member = order.total_fen, order.member_id

        def delta(component: int) -> int:
            return share(component, after, total) - share(component, before, total)

        pays = (
            await conn.execute(
                sa.select(order_payments)
                .where(order_payments.c.order_id == order.id)
                .order_by(order_payments.c.id)
            )
        ).all()
        common: dict[str, Any] = {
            "store": store,
            "now": now,
            "order_id": order.id,
            "refund_id": refund_id,
        }
        result: dict[str, Any] = {
            "stored_value_fen": 0,
            "points_returned": 0,
            "points_revoked": 0,
            "points_shortfall": 0,
            "uses_returned": [],
            "pay_back": [],
        }
        for pay in pays:
            if pay.method in EXTERNAL:
                result["pay_back"].append(
                    {"method": pay.method, "amount_fen": delta(pay.amount_fen)}
                )
                continue
            if member is None:
                continue
            if pay.method == "stored_value" and delta(pay.amount_fen):
                amount = delta(pay.amount_fen)
                await ledger.post(
                    conn,
                    member_id=member,
                    account="stored_value",
                    amount=amount,
                    kind="refund",
                    **common,
                )
                result["stored_value_fen"] += amount
            elif pay.method == "points" and delta(pay.points):
                amount = delta(pay.points)
                await ledger.post(
                    conn,
                    member_id=member,
                    account="points",
                    amount=amount,
                    kind="refund",
                    **common,
                )
                result["points_returned"] += amount
            elif pay.method == "count_card" and delta(pay.uses):
                amount = delta(pay.uses)
                await ledger.post(
                    conn,
                    member_id=member,
                    account="count_card",
                    amount=amount,
                    kind="refund",
                    pass_id=pay.pass_id,
                    **common,
                )
                result["uses_returned"].append({"pass_id": pay.pass_id, "uses": amount})
        revoke = delta(order.points_earned)
        if member is not None and revoke:
            have = (await ledger.balances(conn, member))["points"]
            taken = min(have, revoke)
            if taken:
                await ledger.post(
                    conn,
                    member_id=member,
                    account="points",
                    amount=-taken,
                    kind="earn_reversal",
                    **common,
                )
            await ledger.post(
                conn,
                member_id=member,
                account="earned",
                amount=-revoke,
                kind="earn_reversal",
                **common,
            )
            result["points_revoked"] = taken
            result["points_shortfall"] = revoke - taken
        return result
