"""Recent resolutions, so known cards and phones still resolve while central is down.

Keyed by a keyed hash of the token (HMAC-SHA256 with a random per-gateway secret kept in the
state folder), never the token itself. Payment and consumption codes are never cached: they
are single-use or short-lived, and a stale answer would charge or identify the wrong person.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from gatewayd.protocols.tokens import PAYMENT_CODE_KINDS, TokenKind

NEVER_CACHED = PAYMENT_CODE_KINDS | {TokenKind.CONSUMPTION_CODE, TokenKind.UNKNOWN}


def _secret(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret)
        return secret


class ResolutionCache:
    def __init__(self, state_dir: Path, ttl: float = 24 * 3600.0) -> None:
        self.ttl = ttl
        self._key = _secret(state_dir / "cache.key")
        self._db = sqlite3.connect(state_dir / "cache.sqlite3", isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS resolutions (digest TEXT PRIMARY KEY, "
            "member TEXT NOT NULL, stored REAL NOT NULL)"
        )

    def digest(self, kind: TokenKind, value: str) -> str:
        return hmac.new(self._key, f"{kind.value}:{value}".encode(), hashlib.sha256).hexdigest()

    def put(self, kind: TokenKind, value: str, member: dict[str, Any],
            now: float | None = None) -> bool:
        if kind in NEVER_CACHED:
            return False
        self._db.execute(
            "INSERT OR REPLACE INTO resolutions (digest, member, stored) VALUES (?, ?, ?)",
            (self.digest(kind, value), json.dumps(member, ensure_ascii=False),
             time.time() if now is None else now),
        )
        return True

    def get(self, kind: TokenKind, value: str, now: float | None = None) -> dict[str, Any] | None:
        if kind in NEVER_CACHED:
            return None
        row = self._db.execute("SELECT member, stored FROM resolutions WHERE digest = ?",
                               (self.digest(kind, value),)).fetchone()
        if row is None:
            return None
        if (time.time() if now is None else now) - row[1] > self.ttl:
            self.forget(kind, value)
            return None
        member: dict[str, Any] = json.loads(row[0])
        return member

    def forget(self, kind: TokenKind, value: str) -> None:
        self._db.execute("DELETE FROM resolutions WHERE digest = ?", (self.digest(kind, value),))

    def prune(self, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - self.ttl
        return self._db.execute("DELETE FROM resolutions WHERE stored < ?", (cutoff,)).rowcount

    def close(self) -> None:
        self._db.close()
