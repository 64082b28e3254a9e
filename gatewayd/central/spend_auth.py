"""Who may spend stored value: the member's password or a one-time consumption code.

Separate from the ledger because it is an authorization rule, not bookkeeping: the slow
password check (argon2) runs before the write transaction, the code is used up inside it, in
the same transaction as the debit that ``ledger.post`` writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.protocols.tokens import mask

from .codes import check_consumption_code, keyed_hash
from .errors import Conflict, Expired, Forbidden, NotFound
from .logs import get_logger
from .models import consumption_codes

if TYPE_CHECKING:
    from .members import MemberService

# The events keep the logger name they had before this module was split out of ledger.py.
log = get_logger("gatewayd.central.ledger")


@dataclass(frozen=True, slots=True)
class SpendAuth:
    """The outcome of the password check done before the transaction (argon2 is slow)."""

    password_ok: bool = False


class SpendAuthorizer:
    """Stored value leaves a member's account only with their password or a valid
    consumption code (which is used up in the same transaction as the debit)."""

    def __init__(self, members: MemberService, code_key: bytes) -> None:
        self._members = members
        self._code_key = code_key

    async def check_password(self, member_id: int | None, payment: Any) -> SpendAuth:
        if member_id is None or payment.password is None:
            return SpendAuth()
        return SpendAuth(
            password_ok=await self._members.check_password(member_id, payment.password)
        )

    async def authorize(
        self,
        conn: AsyncConnection,
        member_id: int,
        payment: Any,
        auth: SpendAuth,
        where: Any,
        amount: int,
        now: int,
    ) -> None:
        """Raise unless the payment carries the right password or a usable code."""
        if payment.consumption_code is not None:
            await self.use_code(conn, member_id, payment.consumption_code, where, amount, now)
        elif payment.password is not None:
            if not auth.password_ok:
                raise Forbidden("wrong member password", code="wrong_password")
        else:
            raise Forbidden(
                "stored value needs the member's password or a consumption code",
                code="stored_value_auth_required",
            )

    async def use_code(
        self, conn: AsyncConnection, member_id: int, code: str, where: Any, amount: int, now: int
    ) -> None:
        """Use the code up in ``conn``: one conditional UPDATE decides concurrent uses."""
        digest = keyed_hash(self._code_key, check_consumption_code(code))
        won = await conn.scalar(
            consumption_codes.update()
            .where(
                consumption_codes.c.code_hash == digest,
                consumption_codes.c.member_id == member_id,
                consumption_codes.c.used_at.is_(None),
                consumption_codes.c.expires_at > now,
            )
            .values(
                used_at=now,
                used_store=where.store,
                used_terminal=where.terminal,
                debited_fen=amount,
            )
            .returning(consumption_codes.c.id)
        )
        if won is not None:
            log.info("consumption_code_used", member_id=member_id, code=mask(code))
            return
        row = (
            await conn.execute(
                sa.select(consumption_codes).where(consumption_codes.c.code_hash == digest)
            )
        ).first()
        if row is None or row.member_id != member_id:
            raise NotFound("unknown consumption code for this member", code="code_not_found")
        if row.used_at is not None:
            raise Conflict("consumption code already used", code="code_used")
        raise Expired("consumption code expired", code="code_expired")
