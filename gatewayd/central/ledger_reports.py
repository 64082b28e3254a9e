"""The ledger's read side for HQ: a member's entries, and settlement between stores.

Separate from ``routes_programme.py`` (the HTTP handlers) because these are queries and their
response shapes, reusable without a request: ``history`` and ``settlement`` take a
``Database``. Every name stays importable from ``routes_programme`` as before.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import Field

from .clock import iso
from .db import Database
from .models_programme import ledger_entries
from .schemas import Out
from .schemas_orders import Balances


class EntryOut(Out):
    id: int
    member_id: int
    store: str
    account: str
    pass_id: int | None
    amount: int
    balance_after: int
    kind: str
    order_id: int | None
    refund_id: int | None
    reverses_id: int | None
    ref: str | None
    created_at: str


class MemberLedger(Out):
    member_id: int
    balances: Balances
    entries: list[EntryOut] = Field(description="newest first")


class SettlementRow(Out):
    store: str = Field(description='"_hq" for HQ\'s own postings (opening balances, corrections)')
    account: str
    credit: int
    debit: int
    net: int
    entries: int


class Settlement(Out):
    since: str
    until: str
    items: list[SettlementRow]


async def settlement(db: Database, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
    """Per store and account: what was credited and debited between two times.

    Stored value recharged at store A and spent at store B shows up as A's credit and B's
    debit: the stores settle the difference between them.
    """
    credit = sa.func.sum(sa.case((ledger_entries.c.amount > 0, ledger_entries.c.amount), else_=0))
    debit = sa.func.sum(sa.case((ledger_entries.c.amount < 0, -ledger_entries.c.amount), else_=0))
    query = (
        sa.select(
            ledger_entries.c.store_id,
            ledger_entries.c.account,
            credit.label("credit"),
            debit.label("debit"),
            sa.func.count().label("entries"),
        )
        .where(ledger_entries.c.created_at >= since_ms, ledger_entries.c.created_at < until_ms)
        .group_by(ledger_entries.c.store_id, ledger_entries.c.account)
        .order_by(ledger_entries.c.store_id, ledger_entries.c.account)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "store": r.store_id,
            "account": r.account,
            "credit": int(r.credit or 0),
            "debit": int(r.debit or 0),
            "net": int((r.credit or 0) - (r.debit or 0)),
            "entries": r.entries,
        }
        for r in rows
    ]


async def history(db: Database, member_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """The member's latest entries, newest first."""
    async with db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(ledger_entries)
                .where(ledger_entries.c.member_id == member_id)
                .order_by(ledger_entries.c.id.desc())
                .limit(limit)
            )
        ).all()
    return [entry_out(r) for r in rows]


def entry_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "member_id": row.member_id,
        "store": row.store_id,
        "account": row.account,
        "pass_id": row.pass_id,
        "amount": row.amount,
        "balance_after": row.balance_after,
        "kind": row.kind,
        "order_id": row.order_id,
        "refund_id": row.refund_id,
        "reverses_id": row.reverses_id,
        "ref": row.ref,
        "created_at": iso(row.created_at),
    }
