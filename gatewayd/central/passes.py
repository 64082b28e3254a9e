"""Count cards (e.g. 10 swims) and time cards (billiards by the minute) on the member card.

A pass is bought from a product (``pass_products``): a count card holds uses, a time card
holds prepaid minutes; both may expire ``valid_days`` after purchase. The pass's
``remaining`` is a ledger cache like a member's points (accounts ``count_card`` and
``time_card``, one balance per pass). Count uses are spent as order payments
(``orders.py``); time is spent by sessions: started and stopped at a terminal, billed per
started ``step_minutes`` from the pass's minutes and, for what they do not cover, from
stored value at ``step_fen`` per step. At expiry the scheduler posts the remainder away.
The request and response bodies are in ``schemas_passes.py`` (importable from here too).
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import ledger
from .clock import Clock, iso, to_millis
from .db import Database
from .errors import Conflict, Expired, NotFound
from .logs import get_logger
from .member_events import MemberEvent, MemberEvents
from .models import members
from .models_programme import member_passes, pass_products, time_sessions
from .schemas_passes import PassList as PassList
from .schemas_passes import PassOut as PassOut
from .schemas_passes import PassProductIn as PassProductIn
from .schemas_passes import PassProductList as PassProductList
from .schemas_passes import PassProductOut as PassProductOut
from .schemas_passes import PassSale as PassSale
from .schemas_passes import RequestId as RequestId
from .schemas_passes import Secret as Secret
from .schemas_passes import SessionOut as SessionOut
from .schemas_passes import SessionStart as SessionStart
from .schemas_passes import SessionStop as SessionStop
from .schemas_passes import StoredValueAuth as StoredValueAuth

log = get_logger(__name__)
DAY_MS: Final = 86_400_000
MINUTE_MS: Final = 60_000


def _product(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "quantity": row.quantity,
        "price_fen": row.price_fen,
        "valid_days": row.valid_days,
        "step_minutes": row.step_minutes,
        "step_fen": row.step_fen,
        "active": row.active,
        "created_at": iso(row.created_at),
    }


def pass_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "member_id": row.member_id,
        "product_id": row.product_id,
        "kind": row.kind,
        "remaining": row.remaining,
        "expires_at": iso(row.expires_at),
        "expired": row.expired_at is not None,
        "store": row.store_id,
        "created_at": iso(row.created_at),
    }


def _session(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "member_id": row.member_id,
        "product_id": row.product_id,
        "pass_id": row.pass_id,
        "store": row.store_id,
        "terminal": row.terminal_id,
        "started_at": iso(row.started_at),
        "stopped_at": iso(row.stopped_at),
        "billed_minutes": row.billed_minutes,
        "pass_minutes": row.pass_minutes,
        "charged_fen": row.charged_fen,
    }


async def check_pass(
    conn: AsyncConnection, member_id: int, pass_id: int, kind: str, now: int
) -> Any:
    """The member's pass of this kind, unexpired (404 / 409 / 410 otherwise)."""
    row = (
        await conn.execute(
            sa.select(member_passes).where(
                member_passes.c.id == pass_id, member_passes.c.member_id == member_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"member {member_id} has no pass {pass_id}", code="pass_not_found")
    if row.kind != kind:
        raise Conflict(f"pass {pass_id} is a {row.kind} card", code="wrong_pass_kind")
    if row.expired_at is not None or (row.expires_at is not None and now >= row.expires_at):
        raise Expired(f"pass {pass_id} has expired", code="pass_expired")
    return row


def bill(
    elapsed_ms: int, step_minutes: int, pass_minutes: int, step_fen: int
) -> tuple[int, int, int]:
    """(billed minutes, minutes from the pass, fen from stored value) for one session.

    Every started step counts (at least one); the pass pays whole steps while it can, the
    remaining steps cost ``step_fen`` each.
    """
    step_ms = step_minutes * MINUTE_MS
    steps = max(1, -(-elapsed_ms // step_ms))
    from_pass = min(steps, pass_minutes // step_minutes)
    return steps * step_minutes, from_pass * step_minutes, (steps - from_pass) * step_fen


class PassService:
    """Pass products (admin), sales, member passes, time sessions and expiry."""

    def __init__(
        self, db: Database, clock: Clock, events: MemberEvents, spend: ledger.SpendAuthorizer
    ) -> None:
        self._db = db
        self._clock = clock
        self._events = events
        self._spend = spend

    async def create_product(self, data: PassProductIn) -> dict[str, Any]:
        now = to_millis(self._clock.now())
        async with self._db.write() as conn:
            product_id = await conn.scalar(
                pass_products.insert()
                .values(**data.model_dump(), active=True, created_at=now)
                .returning(pass_products.c.id)
            )
            row = (
                await conn.execute(sa.select(pass_products).where(pass_products.c.id == product_id))
            ).one()
        return _product(row)

    async def list_products(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = (await conn.execute(sa.select(pass_products).order_by(pass_products.c.id))).all()
        return [_product(r) for r in rows]

    async def deactivate_product(self, product_id: int) -> dict[str, Any]:
        async with self._db.write() as conn:
            await conn.execute(
                pass_products.update().where(pass_products.c.id == product_id).values(active=False)
            )
            row = (
                await conn.execute(sa.select(pass_products).where(pass_products.c.id == product_id))
            ).first()
        if row is None:
            raise NotFound(f"no pass product {product_id}", code="product_not_found")
        return _product(row)

    async def _product_row(self, conn: AsyncConnection, product_id: int, kind: str | None) -> Any:
        row = (
            await conn.execute(sa.select(pass_products).where(pass_products.c.id == product_id))
        ).first()
        if row is None or not row.active:
            raise NotFound(f"no active pass product {product_id}", code="product_not_found")
        if kind is not None and row.kind != kind:
            raise Conflict(f"product {product_id} is a {row.kind} card", code="wrong_pass_kind")
        return row

    async def sell(self, data: PassSale) -> ledger.Replay:
        """Create the member's pass and post its uses or minutes (and the stored-value price)."""
        now = to_millis(self._clock.now())
        auth = await self._spend.check_password(data.member, data)

        async def work(conn: AsyncConnection) -> tuple[int, Any]:
            product = await self._product_row(conn, data.product, None)
            if not product.quantity:
                raise Conflict("this product is a rate card, not for sale", code="not_for_sale")
            expires = now + product.valid_days * DAY_MS if product.valid_days else None
            pass_id = await conn.scalar(
                member_passes.insert()
                .values(
                    member_id=data.member,
                    product_id=product.id,
                    kind=product.kind,
                    remaining=0,
                    expires_at=expires,
                    store_id=data.store,
                    created_at=now,
                )
                .returning(member_passes.c.id)
            )
            assert pass_id is not None
            ref = f"pass:{pass_id}"
            if data.method == "stored_value" and product.price_fen:
                await self._spend.authorize(
                    conn, data.member, data, auth, data, product.price_fen, now
                )
                await ledger.post(
                    conn,
                    member_id=data.member,
                    store=data.store,
                    account="stored_value",
                    amount=-product.price_fen,
                    kind="debit",
                    now=now,
                    ref=ref,
                )
                await self._debited(conn, data.member, ref, data.store, product.price_fen)
            await ledger.post(
                conn,
                member_id=data.member,
                store=data.store,
                account="count_card" if product.kind == "count" else "time_card",
                amount=product.quantity,
                kind="purchase",
                now=now,
                pass_id=pass_id,
                ref=ref,
            )
            row = (
                await conn.execute(sa.select(member_passes).where(member_passes.c.id == pass_id))
            ).one()
            return 201, PassOut.model_validate(pass_out(row)).model_dump(mode="json")

        return await ledger.run_idempotent(
            self._db,
            store=data.store,
            request_id=data.request_id,
            operation="pass_sale",
            body=data.model_dump(mode="json", exclude={"password", "consumption_code"}),
            now=now,
            work=work,
        )

    async def _debited(
        self, conn: AsyncConnection, member: int, ref: str, store: str, amount: int
    ) -> None:
        await self._events.emit(
            conn,
            MemberEvent(
                kind="stored_value_debited",
                member_id=member,
                key=f"{ref}:stored_value_debited",
                store_id=store,
                data={"amount_fen": amount, "ref": ref},
            ),
        )

    async def member_passes(self, member_id: int) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            exists = await conn.scalar(sa.select(members.c.id).where(members.c.id == member_id))
            if exists is None:
                raise NotFound(f"no member {member_id}", code="member_not_found")
            rows = (
                await conn.execute(
                    sa.select(member_passes)
                    .where(member_passes.c.member_id == member_id)
                    .order_by(member_passes.c.id)
                )
            ).all()
        return [pass_out(r) for r in rows]

    # --- time sessions ---------------------------------------------------------------------

    async def start(self, data: SessionStart) -> ledger.Replay:
        now = to_millis(self._clock.now())

        async def work(conn: AsyncConnection) -> tuple[int, Any]:
            await self._product_row(conn, data.product, "time")
            active = await conn.scalar(
                sa.select(members.c.active).where(members.c.id == data.member)
            )
            if not active:
                raise NotFound(f"no active member {data.member}", code="member_not_found")
            if data.pass_id is not None:
                await check_pass(conn, data.member, data.pass_id, "time", now)
            session_id = await conn.scalar(
                time_sessions.insert()
                .values(
                    member_id=data.member,
                    product_id=data.product,
                    pass_id=data.pass_id,
                    store_id=data.store,
                    terminal_id=data.terminal,
                    started_at=now,
                )
                .returning(time_sessions.c.id)
            )
            row = (
                await conn.execute(sa.select(time_sessions).where(time_sessions.c.id == session_id))
            ).one()
            return 201, SessionOut.model_validate(_session(row)).model_dump(mode="json")

        return await ledger.run_idempotent(
            self._db,
            store=data.store,
            request_id=data.request_id,
            operation="session_start",
            body=data.model_dump(mode="json"),
            now=now,
            work=work,
        )

    async def stop(self, session_id: int, data: SessionStop) -> ledger.Replay:
        """Bill the session: pass minutes first, then stored value (needs password/code)."""
        now = to_millis(self._clock.now())
        async with self._db.read() as conn:
            member = await conn.scalar(
                sa.select(time_sessions.c.member_id).where(time_sessions.c.id == session_id)
            )
        if member is None:
            raise NotFound(f"no session {session_id}", code="session_not_found")
        auth = await self._spend.check_password(member, data)

        async def work(conn: AsyncConnection) -> tuple[int, Any]:
            session = (
                await conn.execute(
                    time_sessions.update()
                    .where(time_sessions.c.id == session_id, time_sessions.c.stopped_at.is_(None))
                    .values(stopped_at=now)
                    .returning(*time_sessions.c)
                )
            ).first()
            if session is None:
                raise Conflict(f"session {session_id} is already stopped", code="session_stopped")
            product = (
                await conn.execute(
                    sa.select(pass_products).where(pass_products.c.id == session.product_id)
                )
            ).one()
            available = 0
            if session.pass_id is not None:
                try:
                    card = await check_pass(conn, member, session.pass_id, "time", now)
                    available = card.remaining
                except Expired:
                    available = 0  # expired during the session: stored value pays
            minutes, from_pass, charged = bill(
                now - session.started_at, product.step_minutes, available, product.step_fen
            )
            ref = f"session:{session_id}"
            if from_pass:
                await ledger.post(
                    conn,
                    member_id=member,
                    store=data.store,
                    account="time_card",
                    amount=-from_pass,
                    kind="use",
                    now=now,
                    pass_id=session.pass_id,
                    ref=ref,
                )
            if charged:
                await self._spend.authorize(conn, member, data, auth, data, charged, now)
                await ledger.post(
                    conn,
                    member_id=member,
                    store=data.store,
                    account="stored_value",
                    amount=-charged,
                    kind="debit",
                    now=now,
                    ref=ref,
                )
                await self._debited(conn, member, ref, data.store, charged)
            await conn.execute(
                time_sessions.update()
                .where(time_sessions.c.id == session_id)
                .values(billed_minutes=minutes, pass_minutes=from_pass, charged_fen=charged)
            )
            row = (
                await conn.execute(sa.select(time_sessions).where(time_sessions.c.id == session_id))
            ).one()
            body = _session(row)
            body["balance_fen"] = (await ledger.balances(conn, member))["balance_fen"]
            return 200, SessionOut.model_validate(body).model_dump(mode="json")

        return await ledger.run_idempotent(
            self._db,
            store=data.store,
            request_id=data.request_id,
            operation=f"session_stop:{session_id}",
            body=data.model_dump(mode="json", exclude={"password", "consumption_code"}),
            now=now,
            work=work,
        )

    # --- expiry (run by the scheduler) -----------------------------------------------------

    async def expire_due(self, limit: int = 500) -> int:
        """Post away the remainder of every pass past its expiry; returns how many expired.

        A conditional UPDATE claims each pass, so concurrent schedulers expire it once.
        """
        now = to_millis(self._clock.now())
        async with self._db.read() as conn:
            due = (
                await conn.scalars(
                    sa.select(member_passes.c.id)
                    .where(
                        member_passes.c.expired_at.is_(None),
                        member_passes.c.expires_at <= now,
                    )
                    .order_by(member_passes.c.expires_at)
                    .limit(limit)
                )
            ).all()
        expired = 0
        for pass_id in due:
            async with self._db.write() as conn:
                won = (
                    await conn.execute(
                        member_passes.update()
                        .where(member_passes.c.id == pass_id, member_passes.c.expired_at.is_(None))
                        .values(expired_at=now)
                        .returning(
                            member_passes.c.member_id,
                            member_passes.c.kind,
                            member_passes.c.remaining,
                            member_passes.c.store_id,
                        )
                    )
                ).first()
                if won is None:
                    continue
                expired += 1
                if won.remaining:
                    await ledger.post(
                        conn,
                        member_id=won.member_id,
                        store=won.store_id,
                        account="count_card" if won.kind == "count" else "time_card",
                        amount=-won.remaining,
                        kind="expiry",
                        now=now,
                        pass_id=pass_id,
                        ref=f"pass:{pass_id}",
                    )
        if expired:
            log.info("passes_expired", count=expired)
        return expired
