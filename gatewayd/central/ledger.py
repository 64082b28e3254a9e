"""The programme's ledger: append-only entries, cached balances, and their verification.

Every change to points, stored value, cumulative earned points, count-card uses or
time-card minutes is one ``ledger_entries`` row plus one conditional UPDATE of the cached
balance, inside the caller's write transaction (``Database.write``). The UPDATE only
matches when the balance stays at or above zero, so "never negative" is decided by the
database: on PostgreSQL the UPDATE takes the row lock and re-checks its condition after
waiting for a concurrent writer; on SQLite the write transaction is ``BEGIN IMMEDIATE``, so
writers run one after another. Corrections are new (reversing) entries, never edits.

Requests that write carry a client ``request_id`` (unique per store): that machinery is in
``idempotency.py``, and who may spend stored value in ``spend_auth.py``. Their names stay
importable from here (``ledger.run_idempotent``, ``ledger.Replay``, ``ledger.SpendAuthorizer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import Database
from .errors import Conflict, NotFound
from .idempotency import Replay as Replay
from .idempotency import Work as Work
from .idempotency import answer as answer
from .idempotency import body_hash as body_hash
from .idempotency import claim as claim
from .idempotency import run_idempotent as run_idempotent
from .idempotency import stored_answer as stored_answer
from .models import members
from .models_programme import ledger_entries, member_passes, member_programme
from .spend_auth import SpendAuth as SpendAuth
from .spend_auth import SpendAuthorizer as SpendAuthorizer

Account = Literal["points", "stored_value", "earned", "count_card", "time_card"]
ACCOUNTS: Final[tuple[Account, ...]] = (
    "points",
    "stored_value",
    "earned",
    "count_card",
    "time_card",
)
# The store HQ's own postings (opening balances, admin corrections) are attributed to. It
# cannot clash with a real store: store ids start with a letter or digit.
HQ_STORE: Final = "_hq"
_MEMBER_COLUMNS: Final = {"points": members.c.points, "stored_value": members.c.balance_fen}
_SHORT: Final = {
    "points": "insufficient_points",
    "stored_value": "insufficient_balance",
    "earned": "insufficient_earned_points",
    "count_card": "insufficient_uses",
    "time_card": "insufficient_minutes",
}


@dataclass(frozen=True, slots=True)
class Posted:
    """One entry as written."""

    entry_id: int
    account: Account
    amount: int
    balance_after: int


class Insufficient(Conflict):
    """The posting would take a balance below zero (nothing was written)."""


def _upsert(conn: AsyncConnection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


async def _cached(
    conn: AsyncConnection, account: Account, member_id: int, pass_id: int | None, amount: int
) -> int | None:
    """Move the cached balance by ``amount`` unless it would go negative; the new balance."""
    value = await _move(conn, account, member_id, pass_id, amount)
    return None if value is None else int(value)


async def _move(
    conn: AsyncConnection, account: Account, member_id: int, pass_id: int | None, amount: int
) -> Any:
    if account in _MEMBER_COLUMNS:
        column = _MEMBER_COLUMNS[account]
        return await conn.scalar(
            members.update()
            .where(members.c.id == member_id, column + amount >= 0)
            .values({column.key: column + amount})
            .returning(column)
        )
    if account == "earned":
        table = member_programme
        await conn.execute(
            _upsert(conn)(table)
            .values(member_id=member_id, earned_points=0)
            .on_conflict_do_nothing()
        )
        return await conn.scalar(
            table.update()
            .where(table.c.member_id == member_id, table.c.earned_points + amount >= 0)
            .values(earned_points=table.c.earned_points + amount)
            .returning(table.c.earned_points)
        )
    kind = "count" if account == "count_card" else "time"
    return await conn.scalar(
        member_passes.update()
        .where(
            member_passes.c.id == pass_id,
            member_passes.c.member_id == member_id,
            member_passes.c.kind == kind,
            member_passes.c.remaining + amount >= 0,
        )
        .values(remaining=member_passes.c.remaining + amount)
        .returning(member_passes.c.remaining)
    )


async def post(
    conn: AsyncConnection,
    *,
    member_id: int,
    store: str,
    account: Account,
    amount: int,
    kind: str,
    now: int,
    pass_id: int | None = None,
    order_id: int | None = None,
    refund_id: int | None = None,
    reverses_id: int | None = None,
    ref: str | None = None,
) -> Posted:
    """Write one entry and move its cached balance, in ``conn``'s transaction.

    Raises ``Insufficient`` (409) when the balance would go negative and ``NotFound`` when
    the member (or pass) does not exist; the caller's transaction then rolls back whole.
    """
    if (pass_id is None) != (account not in ("count_card", "time_card")):
        raise ValueError(f"pass_id is required exactly for card accounts, not {account}")
    balance = await _cached(conn, account, member_id, pass_id, amount)
    if balance is None:
        exists = await conn.scalar(sa.select(members.c.id).where(members.c.id == member_id))
        if exists is None:
            raise NotFound(f"no member {member_id}", code="member_not_found")
        if pass_id is not None:
            owned = await conn.scalar(
                sa.select(member_passes.c.id).where(
                    member_passes.c.id == pass_id, member_passes.c.member_id == member_id
                )
            )
            if owned is None:
                raise NotFound(f"member {member_id} has no pass {pass_id}", code="pass_not_found")
        raise Insufficient(f"{account.replace('_', ' ')} would go below zero", code=_SHORT[account])
    entry_id = await conn.scalar(
        ledger_entries.insert()
        .values(
            member_id=member_id,
            store_id=store,
            account=account,
            pass_id=pass_id,
            amount=amount,
            balance_after=balance,
            kind=kind,
            order_id=order_id,
            refund_id=refund_id,
            reverses_id=reverses_id,
            ref=ref,
            created_at=now,
        )
        .returning(ledger_entries.c.id)
    )
    assert entry_id is not None
    return Posted(entry_id=entry_id, account=account, amount=amount, balance_after=balance)


async def reverse(conn: AsyncConnection, entry_id: int, *, store: str, now: int) -> Posted:
    """Post the exact opposite of an entry (the only way to correct one)."""
    row = (
        await conn.execute(sa.select(ledger_entries).where(ledger_entries.c.id == entry_id))
    ).first()
    if row is None:
        raise NotFound(f"no ledger entry {entry_id}", code="entry_not_found")
    done = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(ledger_entries)
        .where(ledger_entries.c.reverses_id == entry_id)
    )
    if done:
        raise Conflict(f"entry {entry_id} is already reversed", code="already_reversed")
    return await post(
        conn,
        member_id=row.member_id,
        store=store,
        account=row.account,
        amount=-row.amount,
        kind="reversal",
        now=now,
        pass_id=row.pass_id,
        order_id=row.order_id,
        reverses_id=entry_id,
    )


async def balances(conn: AsyncConnection, member_id: int) -> dict[str, int]:
    """The member's cached points, stored value and cumulative earned points."""
    row = (
        await conn.execute(
            sa.select(members.c.points, members.c.balance_fen, member_programme.c.earned_points)
            .select_from(members.outerjoin(member_programme))
            .where(members.c.id == member_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"no member {member_id}", code="member_not_found")
    return {
        "points": row.points,
        "balance_fen": row.balance_fen,
        "earned_points": row.earned_points or 0,
    }


# --- verification and settlement -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A cached balance that differs from its entries, or an entry chain that is wrong."""

    account: str
    owner: int
    cached: int
    ledger: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "owner": self.owner,
            "cached": self.cached,
            "ledger": self.ledger,
        }


def _sums(account: str, key: Any) -> Any:
    return (
        sa.select(key.label("owner"), sa.func.sum(ledger_entries.c.amount).label("total"))
        .where(ledger_entries.c.account == account)
        .group_by(key)
        .subquery()
    )


async def verify(db: Database) -> list[Mismatch]:
    """Recompute every cached balance from the entries and list the differences.

    Also checks each account's entry chain: every ``balance_after`` equals the running sum
    and none is negative. An empty list means the caches and the ledger agree.
    """
    found: list[Mismatch] = []
    async with db.read() as conn:
        for account, column in _MEMBER_COLUMNS.items():
            sums = _sums(account, ledger_entries.c.member_id)
            total = sa.func.coalesce(sums.c.total, 0)
            rows = await conn.execute(
                sa.select(members.c.id, column, total)
                .select_from(members.outerjoin(sums, sums.c.owner == members.c.id))
                .where(column != total)
            )
            found += [Mismatch(account, r[0], r[1], r[2]) for r in rows]
        sums = _sums("earned", ledger_entries.c.member_id)
        cached = sa.func.coalesce(member_programme.c.earned_points, 0)
        total = sa.func.coalesce(sums.c.total, 0)
        rows = await conn.execute(
            sa.select(members.c.id, cached, total)
            .select_from(
                members.outerjoin(member_programme).outerjoin(sums, sums.c.owner == members.c.id)
            )
            .where(cached != total)
        )
        found += [Mismatch("earned", r[0], r[1], r[2]) for r in rows]
        for account in ("count_card", "time_card"):
            sums = _sums(account, ledger_entries.c.pass_id)
            total = sa.func.coalesce(sums.c.total, 0)
            rows = await conn.execute(
                sa.select(member_passes.c.id, member_passes.c.remaining, total)
                .select_from(member_passes.outerjoin(sums, sums.c.owner == member_passes.c.id))
                .where(
                    member_passes.c.kind == account.split("_")[0],
                    member_passes.c.remaining != total,
                )
            )
            found += [Mismatch(account, r[0], r[1], r[2]) for r in rows]
        running = (
            sa.func.sum(ledger_entries.c.amount)
            .over(
                partition_by=(
                    ledger_entries.c.member_id,
                    ledger_entries.c.account,
                    ledger_entries.c.pass_id,
                ),
                order_by=ledger_entries.c.id,
            )
            .label("running")
        )
        chain = sa.select(
            ledger_entries.c.id, ledger_entries.c.account, ledger_entries.c.balance_after, running
        ).subquery()
        rows = await conn.execute(
            sa.select(chain).where(
                sa.or_(chain.c.running != chain.c.balance_after, chain.c.running < 0)
            )
        )
        found += [Mismatch(f"entry:{r.account}", r.id, r.balance_after, r.running) for r in rows]
    return found


async def opening_entries_sql(conn: AsyncConnection, store: str = HQ_STORE) -> None:
    """Opening entries for every member's current points and stored value (bulk seeding).

    One INSERT … SELECT per account: the members' cached columns become entries without a
    round trip per member.
    """
    for account, column in _MEMBER_COLUMNS.items():
        await conn.execute(
            ledger_entries.insert().from_select(
                [
                    "member_id",
                    "store_id",
                    "account",
                    "amount",
                    "balance_after",
                    "kind",
                    "created_at",
                ],
                sa.select(
                    members.c.id,
                    sa.literal(store),
                    sa.literal(account),
                    column,
                    column,
                    sa.literal("opening"),
                    members.c.created_at,
                )
                .where(column != 0)
                .order_by(members.c.id),
            )
        )


async def set_balances(
    conn: AsyncConnection,
    member_id: int,
    *,
    points: int | None,
    balance_fen: int | None,
    kind: str,
    now: int,
    store: str = HQ_STORE,
) -> None:
    """Bring the member's points and stored value to the given values by posting the
    differences (opening balances at registration, HQ corrections on update)."""
    current = await balances(conn, member_id)
    for account, target, have in (
        ("points", points, current["points"]),
        ("stored_value", balance_fen, current["balance_fen"]),
    ):
        if target is not None and target != have:
            await post(
                conn,
                member_id=member_id,
                store=store,
                account=account,  # type: ignore[arg-type]
                amount=target - have,
                kind=kind,
                now=now,
            )
