"""Orders: commit a priced order with its payments; refunds are in ``refunds.py``.

``POST /v1/orders`` takes the lines (or a quick-spend amount) and the payments. Pricing
(``pricing.py``) prices it first; then one write transaction claims the request_id,
stores the order, posts every ledger entry (stored value, points redeemed and earned, count
uses), uses up a consumption code, applies level upgrades and emits member events. Any
failure rolls back all of it. Payments must add up to the quoted total exactly.

Refunds (``POST /v1/orders/{id}/refunds``) give back a share of the order in proportion
(``refunds.py``); ``OrderService.refund`` is their entry point. The request and response
bodies live in ``schemas_orders.py`` and are importable from here as before.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import ledger
from .clock import Clock, iso, to_millis
from .db import Database
from .errors import Invalid, NotFound
from .levels import LevelService, programme_settings_in
from .member_events import MemberEvent, MemberEvents
from .models_members_ext import order_committed as member_stats_order
from .models_programme import order_payments, orders
from .passes import check_pass
from .pricing import Quote, QuoteRequest
from .refunds import OrderRefunds
from .refunds import share as share
from .schemas_orders import EXTERNAL as EXTERNAL
from .schemas_orders import MAX_PAYMENTS as MAX_PAYMENTS
from .schemas_orders import Balances as Balances
from .schemas_orders import Method as Method
from .schemas_orders import OrderCreate as OrderCreate
from .schemas_orders import OrderOut as OrderOut
from .schemas_orders import OrderPayment as OrderPayment
from .schemas_orders import OrderRecord as OrderRecord
from .schemas_orders import PaymentOut as PaymentOut
from .schemas_orders import RefundCreate as RefundCreate
from .schemas_orders import RefundOut as RefundOut
from .schemas_orders import RequestId as RequestId

Quoter = Callable[[QuoteRequest], Awaitable[Quote]]


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
        self._refunds = OrderRefunds(db, clock, events)

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
        """Refund part or all of order ``order_id`` (see ``refunds.py``)."""
        return await self._refunds.refund(order_id, data)
