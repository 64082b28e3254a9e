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

**The hot path** (identify: a few indexed look-ups and one recording insert per request)
skips SQLAlchemy's per-statement machinery. Its statements are built with SQLAlchemy once
(``Database.prepare``, ``Database.recorder``) and compiled for the driver; then:

* SQLite: one plain ``sqlite3`` connection per process, used right on the event loop (an
  indexed look-up takes microseconds, less than one hand-off to aiosqlite's thread). Look-ups
  run at once; recording inserts are queued and committed together at the end of the loop
  iteration, one transaction for all (group commit), and each caller is answered only after
  that COMMIT returned. So an answered record is as durable as any other write (WAL,
  ``synchronous=NORMAL``: it survives a crash of the process; a power cut may lose the last
  commits, as for every write). The loop never waits for SQLite: a batch that cannot take
  the write lock goes to a thread that waits for it, and checkpoints run in a thread too.
  See ``SqliteHotPath``.
* PostgreSQL: the same statements through a small asyncpg pool of its own (prepared per
  connection by asyncpg); PostgreSQL groups concurrent commits itself.

Driver errors are re-raised as SQLAlchemy's, so the HTTP layer answers them as before (503
when the database is unavailable).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import operator
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from queue import Empty, SimpleQueue
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .errors import CentralError

SQLITE_BUSY_TIMEOUT_MS = 10_000
# The hot-path connection's page cache and memory map (per process): a million members'
# cards and members indexes stay in memory.
SQLITE_CACHE_KIB: Final = 65_536
SQLITE_MMAP_BYTES: Final = 1 << 30
# WAL frames (pages) after which the checkpointer makes the log start over: 64 MiB of 4 KiB
# pages, a few seconds of identify at full speed. Also the size the WAL file is cut back to.
SQLITE_WAL_RESTART_FRAMES: Final = 16_384
SQLITE_WAL_LIMIT_BYTES: Final = 64 << 20
# How long the checkpointer waits for the loop to hold its commits before it gives up on a
# RESTART for this round (a loop that busy is better left alone).
HOLD_WAIT_SECONDS: Final = 1.0
# Jobs per group-commit transaction at most (each job is one small insert).
GROUP_COMMIT_MAX: Final = 512


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


# --- prepared statements -------------------------------------------------------------------


class Prepared:
    """A SQLAlchemy statement compiled once for the driver, run without SQLAlchemy.

    Rows come back as named tuples (``row.card_id``), with SQLAlchemy's result conversions
    applied (SQLite's 0/1 to booleans), like a ``Row`` from the engine.
    """

    __slots__ = (
        "_convert",
        "_defaults",
        "_fields",
        "_get",
        "_process",
        "_row",
        "_single",
        "sql",
        "statement",
    )

    def __init__(
        self, statement: Any, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> None:
        compiled = statement.compile(
            dialect=dialect, column_keys=list(column_keys) if column_keys else None
        )
        self.statement = statement
        self.sql = str(compiled)
        names = list(compiled.positiontup or ())
        self._defaults: dict[str, Any] = {}  # literal values in the statement (LIMIT 1)
        process: list[tuple[int, Any]] = []  # (position, the type's bind conversion)
        for position, name in enumerate(names):
            bind = compiled.binds[name]
            value = compiled.params.get(name)
            if not bind.required and value is not None:
                self._defaults[name] = value
            converter = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if converter is not None:
                process.append((position, converter))
        self._get = operator.itemgetter(*names) if names else None
        self._single = len(names) == 1
        self._process = tuple(process)
        columns = list(statement.exported_columns)
        self._fields = tuple(column.key for column in columns)
        self._row: Any = collections.namedtuple("Row", self._fields, rename=True)  # type: ignore[misc]
        converters = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
        self._convert = tuple(converters) if any(converters) else None

    def args(self, params: dict[str, Any]) -> list[Any]:
        """The positional arguments for ``params`` (literal defaults filled in)."""
        if self._get is None:
            return []
        if self._defaults:
            params = {**self._defaults, **params}
        try:
            values = self._get(params)
        except KeyError as exc:
            raise KeyError(f"missing parameter {exc} for {self.sql[:60]!r}") from None
        out = [values] if self._single else list(values)
        for position, converter in self._process:
            value = out[position]
            if value is not None:
                out[position] = converter(value)
        return out

    def row(self, raw: Sequence[Any]) -> Any:
        """A driver row as a named tuple."""
        if self._convert is None:
            return self._row._make(raw)
        return self._row._make(
            [f(v) if f is not None else v for f, v in zip(self._convert, raw, strict=True)]
        )


class Recorder:
    """How to write a row at most once: insert it unless a unique key clashes, else find it.

    ``Database.record`` runs it. The row's table needs a single integer primary key;
    ``existing`` is a prepared SELECT that finds the clashing row by its unique key.
    """

    def __init__(
        self,
        dialect: Dialect,
        table: sa.Table,
        column_keys: Sequence[str],
        existing: Prepared,
    ) -> None:
        (pk,) = table.primary_key.columns
        keys = list(column_keys)
        self.table = table
        self.existing = existing
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        # One row, its id returned (PostgreSQL; the engine when there is no hot path).
        self.insert = Prepared(
            insert(table).on_conflict_do_nothing().returning(pk), dialect, column_keys=keys
        )
        # PostgreSQL batches: one statement for all rows (``_PostgresHot``).
        self.pg_batch_sql = (
            _pg_batch_sql(dialect, table, pk, keys) if dialect.name == "postgresql" else ""
        )
        # SQLite batches: ids handed out under the write lock, one executemany for all rows.
        self.batch_sql = self.max_id_sql = self.ids_in_sql = ""
        if dialect.name == "sqlite":
            batch = (
                sqlite.insert(table)
                .on_conflict_do_nothing()
                .compile(dialect=dialect, column_keys=[pk.key, *keys])
            )
            if list(batch.positiontup or ()) != [pk.key, *keys]:
                raise ValueError(f"unexpected parameter order in {batch}")
            self.batch_sql = str(batch)
            self.max_id_sql = str(sa.select(sa.func.max(pk)).compile(dialect=dialect))
            self.ids_in_sql = str(
                sa.select(pk)
                .where(pk > sa.bindparam("low"), pk <= sa.bindparam("high"))
                .compile(dialect=dialect)
            )


def _pg_batch_sql(dialect: Dialect, table: sa.Table, pk: sa.Column[Any], keys: list[str]) -> str:
    """Insert many rows in one statement; one answer row per input row, in input order.

    The columns come as arrays (``$1`` … ``$n``, one per column). Each row gets its id from
    the table's sequence first, so that the answer can say which input rows were inserted
    (``inserted``) without relying on the order of RETURNING.
    """
    quote = dialect.identifier_preparer.quote
    columns = [table.c[key] for key in keys]
    names = [quote(column.name) for column in columns]
    # Arrays of the unsized types: the INSERT's own cast then checks lengths, as for one row.
    arrays = ", ".join(
        f"${n}::{re.sub(r'[(].*[)]', '', column.type.compile(dialect=dialect))}[]"
        for n, column in enumerate(columns, 1)
    )
    table_name, pk_name = quote(table.name), quote(pk.name)
    listed = ", ".join(names)
    sequence = f"pg_get_serial_sequence('{table.name}', '{pk.name}')"
    return (
        f"WITH input AS MATERIALIZED (SELECT nextval({sequence}) AS {pk_name}, t.* "
        f"FROM unnest({arrays}) WITH ORDINALITY AS t({listed}, ord)), "
        f"inserted AS (INSERT INTO {table_name} ({pk_name}, {listed}) "
        f"SELECT {pk_name}, {listed} FROM input ORDER BY ord "
        f"ON CONFLICT DO NOTHING RETURNING {pk_name}) "
        f"SELECT input.{pk_name}, inserted.{pk_name} IS NOT NULL FROM input "
        f"LEFT JOIN inserted ON inserted.{pk_name} = input.{pk_name} ORDER BY input.ord"
    )


# --- SQLite: one connection on the loop, group commit -----------------------------------------


def _wrap_sqlite(exc: sqlite3.Error, sql: str) -> sa.exc.DBAPIError:
    """A driver error as SQLAlchemy raises it (the HTTP layer maps those)."""
    kind: type[sa.exc.DBAPIError]
    if isinstance(exc, sqlite3.OperationalError):
        kind = sa.exc.OperationalError
    elif isinstance(exc, sqlite3.IntegrityError):
        kind = sa.exc.IntegrityError
    elif isinstance(exc, sqlite3.InterfaceError):
        kind = sa.exc.InterfaceError
    else:
        kind = sa.exc.DatabaseError
    return kind(sql, None, exc)


def sqlite_path(url: str) -> str | None:
    """The file behind a SQLite URL, or None for an in-memory or unusual one."""
    parsed = make_url(normalise_url(url))
    path = parsed.database
    if not path or path == ":memory:" or path.startswith("file:") or parsed.query:
        return None
    return path


# A queued write: the recorder, the row's arguments (without its id), the unique key's.
Write = tuple[Recorder, list[Any], list[Any]]
# Its result: (True, (True, new id) or (False, the existing raw row)) or (False, error).
Result = tuple[bool, Any]


class _CannotBegin(Exception):
    """BEGIN IMMEDIATE failed (the write lock is taken): nothing of the batch ran."""


def _write(conn: sqlite3.Connection, writes: list[Write]) -> list[Any]:
    """Insert ``writes`` inside the caller's transaction; one ``executemany`` per recorder.

    Ids are the table's largest id + 1, + 2, …: what SQLite would pick itself, taken while
    holding the write lock. A row that clashed with a stored one (or with an earlier row of
    the same batch) is not inserted; its id then stays unused and the stored row is read.
    """
    results: list[Any] = []
    start = 0
    while start < len(writes):
        recorder = writes[start][0]
        end = start + 1
        while end < len(writes) and writes[end][0] is recorder:
            end += 1
        group = writes[start:end]
        base = conn.execute(recorder.max_id_sql).fetchone()[0] or 0
        before = conn.total_changes
        conn.executemany(
            recorder.batch_sql, [[base + n, *args] for n, (_, args, _) in enumerate(group, 1)]
        )
        if conn.total_changes - before == len(group):
            results.extend((True, base + n) for n in range(1, len(group) + 1))
        else:
            found = conn.execute(recorder.ids_in_sql, (base, base + len(group))).fetchall()
            inserted = {row[0] for row in found}
            for n, (_, _, key) in enumerate(group, 1):
                if base + n in inserted:
                    results.append((True, base + n))
                else:
                    rows = conn.execute(recorder.existing.sql, key).fetchall()
                    results.append((False, rows[0] if rows else None))
        start = end
    return results


def _commit(conn: sqlite3.Connection, writes: list[Write]) -> list[Result]:
    """``writes`` in one transaction; if that fails, each again in a transaction alone.

    Raises ``_CannotBegin`` when the write lock cannot be had, and ``sqlite3.Error`` when the
    COMMIT fails (then nothing was written).
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise _CannotBegin(str(exc)) from exc
    try:
        values = _write(conn, writes)
    except Exception as exc:  # noqa: BLE001 - the row's caller gets its error, others go on
        conn.execute("ROLLBACK")
        if len(writes) == 1:
            return [(False, exc)]
        return [_commit(conn, [one])[0] for one in writes]
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return [(True, value) for value in values]


def _answer(answers: list[tuple[asyncio.Future[Any], Result]]) -> None:
    for future, (ok, value) in answers:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        elif isinstance(value, sqlite3.Error):
            future.set_exception(_wrap_sqlite(value, "group commit"))
        else:
            future.set_exception(value)


def _connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    return conn


Pending = tuple[asyncio.Future[Any], Write]


class RunningLoop:
    """The running loop, kept: Python 3.11's ``get_running_loop`` makes a ``getpid`` system
    call each time, and the hot path asks on every request. Call it to get the loop."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> asyncio.AbstractEventLoop:
        loop = self.current
        if loop is None or loop.is_closed():
            loop = self.current = asyncio.get_running_loop()
        return loop


class SqliteWriter:
    """One thread, one connection: batches that must wait for the write lock wait here.

    The fallback of ``SqliteHotPath`` when the write lock is taken (by another process, or
    by a transaction of the engine): this thread waits for it (``busy_timeout``) instead of
    the event loop. Batches queued meanwhile share one transaction; each future is answered
    after the COMMIT that made its row durable.
    """

    def __init__(self, path: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._queue: SimpleQueue[list[Pending] | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="central-sqlite-writer", daemon=True)
        self._thread.start()

    def submit(self, batch: list[Pending]) -> None:
        self._queue.put(batch)

    def close(self) -> None:
        """Finish every queued batch, then stop the thread (blocking: not on the loop)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = list(first)
            while len(batch) < GROUP_COMMIT_MAX:
                try:
                    more = self._queue.get_nowait()
                except Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.extend(more)
            results: list[Result]
            try:
                if conn is None:
                    conn = _connect(self._path, self._busy_timeout_ms)
                results = _commit(conn, [write for _, write in batch])
            except (sqlite3.Error, _CannotBegin) as exc:  # no lock in time, or no commit
                error = exc.__cause__ if isinstance(exc, _CannotBegin) else exc
                results = [(False, error)] * len(batch)
            self._deliver(batch, results)
        if conn is not None:
            conn.close()

    @staticmethod
    def _deliver(batch: list[Pending], results: list[Result]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Result]]] = {}
        for (future, _), result in zip(batch, results, strict=True):
            by_loop.setdefault(future.get_loop(), []).append((future, result))
        for loop, answers in by_loop.items():
            # A closed loop (RuntimeError) has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_answer, answers)


class _Checkpointer:
    """Copies the WAL back into the database file from a thread, never on the event loop.

    The loop's connection has automatic checkpoints off (a checkpoint writes and fsyncs the
    database file); this thread runs a PASSIVE checkpoint (which waits for no reader and no
    writer) at most every ``interval`` seconds while there are new commits.

    Under sustained load PASSIVE alone never lets the WAL start over: SQLite restarts the log
    only when a write finds every frame copied back, and the loop commits again long before
    a checkpoint ends. The WAL would then grow without bound, and every look-up and insert
    gets slower as it grows (identify's CPU per request rose by a quarter over 500 MB). So
    once the WAL holds ``restart_frames`` frames, a RESTART checkpoint follows while
    ``hold_writes`` keeps the loop's commits back (they stay queued; look-ups go on): it
    copies the little that the PASSIVE pass left, syncs, and the next commit starts the log
    over. Without that hold, RESTART would poll for the write lock between back-to-back
    commits and seldom get it.
    """

    def __init__(
        self,
        path: str,
        interval: float = 0.5,
        restart_frames: int = SQLITE_WAL_RESTART_FRAMES,
        hold_writes: Callable[[], contextlib.AbstractContextManager[bool]] | None = None,
    ) -> None:
        self._path = path
        self._interval = interval
        self._restart_frames = restart_frames
        self._hold_writes = hold_writes or (lambda: contextlib.nullcontext(True))
        self.restarts = 0  # RESTART checkpoints run (read by tests)
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="central-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def wrote(self) -> None:
        if not self._dirty.is_set():
            self._dirty.set()

    def close(self) -> None:
        self._stopping.set()
        self._dirty.set()
        self._thread.join()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):  # busy with another checkpointer: next time
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames < self._restart_frames or self._stopping.is_set():
                return
            with self._hold_writes() as held:
                if held:
                    conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                    self.restarts += 1

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            while True:
                self._dirty.wait()
                if self._stopping.is_set():
                    break
                self._dirty.clear()
                self._checkpoint(conn)
                self._stopping.wait(self._interval)
            self._checkpoint(conn)
        finally:
            conn.close()


class SqliteHotPath:
    """SQLite's hot path: one connection on the event loop for look-ups and group commit.

    Look-ups run right away, in one read transaction per loop iteration: taking and dropping
    SQLite's WAL read lock for each statement (two ``fcntl`` calls, the wal-index header, a
    journal check) costs about as much as the look-up itself. That transaction begins after
    the iteration's ``select`` returned, so a look-up sees every commit made before its
    request arrived; it ends with the iteration (a callback at the head of the next one) or
    before this connection writes, so no snapshot outlives an iteration.

    A write is queued (``submit``, which returns a future); the first one queued in a loop
    iteration schedules a flush at the end of that iteration, which inserts every row
    queued by then in one ``BEGIN IMMEDIATE`` … ``COMMIT`` (one ``executemany``, one WAL
    append: no fsync with ``synchronous=NORMAL``, no checkpoint: ``_Checkpointer`` does
    those in a thread). Each future is answered after that COMMIT returned. One row that
    fails does not fail the others: the batch is then retried row by row.

    Reading and writing on one connection keeps its page cache: SQLite drops a connection's
    cache whenever *another* connection committed, which with a separate reader would be
    after every batch. The connection never waits on the loop (``busy_timeout=0``): a
    look-up that finds the database busy is retried by the caller through the engine, and a
    batch that cannot take the write lock goes to ``SqliteWriter``, which waits in a thread.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._queue: list[Pending] = []
        self._scheduled = False
        self._reading = False  # a read transaction is open (``fetch``)
        self.loop = RunningLoop()  # the one loop that uses it
        self._held = False  # commits held back for a RESTART checkpoint (``hold_writes``)
        self._closed = False
        self._thread: SqliteWriter | None = None
        self._checkpointer: _Checkpointer | None = None
        self.checkpoint_interval = 0.5  # seconds; these two apply from the first connection
        self.wal_restart_frames = SQLITE_WAL_RESTART_FRAMES
        self.batches = 0  # transactions committed on the loop
        self.rows = 0
        self.handed_off = 0  # batches that went to the thread

    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self._closed:
                raise sqlite3.OperationalError("the database is closed")
            conn = _connect(self.path, 0)  # never wait on the loop
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            conn.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
            conn.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_LIMIT_BYTES}")
            self._conn = conn
            self._checkpointer = _Checkpointer(
                self.path, self.checkpoint_interval, self.wal_restart_frames, self.hold_writes
            )
        return self._conn

    def fetch(self, prepared: Prepared, args: list[Any]) -> list[Any]:
        conn = self.connection()
        if not self._reading:
            # One read transaction for the look-ups of this loop iteration, ended by the
            # next iteration's first callbacks (or by a flush, whichever comes first).
            conn.execute("BEGIN")
            self._reading = True
            self.loop().call_soon(self.end_read)
        return conn.execute(prepared.sql, args).fetchall()

    def end_read(self) -> None:
        """End the iteration's read transaction (before a write, and once per iteration)."""
        if self._reading:
            self._reading = False
            if self._conn is not None and self._conn.in_transaction:
                self._conn.execute("COMMIT")

    def submit(self, write: Write) -> asyncio.Future[Any]:
        loop = self.loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            closed = sqlite3.OperationalError("the database is closed")
            future.set_exception(_wrap_sqlite(closed, "group commit"))
            return future
        self._queue.append((future, write))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)
        return future

    @contextlib.contextmanager
    def hold_writes(self) -> Iterator[bool]:
        """(Checkpointer thread) keep the loop from committing while the body runs; yields
        False when the loop did not answer in time (then nothing is held)."""
        loop = self.loop.current
        if loop is None or loop.is_closed():
            yield False
            return
        holding = threading.Event()

        def hold() -> None:
            self._held = True
            holding.set()

        try:
            loop.call_soon_threadsafe(hold)
        except RuntimeError:  # the loop closed meanwhile
            yield False
            return
        try:
            yield holding.wait(HOLD_WAIT_SECONDS)
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        self._held = False
        if self._queue:
            self.flush()

    def flush(self, *, force: bool = False) -> None:
        """Commit everything queued (called by the loop; also at close, with ``force``)."""
        self.end_read()
        self._scheduled = False
        if self._held and not force:  # a RESTART checkpoint is running: ``_release`` flushes
            return
        batch, self._queue = self._queue, []
        while batch:
            part, batch = batch[:GROUP_COMMIT_MAX], batch[GROUP_COMMIT_MAX:]
            self._flush(part)

    def _flush(self, batch: list[Pending]) -> None:
        try:
            results = _commit(self.connection(), [write for _, write in batch])
        except _CannotBegin:
            if self._thread is None:
                self._thread = SqliteWriter(self.path)
            self._thread.submit(batch)
            self.handed_off += 1
            return
        except sqlite3.Error as exc:  # could not open or commit: nothing was written
            results = [(False, exc)] * len(batch)
        else:
            self.batches += 1
            self.rows += len(batch)
            if self._checkpointer is not None:
                self._checkpointer.wrote()
        _answer([(future, result) for (future, _), result in zip(batch, results, strict=True)])

    @property
    def wal_restarts(self) -> int:
        """RESTART checkpoints run so far (read by tests)."""
        return self._checkpointer.restarts if self._checkpointer is not None else 0

    def close(self) -> None:
        """Stop the threads (after their queued work) and close (blocking: not on the loop)."""
        self._closed = True
        if self._thread is not None:
            self._thread.close()
            self._thread = None
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --- PostgreSQL: asyncpg directly -----------------------------------------------------------


def _wrap_asyncpg(exc: BaseException, sql: str) -> BaseException:
    import asyncpg

    if isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError,
    ):
        return sa.exc.OperationalError(sql, None, exc)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return sa.exc.IntegrityError(sql, None, exc)
    if isinstance(exc, asyncpg.PostgresError):
        return sa.exc.DatabaseError(sql, None, exc)
    return exc


async def _no_reset(_conn: Any) -> None:
    """The hot path leaves no session state behind: skip asyncpg's reset round trip."""


PgPending = tuple[asyncio.Future[Any], Recorder, list[Any], list[Any]]


class _PostgresHot:
    """PostgreSQL's hot path: asyncpg directly, and recording inserts in batches.

    Rows recorded while a batch is on its way go into the next one: one statement (and
    one commit) for all of them, see ``_pg_batch_sql``. Each caller is answered after that
    statement returned (committed: it runs on its own). If a batch fails, its rows are
    tried one by one, so one bad row fails alone.
    """

    def __init__(self, connect_kwargs: dict[str, Any], size: int) -> None:
        self._kwargs = connect_kwargs
        self._size = size
        self._pool: Any = None
        self._opening: asyncio.Future[Any] | None = None
        self._queue: list[PgPending] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows = 0

    async def pool(self) -> Any:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            import asyncpg

            self._opening = asyncio.ensure_future(
                asyncpg.create_pool(
                    min_size=1, max_size=self._size, reset=_no_reset, **self._kwargs
                )
            )
        try:
            self._pool = await asyncio.shield(self._opening)
        except BaseException:
            self._opening = None
            raise
        return self._pool

    async def fetch(self, prepared: Prepared, args: list[Any]) -> Any:
        try:
            pool = self._pool or await self.pool()
            return await pool.fetchrow(prepared.sql, *args)
        except Exception as exc:
            raise _wrap_asyncpg(exc, prepared.sql) from exc

    async def record(self, recorder: Recorder, args: list[Any], key: list[Any]) -> tuple[bool, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        self._queue.append((future, recorder, args, key))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_all())
        return await future

    async def _flush_all(self) -> None:
        while self._queue:
            batch = self._queue[:GROUP_COMMIT_MAX]
            del self._queue[:GROUP_COMMIT_MAX]
            try:
                results = await self._batch(batch)
            except Exception:  # noqa: BLE001 - each row alone then: one bad row fails alone
                results = [await self._one(item) for item in batch]
            for (future, *_), (ok, value) in zip(batch, results, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    async def _batch(self, batch: list[PgPending]) -> list[tuple[bool, Any]]:
        pool = self._pool or await self.pool()
        results: list[tuple[bool, Any]] = []
        async with pool.acquire() as conn:
            start = 0
            while start < len(batch):
                recorder = batch[start][1]
                end = start + 1
                while end < len(batch) and batch[end][1] is recorder:
                    end += 1
                group = batch[start:end]
                columns = [list(c) for c in zip(*(args for _, _, args, _ in group), strict=True)]
                answers = await conn.fetch(recorder.pg_batch_sql, *columns)
                for (_, _, _, key), (new_id, inserted) in zip(group, answers, strict=True):
                    if inserted:
                        results.append((True, (True, new_id)))
                    else:
                        existing = await conn.fetchrow(recorder.existing.sql, *key)
                        results.append((True, (False, existing)))
                start = end
        self.batches += 1
        self.rows += len(batch)
        return results

    async def _one(self, item: PgPending) -> tuple[bool, Any]:
        _, recorder, args, key = item
        try:
            pool = self._pool or await self.pool()
            async with pool.acquire() as conn:
                row = await conn.fetchrow(recorder.insert.sql, *args)
                if row is not None:
                    return True, (True, row[0])
                return True, (False, await conn.fetchrow(recorder.existing.sql, *key))
        except Exception as exc:  # noqa: BLE001 - this row's caller gets it
            return False, _wrap_asyncpg(exc, recorder.insert.sql)

    async def close(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher  # what is queued is written (and answered)
            self._flusher = None
        pool, self._pool = self._pool, None
        if pool is None and self._opening is not None:
            try:
                pool = await self._opening
            except Exception:  # noqa: BLE001 - it never opened: nothing to close
                pool = None
        self._opening = None
        if pool is not None:
            await pool.close()


# --- the database ---------------------------------------------------------------------------


class Database:
    """The two engines plus the ways central talks to the database."""

    def __init__(
        self,
        engine: AsyncEngine,
        reader: AsyncEngine | None = None,
        *,
        hot_path: bool = True,
        pool_size: int = 8,
    ) -> None:
        self.engine = engine
        self.reader = reader or engine
        self.dialect: str = engine.dialect.name
        self._sqlite_writers = asyncio.Lock() if self.dialect == "sqlite" else None
        self._sqlite_hot: SqliteHotPath | None = None
        self._pg_hot: _PostgresHot | None = None
        if hot_path and self.dialect == "sqlite":
            path = sqlite_path(engine.url.render_as_string(hide_password=False))
            if path is not None:
                self._sqlite_hot = SqliteHotPath(path)
        elif hot_path and self.dialect == "postgresql" and engine.dialect.driver == "asyncpg":
            _, kwargs = engine.dialect.create_connect_args(engine.url)
            self._pg_hot = _PostgresHot(dict(kwargs), pool_size)

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 8, hot_path: bool = True) -> Database:
        return cls(
            create_engine(url, pool_size=pool_size),
            create_engine(url, pool_size=pool_size, autocommit=True),
            hot_path=hot_path,
            pool_size=pool_size,
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

    # --- the hot path ----------------------------------------------------------------------

    def prepare(self, statement: Any) -> Prepared:
        """Compile a SELECT once, for ``fetch_row``."""
        return Prepared(statement, self.engine.dialect)

    def recorder(self, table: sa.Table, column_keys: Sequence[str], existing: Prepared) -> Recorder:
        """Prepare ``record`` for rows of ``table`` that set ``column_keys``."""
        return Recorder(self.engine.dialect, table, column_keys, existing)

    async def fetch_row(self, query: Prepared, params: dict[str, Any]) -> Any:
        """The first row of a prepared SELECT, or None (one indexed look-up, no transaction)."""
        args = query.args(params)
        if self._sqlite_hot is not None:
            try:
                rows = self._sqlite_hot.fetch(query, args)
            except sqlite3.OperationalError:  # busy or locked: let a thread wait for it
                pass
            except sqlite3.Error as exc:
                raise _wrap_sqlite(exc, query.sql) from exc
            else:
                return query.row(rows[0]) if rows else None
        elif self._pg_hot is not None:
            record = await self._pg_hot.fetch(query, args)
            return query.row(record) if record is not None else None
        async with self.read() as conn:
            return (await conn.execute(query.statement, params)).first()

    async def record(
        self, recorder: Recorder, values: dict[str, Any], key: dict[str, Any]
    ) -> tuple[bool, Any]:
        """Insert one row unless it clashes with a unique key: (True, its id), else
        (False, the row that was there, found by ``key`` through ``recorder.existing``).

        Returns once the row is committed; on SQLite, rows recorded concurrently share one
        commit (see ``SqliteHotPath``).
        """
        args, key_args = recorder.insert.args(values), recorder.existing.args(key)
        if self._sqlite_hot is not None:
            inserted, value = await self._sqlite_hot.submit((recorder, args, key_args))
        elif self._pg_hot is not None:
            inserted, value = await self._pg_hot.record(recorder, args, key_args)
        else:
            row = await self.write_one(recorder.insert.statement, values)
            if row is not None:
                return True, row[0]
            async with self.read() as conn:
                return False, (await conn.execute(recorder.existing.statement, key)).first()
        if inserted:
            return True, value
        return False, recorder.existing.row(value) if value is not None else None

    @property
    def sqlite_hot_path(self) -> SqliteHotPath | None:
        """SQLite's hot path (its group-commit counters are read by tests)."""
        return self._sqlite_hot

    async def close(self) -> None:
        if self._sqlite_hot is not None:
            self._sqlite_hot.flush(force=True)  # what is still queued is committed (and answered)
            await asyncio.to_thread(self._sqlite_hot.close)
        if self._pg_hot is not None:
            await self._pg_hot.close()
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()


def is_unique_violation(exc: BaseException) -> bool:
    """True when ``exc`` is an IntegrityError from a unique constraint on either backend."""
    if not isinstance(exc, sa.exc.IntegrityError):
        return False
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate key" in text
