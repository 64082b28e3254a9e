"""Refunds: give back a share of a committed order, in proportion, exactly once per request.

Separate from ``orders.py`` because a refund is its own transaction with its own arithmetic:
each ledger component of the order (stored value, points redeemed, count uses, points earned)
is reversed by ``component × refunded_so_far / total`` minus what earlier refunds already
reversed, so rounding never drifts and a full refund reverses everything exactly. Cash and
external payments are listed for the till to pay back.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import ledger
from .clock import Clock, iso, to_millis
from .db import Database
from .errors import Conflict, NotFound
from .member_events import MemberEvent, MemberEvents
from .models_programme import order_payments, orders, refunds
from .schemas_orders import EXTERNAL, RefundCreate, RefundOut


def share(component: int, part: int, whole: int) -> int:
    """``component × part / whole`` rounded half up, in integers (no floats near money)."""
    return (2 * component * part + whole) // (2 * whole)


class OrderRefunds:
    """Refunds committed orders through the ledger (``OrderService.refund`` delegates here)."""

    def __init__(self, db: Database, clock: Clock, events: MemberEvents) -> None:
        self._db = db
        self._clock = clock
        self._events = events

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
