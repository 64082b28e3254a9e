"""Browser sessions for central's pages: server-side rows, a random id in a cookie, CSRF tokens.

Generic over a *realm* ("admin" for the HQ dashboard; the member portal will use its own), so
any page can reuse it:

- ``start(subject)`` creates a session and returns the cookie value (256 random bits; the table
  keeps only its SHA-256) and the session with its CSRF token;
- ``set_cookie`` sends it HttpOnly, SameSite=Strict, Path=/, and Secure when the request came
  over TLS;
- ``load(request)`` finds the session, enforcing the idle and the absolute expiry (the row is
  touched at most once a minute, so reading pages does not write on every request);
- ``require_csrf(request, session)`` checks the ``X-CSRF-Token`` header of every state-changing
  request against the session's token (and the Origin header, when the browser sends one);
- ``LoginThrottle`` counts failed logins per account and per address in the database, so the
  limit holds across worker processes and restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import sqlalchemy as sa
from aiohttp import web

from .clock import Clock, to_millis
from .db import Database
from .errors import Forbidden, RateLimited
from .models_dashboard import login_failures, web_sessions

CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
TOUCH_EVERY_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class WebSession:
    """One signed-in browser: who (realm + subject) and its CSRF token."""

    realm: str
    subject: str
    csrf_token: str
    created_at: int
    last_seen_at: int


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class WebSessions:
    """Sessions of one realm, with one cookie name and one pair of expiry limits."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        realm: str,
        cookie_name: str,
        idle_seconds: float,
        absolute_seconds: float,
    ) -> None:
        self._db = db
        self._clock = clock
        self.realm = realm
        self.cookie_name = cookie_name
        self._idle_ms = to_millis(idle_seconds)
        self._absolute_ms = to_millis(absolute_seconds)
        self.max_age = int(absolute_seconds)

    async def start(self, subject: str) -> tuple[str, WebSession]:
        """A new session for ``subject``: (the cookie value, the session)."""
        cookie = secrets.token_urlsafe(32)
        now = to_millis(self._clock.now())
        session = WebSession(
            realm=self.realm,
            subject=subject,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
        )
        async with self._db.write() as conn:
            # Only this realm's expired sessions: realms have limits of their own.
            await conn.execute(
                web_sessions.delete().where(
                    web_sessions.c.realm == self.realm,
                    sa.or_(
                        web_sessions.c.last_seen_at < now - self._idle_ms,
                        web_sessions.c.created_at < now - self._absolute_ms,
                    ),
                )
            )
            await conn.execute(
                web_sessions.insert().values(
                    id_hash=_digest(cookie),
                    realm=self.realm,
                    subject=subject,
                    csrf_token=session.csrf_token,
                    created_at=now,
                    last_seen_at=now,
                )
            )
        return cookie, session

    def _cookie(self, request: web.Request) -> str | None:
        value = request.cookies.get(self.cookie_name)
        if not value or len(value) > 100:
            return None
        return value

    async def load(self, request: web.Request) -> WebSession | None:
        """The request's live session of this realm, or None (no cookie, unknown, expired)."""
        cookie = self._cookie(request)
        if cookie is None:
            return None
        id_hash = _digest(cookie)
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(web_sessions).where(web_sessions.c.id_hash == id_hash))
            ).first()
        if row is None or row.realm != self.realm:
            return None
        now = to_millis(self._clock.now())
        if now - row.last_seen_at > self._idle_ms or now - row.created_at > self._absolute_ms:
            await self._db.write_one(web_sessions.delete().where(web_sessions.c.id_hash == id_hash))
            return None
        if now - row.last_seen_at > TOUCH_EVERY_MS:
            await self._db.write_one(
                web_sessions.update()
                .where(web_sessions.c.id_hash == id_hash)
                .values(last_seen_at=now)
            )
        return WebSession(
            realm=row.realm,
            subject=row.subject,
            csrf_token=row.csrf_token,
            created_at=row.created_at,
            last_seen_at=now,
        )

    async def end(self, request: web.Request) -> None:
        """Forget the request's session (logout); harmless without one."""
        cookie = self._cookie(request)
        if cookie is not None:
            await self._db.write_one(
                web_sessions.delete().where(web_sessions.c.id_hash == _digest(cookie))
            )

    async def end_all(self, subject: str) -> None:
        """Forget every session of ``subject`` (password change, user disabled)."""
        await self._db.write_one(
            web_sessions.delete().where(
                web_sessions.c.realm == self.realm, web_sessions.c.subject == subject
            )
        )

    def set_cookie(self, request: web.Request, response: web.StreamResponse, cookie: str) -> None:
        response.set_cookie(
            self.cookie_name,
            cookie,
            max_age=self.max_age,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )

    def clear_cookie(self, request: web.Request, response: web.StreamResponse) -> None:
        response.del_cookie(
            self.cookie_name, path="/", secure=request.secure, httponly=True, samesite="Strict"
        )


def require_csrf(request: web.Request, session: WebSession) -> None:
    """403 for a state-changing request without the session's CSRF token or from elsewhere."""
    if request.method in SAFE_METHODS:
        return
    require_same_origin(request)
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise Forbidden(f"missing or wrong {CSRF_HEADER}", code="csrf_failed")


def require_same_origin(request: web.Request) -> None:
    """403 when the browser says the request comes from another origin."""
    origin = request.headers.get("Origin")
    if origin is None:  # same-origin GETs, and clients that are not browsers
        return
    if urlsplit(origin).netloc != request.host:
        raise Forbidden("request from another origin", code="csrf_failed")


class LoginThrottle:
    """Failed logins per account and per address within a window, counted in the database."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        window_seconds: float = 900.0,
        per_account: int = 5,
        per_address: int = 20,
    ) -> None:
        self._db = db
        self._clock = clock
        self._window_ms = to_millis(window_seconds)
        self._limits = {"account": per_account, "address": per_address}

    @staticmethod
    def _keys(realm: str, account: str, address: str) -> dict[str, str]:
        return {"account": f"account:{realm}:{account}"[:200], "address": f"address:{address}"}

    async def check(self, realm: str, account: str, address: str) -> None:
        """429 while the account or the address has too many recent failures."""
        now = to_millis(self._clock.now())
        since = now - self._window_ms
        async with self._db.read() as conn:
            for scope, key in self._keys(realm, account, address).items():
                count, oldest = (
                    await conn.execute(
                        sa.select(sa.func.count(), sa.func.min(login_failures.c.at)).where(
                            login_failures.c.key == key, login_failures.c.at >= since
                        )
                    )
                ).one()
                if count >= self._limits[scope]:
                    retry = max(1.0, (oldest + self._window_ms - now) / 1000)
                    raise RateLimited(
                        f"too many failed logins for this {scope}; try again later",
                        retry_after=retry,
                        code="login_throttled",
                    )

    async def failed(self, realm: str, account: str, address: str) -> None:
        now = to_millis(self._clock.now())
        async with self._db.write() as conn:
            await conn.execute(
                login_failures.delete().where(login_failures.c.at < now - self._window_ms)
            )
            for key in self._keys(realm, account, address).values():
                await conn.execute(login_failures.insert().values(key=key, at=now))

    async def succeeded(self, realm: str, account: str) -> None:
        """A good password clears the account's failures (not the address's)."""
        key = self._keys(realm, account, "")["account"]
        await self._db.write_one(login_failures.delete().where(login_failures.c.key == key))
