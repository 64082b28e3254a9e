"""The chain's own numbers and codes: card numbers, member codes, consumption codes.

Formats (reserved in ``gatewayd.protocols.tokens`` so that they never collide with payment
codes, phone numbers or ID numbers):

* card number: ``8`` + 14 random digits + Luhn digit (16 digits);
* member code: ``96`` + 17 random digits + Luhn digit (20 digits), fixed per card;
* consumption code: ``97`` + 19 random digits + Luhn digit (22 digits, 63 bits of entropy),
  valid ``code_ttl`` seconds (10 minutes), single use. Central stores only its HMAC.

Random rather than sequential digits, so that one member's code says nothing about another's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.protocols.checks import luhn_check_digit, luhn_valid
from gatewayd.protocols.tokens import (
    CONSUMPTION_CODE_LENGTH,
    CONSUMPTION_CODE_PREFIX,
    MEMBER_CODE_LENGTH,
    MEMBER_CODE_PREFIX,
    mask,
)

from .clock import Clock, iso, to_millis
from .db import Database
from .errors import Conflict, Expired, Invalid, NotFound
from .logs import get_logger
from .member_events import MemberEvent, MemberEvents
from .models import consumption_codes, members

CARD_NUMBER_PREFIX: Final = "8"
CARD_NUMBER_LENGTH: Final = 16
CODE_KEY_PURPOSE: Final = "consumption-code"
ID_KEY_PURPOSE: Final = "id-number"

log = get_logger(__name__)


def _with_luhn(prefix: str, length: int) -> str:
    random_digits = length - len(prefix) - 1
    payload = prefix + str(secrets.randbelow(10**random_digits)).zfill(random_digits)
    return payload + luhn_check_digit(payload)


def new_card_number() -> str:
    """A fresh 16-digit card number with its Luhn check digit."""
    return _with_luhn(CARD_NUMBER_PREFIX, CARD_NUMBER_LENGTH)


def new_member_code() -> str:
    """A fresh fixed member code: ``96`` + 17 digits + Luhn digit."""
    return _with_luhn(MEMBER_CODE_PREFIX, MEMBER_CODE_LENGTH)


def new_consumption_code() -> str:
    """A fresh consumption code: ``97`` + 19 random digits + Luhn digit."""
    return _with_luhn(CONSUMPTION_CODE_PREFIX, CONSUMPTION_CODE_LENGTH)


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 hex: how ID numbers and consumption codes are stored and looked up."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def check_consumption_code(code: str) -> str:
    """The code if it has the consumption-code shape and check digit; else ``Invalid``."""
    if (
        len(code) != CONSUMPTION_CODE_LENGTH
        or not code.startswith(CONSUMPTION_CODE_PREFIX)
        or not luhn_valid(code)
    ):
        raise Invalid("not a consumption code (format or check digit)", code="malformed_code")
    return code


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str
    member_id: int
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class ValidCode:
    """A consumption code found, unused and unexpired."""

    code_id: int
    member_id: int
    last4: str


class ConsumptionCodes:
    """Issue, look up and redeem consumption codes."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        key: bytes,
        ttl: float,
        events: MemberEvents | None = None,
    ) -> None:
        self._db = db
        self._events = events
        self._clock = clock
        self._key = key
        self._ttl_ms = to_millis(ttl)
        self._by_hash = db.prepare(
            sa.select(consumption_codes).where(
                consumption_codes.c.code_hash == sa.bindparam("digest")
            )
        )

    async def issue(self, member_id: int) -> IssuedCode:
        """A new code for an active member (404 otherwise)."""
        now = to_millis(self._clock.now())
        code = new_consumption_code()
        async with self._db.write() as conn:
            active = await conn.scalar(sa.select(members.c.active).where(members.c.id == member_id))
            if not active:
                raise NotFound(f"no active member {member_id}", code="member_not_found")
            await conn.execute(
                consumption_codes.insert().values(
                    member_id=member_id,
                    code_hash=keyed_hash(self._key, code),
                    last4=code[-4:],
                    issued_at=now,
                    expires_at=now + self._ttl_ms,
                )
            )
        log.info("consumption_code_issued", member_id=member_id, code=code)
        return IssuedCode(code=code, member_id=member_id, expires_at_ms=now + self._ttl_ms)

    async def _find(self, conn: AsyncConnection | None, code: str) -> Any:
        """The code's row (inside ``conn``'s transaction, or on the hot path without one)."""
        digest = keyed_hash(self._key, check_consumption_code(code))
        if conn is None:
            row = await self._db.fetch_row(self._by_hash, {"digest": digest})
        else:
            row = (await conn.execute(self._by_hash.statement, {"digest": digest})).first()
        # The index lookup is by hash; the final comparison is constant-time all the same.
        if row is None or not hmac.compare_digest(row.code_hash, digest):
            raise NotFound("unknown consumption code", code="code_not_found")
        return row

    def _check_state(self, row: Any, now: int) -> None:
        if row.used_at is not None:
            raise Conflict("consumption code already used", code="code_used")
        if now >= row.expires_at:
            raise Expired("consumption code expired", code="code_expired")

    async def lookup(self, code: str) -> ValidCode:
        """Identify's view: who the code belongs to, without using it up."""
        row = await self._find(None, code)
        self._check_state(row, to_millis(self._clock.now()))
        return ValidCode(code_id=row.id, member_id=row.member_id, last4=row.last4)

    async def redeem(
        self, code: str, store: str, terminal: str, amount_fen: int | None
    ) -> tuple[ValidCode, int, int]:
        """Use the code up; optionally debit stored value in the same transaction.

        One conditional UPDATE decides the race: of two concurrent redeemers exactly one
        matches ``used_at IS NULL``. Returns (code, redeemed_at_ms, balance_fen after).
        """
        now = to_millis(self._clock.now())
        digest = keyed_hash(self._key, check_consumption_code(code))
        debit = amount_fen or 0
        async with self._db.write() as conn:
            result = await conn.execute(
                consumption_codes.update()
                .where(
                    consumption_codes.c.code_hash == digest,
                    consumption_codes.c.used_at.is_(None),
                    consumption_codes.c.expires_at > now,
                )
                .values(used_at=now, used_store=store, used_terminal=terminal, debited_fen=debit)
                .returning(consumption_codes.c.id, consumption_codes.c.member_id)
            )
            won = result.first()
            if won is None:
                row = await self._find(conn, code)
                self._check_state(row, now)
                raise Conflict("consumption code already used", code="code_used")
            balance = await self._debit(conn, won.id, won.member_id, store, debit, now)
        log.info(
            "consumption_code_redeemed",
            member_id=won.member_id,
            code=mask(code),
            store=store,
            terminal=terminal,
            debited_fen=debit,
        )
        return ValidCode(code_id=won.id, member_id=won.member_id, last4=code[-4:]), now, balance

    async def _debit(
        self, conn: AsyncConnection, code_id: int, member_id: int, store: str, debit: int, now: int
    ) -> int:
        """Take ``debit`` off stored value through the ledger; the balance after.

        Leaving by an exception rolls the code's use back too (one transaction).
        """
        from . import ledger  # ledger reads codes for order payments: import when used

        active = await conn.scalar(sa.select(members.c.active).where(members.c.id == member_id))
        if not active:
            raise Conflict("the member is deactivated", code="member_inactive")
        if not debit:
            balance = await conn.scalar(
                sa.select(members.c.balance_fen).where(members.c.id == member_id)
            )
            return int(balance or 0)
        try:
            posted = await ledger.post(
                conn,
                member_id=member_id,
                store=store,
                account="stored_value",
                amount=-debit,
                kind="debit",
                now=now,
                ref=f"consumption_code:{code_id}",
            )
        except ledger.Insufficient as exc:
            raise Conflict("insufficient stored value", code="insufficient_balance") from exc
        if self._events is not None:
            await self._events.emit(
                conn,
                MemberEvent(
                    kind="stored_value_debited",
                    member_id=member_id,
                    key=f"consumption_code:{code_id}:debit",
                    store_id=store,
                    data={"amount_fen": debit, "balance_fen": posted.balance_after},
                ),
            )
        return posted.balance_after


def expires_iso(issued: IssuedCode) -> str:
    """The expiry of an issued code as RFC 3339."""
    return iso(issued.expires_at_ms) or ""
