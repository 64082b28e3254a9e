"""API keys: bearer tokens for gateways (one store each) and for HQ admins.

Keys are 256-bit random strings shown once at creation; central stores their SHA-256 (a slow
hash buys nothing for a key nobody can guess). Verified keys are cached for a minute per
process, so a revocation takes effect within ``CACHE_SECONDS``. A minute covers a gateway's
30-second heartbeat, so a fleet's steady traffic never looks a key up again; the cache holds
every key of a large chain.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Final, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .clock import Clock, to_millis
from .db import Database
from .errors import Forbidden, Unauthenticated
from .models import api_keys, gateways

Role = Literal["admin", "gateway"]
KEY_PREFIXES: Final[dict[str, str]] = {"admin": "cka_", "gateway": "ckg_"}
CACHE_SECONDS: Final = 60.0
CACHE_SIZE: Final = 100_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an admin, or a gateway acting for its one store."""

    role: Role
    key_id: int
    gateway_id: str | None = None
    store_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this operation needs an admin key", code="admin_only")

    def require_store(self, store_id: str) -> None:
        """Admins act for any store; a gateway only for its own."""
        if not self.is_admin and self.store_id != store_id:
            raise Forbidden("this key acts only for its own store", code="other_store")

    def require_gateway(self, gateway_id: str) -> None:
        if not self.is_admin and self.gateway_id != gateway_id:
            raise Forbidden("this key acts only for its own gateway", code="other_gateway")


def new_key(role: Role) -> str:
    """A fresh API key; the prefix tells people which kind it is."""
    return KEY_PREFIXES[role] + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def store_key(
    conn: AsyncConnection,
    role: Role,
    name: str,
    clock: Clock,
    gateway_id: str | None = None,
) -> tuple[int, str]:
    """Create a key inside the caller's transaction; returns (key id, the key in clear)."""
    key = new_key(role)
    key_id = await conn.scalar(
        api_keys.insert()
        .values(
            key_hash=hash_key(key),
            prefix=key[:8],
            role=role,
            gateway_id=gateway_id,
            name=name,
            created_at=to_millis(clock.now()),
        )
        .returning(api_keys.c.id)
    )
    assert key_id is not None
    return key_id, key


async def create_admin_key(db: Database, name: str, clock: Clock) -> tuple[int, str]:
    """Bootstrap or add an admin key (``gatewayd central admin-key create``)."""
    async with db.write() as conn:
        return await store_key(conn, "admin", name, clock)


class Authenticator:
    """Resolves ``Authorization: Bearer <key>`` to a ``Principal``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise Unauthenticated("missing Authorization: Bearer <key>", code="missing_key")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key or len(key) > 200:
            raise Unauthenticated("expected Authorization: Bearer <key>", code="bad_scheme")
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        principal = await self._load(digest)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[digest] = (now, principal)
        return principal

    async def _load(self, digest: str) -> Principal:
        query = (
            sa.select(
                api_keys.c.id,
                api_keys.c.role,
                api_keys.c.gateway_id,
                api_keys.c.revoked_at,
                gateways.c.store_id,
            )
            .select_from(api_keys.outerjoin(gateways, gateways.c.id == api_keys.c.gateway_id))
            .where(api_keys.c.key_hash == digest)
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None or row.revoked_at is not None:
            raise Unauthenticated("unknown or revoked key", code="bad_key")
        if row.role == "admin":
            return Principal(role="admin", key_id=row.id)
        return Principal(
            role="gateway", key_id=row.id, gateway_id=row.gateway_id, store_id=row.store_id
        )
