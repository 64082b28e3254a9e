"""The durable outbox: everything bound for central, written before it counts as accepted.

SQLite in WAL mode with ``synchronous=NORMAL``: a committed row survives the process being
killed (``kill -9``) at any instant; a power cut may lose the last commits. Rows are keyed
(``event_id`` for identifications) so writing the same thing twice keeps one row, and central
records by the same key, so a retry after a crash never records twice.

Bounded by count and age: when full, the oldest rows are dropped and counted (the count is
persisted), because a gateway that is offline for weeks must not fill its disk.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('dropped', 0);
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    created: float
    attempts: int
    size: int  # bytes of the stored JSON payload


class Outbox:
    def __init__(
        self, path: Path, *, max_items: int = 200_000, max_age: float = 7 * 86400.0
    ) -> None:
        self.path = path
        self.max_items = max_items
        self.max_age = max_age
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._depth: int = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def put(self, kind: str, key: str, payload: dict[str, Any], now: float | None = None) -> bool:
        """Store one item; False when an item with this key is already waiting."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO outbox (kind, key, payload, created) VALUES (?, ?, ?, ?)",
            (
                kind,
                key,
                json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
                time.time() if now is None else now,
            ),
        )
        if cursor.rowcount == 0:
            return False
        self._depth += 1
        if self._depth > self.max_items:
            self._drop_oldest(self._depth - self.max_items)
        return True

    def _drop_oldest(self, count: int) -> None:
        with self._transaction():
            deleted = self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                (count,),
            ).rowcount
            self._db.execute("UPDATE meta SET value = value + ? WHERE name = 'dropped'", (deleted,))
        self._depth -= deleted

    def expire(self, now: float | None = None) -> int:
        """Drop (and count) items older than ``max_age``."""
        cutoff = (time.time() if now is None else now) - self.max_age
        with self._transaction():
            deleted = self._db.execute("DELETE FROM outbox WHERE created < ?", (cutoff,)).rowcount
            self._db.execute("UPDATE meta SET value = value + ? WHERE name = 'dropped'", (deleted,))
        self._depth -= deleted
        return deleted

    def peek(self, limit: int) -> list[OutboxItem]:
        """The oldest ``limit`` items, in the order they were written."""
        rows = self._db.execute(
            "SELECT id, kind, key, payload, created, attempts FROM outbox ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [OutboxItem(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], len(r[3])) for r in rows]

    def ack(self, ids: list[int]) -> None:
        """Central has these: remove them."""
        if not ids:
            return
        with self._transaction():
            deleted = self._db.executemany(
                "DELETE FROM outbox WHERE id = ?", [(i,) for i in ids]
            ).rowcount
        self._depth -= max(0, deleted)

    def ack_keys(self, keys: list[str]) -> None:
        """Central recorded these by key (a live resolution): remove them."""
        if not keys:
            return
        with self._transaction():
            deleted = self._db.executemany(
                "DELETE FROM outbox WHERE key = ?", [(k,) for k in keys]
            ).rowcount
        self._depth -= max(0, deleted)

    def failed(self, ids: list[int]) -> None:
        if ids:
            with self._transaction():
                self._db.executemany(
                    "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids]
                )

    @property
    def depth(self) -> int:
        return int(self._depth)

    @property
    def dropped(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE name = 'dropped'").fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
