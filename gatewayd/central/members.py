"""Members, their cards and their payment-account bindings.

ID numbers are stored only as a keyed hash (HMAC-SHA256 under the configured secret) plus
their last 4 characters, and looked up by that hash; passwords are hashed with argon2 in an
executor so that hashing (tens of milliseconds by design) never blocks the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.protocols.checks import luhn_valid
from gatewayd.protocols.tokens import mask

from . import custom_fields, ledger
from . import models_members_ext as member_stats
from .clock import Clock, iso, to_millis
from .codes import keyed_hash, new_card_number, new_member_code
from .db import Database, is_unique_violation
from .errors import Conflict, Invalid, NotFound
from .logs import get_logger
from .member_events import MemberEvent, MemberEvents
from .models import cards, members, payment_bindings
from .schemas import CardCreate, MemberCreate, MemberUpdate, PaymentBindingCreate

log = get_logger(__name__)
_hasher = PasswordHasher()
_GENERATE_TRIES = 4
_UNIQUE_FIELDS = {
    "phone": "phone_taken",
    "id_hash": "id_number_taken",
    "legacy_code": "legacy_code_taken",
    "ic_uid": "ic_uid_taken",
    "number": "card_number_taken",
    "member_code": "member_code_taken",
    "provider": "already_bound",
}


def hash_password(password: str) -> str:
    """argon2id; blocking, call through ``asyncio.to_thread``."""
    return _hasher.hash(password)


def _verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _conflict(exc: sa.exc.IntegrityError) -> Conflict:
    text = str(exc.orig).lower()
    for field, code in _UNIQUE_FIELDS.items():
        if field in text:
            return Conflict(f"{field.replace('_', ' ')} already in use", code=code)
    return Conflict("conflicts with an existing record")


def summary(row: Any) -> dict[str, Any]:
    """The member summary a till shows (row from ``members``, possibly joined)."""
    return {
        "id": row.id,
        "name": row.name,
        "level": row.level,
        "phone_masked": mask(row.phone) if row.phone else None,
        "points": row.points,
        "balance_fen": row.balance_fen,
    }


def summary_of(member: dict[str, Any]) -> dict[str, Any]:
    """The till's summary of a full member (``MemberService.get``'s answer)."""
    phone = member["phone"]
    return {
        "id": member["id"],
        "name": member["name"],
        "level": member["level"],
        "phone_masked": mask(phone) if phone else None,
        "points": member["points"],
        "balance_fen": member["balance_fen"],
    }


def card_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "member_id": row.member_id,
        "number": row.number,
        "kind": row.kind,
        "main": row.is_main,
        "checked": row.checked,
        "member_code": row.member_code,
        "legacy_code": row.legacy_code,
        "ic_uid": row.ic_uid,
        "active": row.active,
        "created_at": iso(row.created_at),
        "last_used_at": iso(row.last_used_at),
    }


def _member_out(row: Any, card_rows: list[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "phone": row.phone,
        "gender": row.gender,
        "birthday": row.birthday.isoformat() if row.birthday else None,
        "level": row.level,
        "has_id_number": row.id_hash is not None,
        "id_number_last4": row.id_last4,
        "address": row.address,
        "email": row.email,
        "notes": row.notes,
        "has_password": row.password_hash is not None,
        "points": row.points,
        "balance_fen": row.balance_fen,
        "active": row.active,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "cards": [card_out(c) for c in card_rows],
    }


class MemberService:
    """Create, read, update and deactivate members and their cards."""

    def __init__(
        self, db: Database, clock: Clock, id_key: bytes, events: MemberEvents | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        self._id_key = id_key
        # ``registered`` is emitted here, in the creating transaction (notifications).
        self._events = events or MemberEvents()

    def id_hash(self, id_number: str) -> str:
        return keyed_hash(self._id_key, id_number.upper())

    async def _columns(self, data: MemberCreate, fields: set[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in fields:
            value = getattr(data, name)
            if name == "id_number":
                values["id_hash"] = self.id_hash(value) if value else None
                values["id_last4"] = value[-4:] if value else None
            elif name == "password":
                values["password_hash"] = (
                    await asyncio.to_thread(hash_password, value) if value else None
                )
            else:
                values[name] = value
        return values

    async def create(self, data: MemberCreate) -> dict[str, Any]:
        now = to_millis(self._clock.now())
        values = await self._columns(data, set(MemberCreate.model_fields))
        values.update(active=True, created_at=now, updated_at=now)
        # Balances come from the ledger: the member starts at zero, opening entries follow.
        opening = {"points": values.pop("points"), "balance_fen": values.pop("balance_fen")}
        custom = values.pop("custom", None)
        try:
            async with self._db.write() as conn:
                member_id = await conn.scalar(
                    members.insert()
                    .values(**values, points=0, balance_fen=0)
                    .returning(members.c.id)
                )
                assert member_id is not None
                await ledger.set_balances(conn, member_id, **opening, kind="opening", now=now)
                # Member management (issue 8): typed custom fields and the search stats row.
                await custom_fields.write_values(conn, "member", member_id, custom, creating=True)
                await member_stats.member_created(conn, member_id, now, data.birthday)
                await self._events.emit(
                    conn,
                    MemberEvent(kind="registered", member_id=member_id, key=f"member:{member_id}"),
                )
        except sa.exc.IntegrityError as exc:
            raise _conflict(exc) from exc
        log.info("member_created", member_id=member_id, phone=data.phone or "")
        assert member_id is not None
        return await self.get(member_id)

    async def _row(self, conn: AsyncConnection, member_id: int) -> Any:
        row = (await conn.execute(sa.select(members).where(members.c.id == member_id))).first()
        if row is None:
            raise NotFound(f"no member {member_id}", code="member_not_found")
        return row

    async def get(self, member_id: int) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = await self._row(conn, member_id)
            card_rows = (
                await conn.execute(
                    sa.select(cards).where(cards.c.member_id == member_id).order_by(cards.c.id)
                )
            ).all()
            custom = await custom_fields.read_values(conn, "member", member_id)
        return {**_member_out(row, list(card_rows)), "custom": custom}

    async def update(self, member_id: int, data: MemberUpdate) -> dict[str, Any]:
        fields = set(data.model_fields_set)
        for required in ("name", "level", "points", "balance_fen"):
            if required in fields and getattr(data, required) is None:
                raise Invalid(f"{required} cannot be null", code="invalid_request")
        values = await self._columns(data, fields)
        values["updated_at"] = now = to_millis(self._clock.now())
        custom = values.pop("custom", None)
        # Balances change only through ledger entries (an HQ adjustment for the difference).
        targets = {
            "points": values.pop("points", None),
            "balance_fen": values.pop("balance_fen", None),
        }
        try:
            async with self._db.write() as conn:
                await self._row(conn, member_id)
                await conn.execute(
                    members.update().where(members.c.id == member_id).values(**values)
                )
                await ledger.set_balances(conn, member_id, **targets, kind="adjustment", now=now)
                # Member management (issue 8): custom fields and the birthday-month index.
                if "custom" in fields:
                    await custom_fields.write_values(
                        conn, "member", member_id, custom, creating=False
                    )
                if "birthday" in fields:
                    await member_stats.birthday_changed(conn, member_id, data.birthday)
        except sa.exc.IntegrityError as exc:
            raise _conflict(exc) from exc
        log.info("member_updated", member_id=member_id, fields=sorted(fields))
        return await self.get(member_id)

    async def deactivate(self, member_id: int) -> dict[str, Any]:
        """Soft delete: identify no longer finds the member; history stays."""
        async with self._db.write() as conn:
            await self._row(conn, member_id)
            await conn.execute(
                members.update()
                .where(members.c.id == member_id)
                .values(active=False, updated_at=to_millis(self._clock.now()))
            )
        log.info("member_deactivated", member_id=member_id)
        return await self.get(member_id)

    async def check_password(self, member_id: int, password: str) -> bool:
        async with self._db.read() as conn:
            row = await self._row(conn, member_id)
        if row.password_hash is None or not row.active:
            return False
        return await asyncio.to_thread(_verify_password, row.password_hash, password)

    # --- cards -------------------------------------------------------------------------

    async def add_card(self, member_id: int, data: CardCreate) -> dict[str, Any]:
        if data.kind == "ic" and not data.ic_uid:
            raise Invalid("an IC card needs its ic_uid", code="invalid_request")
        for attempt in range(_GENERATE_TRIES):
            try:
                return await self._insert_card(member_id, data)
            except sa.exc.IntegrityError as exc:
                conflict = _conflict(exc)
                generated = conflict.code == "member_code_taken" or (
                    conflict.code == "card_number_taken" and data.number is None
                )
                if not generated or attempt == _GENERATE_TRIES - 1:
                    raise conflict from exc
        raise AssertionError("unreachable")

    async def _insert_card(self, member_id: int, data: CardCreate) -> dict[str, Any]:
        now = to_millis(self._clock.now())
        number = data.number.upper() if data.number else new_card_number()
        async with self._db.write() as conn:
            member = await self._row(conn, member_id)
            if not member.active:
                raise Conflict("member is deactivated", code="member_inactive")
            has_main = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(cards)
                .where(cards.c.member_id == member_id, cards.c.is_main, cards.c.active)
            )
            main = data.main or not has_main
            if main and has_main:
                await conn.execute(
                    cards.update().where(cards.c.member_id == member_id).values(is_main=False)
                )
            card_id = await conn.scalar(
                cards.insert()
                .values(
                    member_id=member_id,
                    number=number,
                    kind=data.kind,
                    is_main=main,
                    checked=luhn_valid(number),
                    member_code=new_member_code(),
                    legacy_code=data.legacy_code.upper() if data.legacy_code else None,
                    ic_uid=data.ic_uid.upper() if data.ic_uid else None,
                    active=True,
                    created_at=now,
                )
                .returning(cards.c.id)
            )
            row = (await conn.execute(sa.select(cards).where(cards.c.id == card_id))).one()
        log.info("card_added", member_id=member_id, card_id=card_id, number=number)
        return card_out(row)

    async def list_cards(self, member_id: int) -> list[dict[str, Any]]:
        return list((await self.get(member_id))["cards"])

    async def _card(self, conn: AsyncConnection, member_id: int, card_id: int) -> Any:
        row = (
            await conn.execute(
                sa.select(cards).where(cards.c.id == card_id, cards.c.member_id == member_id)
            )
        ).first()
        if row is None:
            raise NotFound(f"member {member_id} has no card {card_id}", code="card_not_found")
        return row

    async def deactivate_card(self, member_id: int, card_id: int) -> dict[str, Any]:
        async with self._db.write() as conn:
            await self._card(conn, member_id, card_id)
            await conn.execute(
                cards.update().where(cards.c.id == card_id).values(active=False, is_main=False)
            )
            row = await self._card(conn, member_id, card_id)
        return card_out(row)

    async def touch_card(self, member_id: int, card_id: int) -> dict[str, Any]:
        """Record that the member used this card last (the payment-code tie-breaker)."""
        async with self._db.write() as conn:
            card = await self._card(conn, member_id, card_id)
            if not card.active:
                raise Conflict("card is deactivated", code="card_inactive")
            await conn.execute(
                cards.update()
                .where(cards.c.id == card_id)
                .values(last_used_at=to_millis(self._clock.now()))
            )
            row = await self._card(conn, member_id, card_id)
        return card_out(row)

    # --- payment accounts --------------------------------------------------------------

    async def bind_payment(self, member_id: int, data: PaymentBindingCreate) -> dict[str, Any]:
        now = to_millis(self._clock.now())
        try:
            async with self._db.write() as conn:
                await self._row(conn, member_id)
                if data.card_id is not None:
                    card_id = (await self._card(conn, member_id, data.card_id)).id
                else:
                    card_id = await conn.scalar(
                        sa.select(cards.c.id).where(
                            cards.c.member_id == member_id, cards.c.is_main, cards.c.active
                        )
                    )
                    if card_id is None:
                        raise Conflict("member has no main card to bind", code="no_main_card")
                binding_id = await conn.scalar(
                    payment_bindings.insert()
                    .values(
                        provider=data.provider,
                        account_id=data.account_id,
                        member_id=member_id,
                        card_id=card_id,
                        created_at=now,
                    )
                    .returning(payment_bindings.c.id)
                )
        except sa.exc.IntegrityError as exc:
            if is_unique_violation(exc):
                raise Conflict(
                    "this account is already bound to this card", code="already_bound"
                ) from exc
            raise
        log.info(
            "payment_bound", member_id=member_id, provider=data.provider, account_id=data.account_id
        )
        return {
            "id": binding_id,
            "provider": data.provider,
            "account_id": data.account_id,
            "member_id": member_id,
            "card_id": card_id,
            "created_at": iso(now),
        }

    async def list_bindings(self, member_id: int) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            await self._row(conn, member_id)
            rows = (
                await conn.execute(
                    sa.select(payment_bindings)
                    .where(payment_bindings.c.member_id == member_id)
                    .order_by(payment_bindings.c.id)
                )
            ).all()
        return [
            {
                "id": r.id,
                "provider": r.provider,
                "account_id": r.account_id,
                "member_id": r.member_id,
                "card_id": r.card_id,
                "created_at": iso(r.created_at),
            }
            for r in rows
        ]

    async def unbind_payment(self, member_id: int, binding_id: int) -> None:
        async with self._db.write() as conn:
            result = await conn.execute(
                payment_bindings.delete().where(
                    payment_bindings.c.id == binding_id,
                    payment_bindings.c.member_id == member_id,
                )
            )
            if result.rowcount == 0:
                raise NotFound(
                    f"member {member_id} has no binding {binding_id}", code="binding_not_found"
                )
