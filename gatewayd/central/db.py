"""Database access: SQLite (WAL) or PostgreSQL (asyncpg) through the same code.

Two engines over one database: ``reader`` runs each statement on its own (autocommit), so
a lookup costs one round trip instead of three (BEGIN, SELECT, COMMIT); ``engine`` runs
multi-statement transactions. The racy paths (code redemption, event_id replay) rely on
single conditional statements and unique constraints, not on isolation levels.

SQLite needs care with concurrent writers: a deferred transaction that reads and then writes
fails with SQLITE_BUSY without waiting, and a writer that does wait sleeps in steps of
milliseconds. So write transactions open with ``BEGIN IMMEDIATE``, and writers in one
process queue on an asyncio lock instead of on SQLite's sleeping busy handler (processes
still wait for each other through ``busy_timeout``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .errors import CentralError

SQLITE_BUSY_TIMEOUT_MS = 10_000


class DatabaseError(CentralError):
    """The database URL is unusable or the database is unreachable."""

    status = 503
    default_code = "database_unavailable"


def normalise_url(url: str) -> str:
    """Pick the async driver: ``sqlite:///f.db`` → aiosqlite, ``postgresql://`` → asyncpg."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:") :]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith(("sqlite+aiosqlite:", "postgresql+asyncpg:")):
        return url
    raise DatabaseError(f"unsupported database URL scheme: {url.split(':', 1)[0]!r}")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let us emit BEGIN ourselves (see the module docstring).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    immediate = conn.get_execution_options().get("central_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(url: str, *, pool_size: int = 8, autocommit: bool = False) -> AsyncEngine:
    """An engine for ``url`` with central's per-backend settings applied."""
    full = normalise_url(url)
    # No overflow: an overflow connection is closed when returned and reopened on the next
    # burst (a new thread and PRAGMAs on SQLite, a new backend on PostgreSQL); waiting for a
    # pooled connection is far cheaper.
    options: dict[str, Any] = {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": 30}
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
    engine = create_async_engine(full, **options)
    if full.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        if not autocommit:
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


class Database:
    """The two engines plus the ways central talks to the database."""

    def __init__(self, engine: AsyncEngine, reader: AsyncEngine | None = None) -> None:
        self.engine = engine
        self.reader = reader or engine
        self.dialect: str = engine.dialect.name
        self._sqlite_writers = asyncio.Lock() if self.dialect == "sqlite" else None

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 8) -> Database:
        return cls(
            create_engine(url, pool_size=pool_size),
            create_engine(url, pool_size=pool_size, autocommit=True),
        )

    @asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[None]:
        if self._sqlite_writers is None:
            yield
        else:
            async with self._sqlite_writers:
                yield

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection whose statements each run on their own (no transaction)."""
        async with self.reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on exit, rolled back on an exception."""
        async with self._writer_turn(), self.engine.connect() as conn:
            await conn.execution_options(central_write=True)
            async with conn.begin():
                yield conn

    async def write_one(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        """Run one writing statement on its own (atomic by itself); returns its first row."""
        async with self._writer_turn(), self.reader.connect() as conn:
            result = await conn.execute(statement, params)
            return result.first() if result.returns_rows else None

    def insert_ignore(self, table: sa.Table) -> Any:
        """``INSERT … ON CONFLICT DO NOTHING`` for this backend (call ``.values`` on it)."""
        if self.dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return sqlite.insert(table).on_conflict_do_nothing()

    async def close(self) -> None:
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()


def is_unique_violation(exc: BaseException) -> bool:
    """True when ``exc`` is an IntegrityError from a unique constraint on either backend."""
    if not isinstance(exc, sa.exc.IntegrityError):
        return False
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate key" in text
