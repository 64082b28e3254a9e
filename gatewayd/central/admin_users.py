"""HQ admin users: a name and an argon2id-hashed password, for the dashboard's login.

Admin API keys stay the way scripts authenticate; people log in with a password and get a web
session (``web_sessions.py``). Verification runs on a thread: argon2 is deliberately slow and
must not stall the event loop. An unknown name is checked against a dummy hash so that the
answer takes as long as for a known one (no probing for user names by timing).
"""

from __future__ import annotations

import asyncio
import re
from typing import Final

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .clock import Clock, to_millis
from .db import Database
from .errors import Conflict, Invalid
from .models_dashboard import admin_users
from .schemas import ID_PATTERN

MIN_PASSWORD_LENGTH: Final = 10
MAX_PASSWORD_LENGTH: Final = 1024
_HASHER: Final = PasswordHasher()
_DUMMY_HASH: Final = _HASHER.hash("not a real password, only for equal timing")
_NAME: Final = re.compile(ID_PATTERN)


def check_new_password(password: str) -> None:
    """Refuse passwords too short to resist guessing (or absurdly long)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(
            f"password must have at least {MIN_PASSWORD_LENGTH} characters", code="weak_password"
        )
    if len(password) > MAX_PASSWORD_LENGTH or "\x00" in password:
        raise Invalid("password too long or contains NUL", code="invalid_password")


async def add_admin_user(db: Database, clock: Clock, name: str, password: str) -> int:
    """Create an admin user; returns its id (409 if the name is taken)."""
    if not _NAME.fullmatch(name):
        raise Invalid("name: 1-64 of A-Z a-z 0-9 _ . -", code="invalid_name")
    check_new_password(password)
    password_hash = await asyncio.to_thread(_HASHER.hash, password)
    try:
        async with db.write() as conn:
            user_id = await conn.scalar(
                admin_users.insert()
                .values(name=name, password_hash=password_hash, created_at=to_millis(clock.now()))
                .returning(admin_users.c.id)
            )
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"admin user {name} exists", code="admin_user_exists") from exc
    assert user_id is not None
    return int(user_id)


def _matches(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_admin_user(db: Database, name: str, password: str) -> int | None:
    """The user's id when ``name`` exists, is enabled and ``password`` is right; else None."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return None
    async with db.read() as conn:
        row = (
            await conn.execute(
                sa.select(
                    admin_users.c.id, admin_users.c.password_hash, admin_users.c.disabled_at
                ).where(admin_users.c.name == name)
            )
        ).first()
    stored = row.password_hash if row is not None else _DUMMY_HASH
    ok = await asyncio.to_thread(_matches, stored, password)
    if row is None or row.disabled_at is not None or not ok:
        return None
    return int(row.id)


async def admin_user_name(db: Database, user_id: int) -> str | None:
    """The name of an enabled admin user (None once disabled or deleted)."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                sa.select(admin_users.c.name, admin_users.c.disabled_at).where(
                    admin_users.c.id == user_id
                )
            )
        ).first()
    if row is None or row.disabled_at is not None:
        return None
    return str(row.name)
