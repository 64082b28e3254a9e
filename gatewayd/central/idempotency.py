"""Idempotent requests: each write request's ``request_id`` is done once per store.

Separate from the ledger's postings because every programme write (orders, refunds,
recharges, passes, sessions) goes through it, with or without ledger entries. ``claim``
records the id in the same transaction as the work; a retry finds the stored answer and gets
it back byte for byte, a different body under the same id is a 409. A request that fails
leaves nothing behind, so it can be retried with the same id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import Database
from .errors import Conflict
from .models_programme import programme_requests


def _upsert(conn: AsyncConnection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def body_hash(body: Mapping[str, Any]) -> str:
    """A stable hash of a request body (keys sorted; secrets are hashed along, never stored)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Replay:
    """The first answer to a request_id: its status and exact body."""

    status: int
    body: str


async def claim(
    conn: AsyncConnection, *, store: str, request_id: str, operation: str, digest: str, now: int
) -> Replay | None:
    """Take ``(store, request_id)`` for this transaction, or find who already has.

    Returns None when the id is new (the caller then does the work and calls ``answer``);
    else the stored answer. A concurrent transaction holding the same id makes this wait
    (the unique index) until it commits or rolls back.
    """
    inserted = await conn.scalar(
        _upsert(conn)(programme_requests)
        .values(
            store_id=store,
            request_id=request_id,
            operation=operation,
            body_hash=digest,
            status=0,
            response="",
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(programme_requests.c.id)
    )
    if inserted is not None:
        return None
    row = (
        await conn.execute(
            sa.select(programme_requests).where(
                programme_requests.c.store_id == store,
                programme_requests.c.request_id == request_id,
            )
        )
    ).one()
    if row.operation != operation or row.body_hash != digest:
        raise Conflict(
            f"request_id {request_id!r} was already used for a different request",
            code="request_id_reused",
        )
    return Replay(status=row.status, body=row.response)


async def stored_answer(
    db: Database, *, store: str, request_id: str, operation: str, digest: str
) -> Replay | None:
    """The committed answer to a request_id, if any (a cheap check before costly work)."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                sa.select(programme_requests).where(
                    programme_requests.c.store_id == store,
                    programme_requests.c.request_id == request_id,
                )
            )
        ).first()
    if row is None:
        return None
    if row.operation != operation or row.body_hash != digest:
        raise Conflict(
            f"request_id {request_id!r} was already used for a different request",
            code="request_id_reused",
        )
    return Replay(status=row.status, body=row.response)


async def answer(
    conn: AsyncConnection, *, store: str, request_id: str, status: int, body: str
) -> None:
    """Store the answer to a claimed request (same transaction as the work)."""
    await conn.execute(
        programme_requests.update()
        .where(
            programme_requests.c.store_id == store,
            programme_requests.c.request_id == request_id,
        )
        .values(status=status, response=body)
    )


Work = Callable[[AsyncConnection], Awaitable[tuple[int, Any]]]


async def run_idempotent(
    db: Database,
    *,
    store: str,
    request_id: str,
    operation: str,
    body: Mapping[str, Any],
    now: int,
    work: Work,
) -> Replay:
    """Do ``work`` once per ``(store, request_id)`` in one write transaction.

    ``work`` returns (status, JSON-able answer); the answer is serialised once, stored with
    the request and returned, so a retry gets the identical bytes. If ``work`` raises,
    nothing is stored and the same request_id may be tried again.
    """
    digest = body_hash(body)
    async with db.write() as conn:
        replay = await claim(
            conn, store=store, request_id=request_id, operation=operation, digest=digest, now=now
        )
        if replay is not None:
            return replay
        status, result = await work(conn)
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        await answer(conn, store=store, request_id=request_id, status=status, body=text)
    return Replay(status=status, body=text)
