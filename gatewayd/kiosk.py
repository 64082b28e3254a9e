"""The self-checkout kiosk page: ``/kiosk?terminal=…`` (docs/kiosk.md).

A browser opening a page cannot send the API's bearer token, so a kiosk signs in once with a
per-terminal key: ``/kiosk?terminal=k1&key=…`` is checked against ``kiosk_key_sha256`` in the
terminal's ``[[terminals]]`` entry (only the hash is stored) and answered with a redirect to
the same URL without the key, setting an HttpOnly, SameSite=Strict cookie that names the
terminal. The cookie is an HMAC under a secret kept in ``state_dir/kiosk.secret``, so it
survives gateway restarts, and it includes the key's hash, so changing the key signs every
kiosk of that terminal out.

Every ``/kiosk`` route checks that cookie itself (the bearer-token guard leaves them alone);
``/kiosk/events`` streams only the signed-in terminal's identify events, reduced to what the
screen shows: never a full token, phone or ID number, never a payment code.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from gatewayd.events import utc_timestamp
from gatewayd.protocols.tokens import PAYMENT_CODE_KINDS, TokenKind, mask
from gatewayd.sse import SseMessage

if TYPE_CHECKING:
    from gatewayd.config import TerminalConfig
    from gatewayd.daemon import Gateway

log = structlog.get_logger("gatewayd.kiosk")
COOKIE = "gatewayd_kiosk"
COOKIE_PATH = "/kiosk"
KEEPALIVE_SECONDS = 15.0
TERMINAL_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
ASSETS = {"kiosk.js": "text/javascript", "kiosk.css": "text/css"}
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}
MEMBER_FIELDS = ("name", "level", "points", "balance_fen", "phone_masked")


def hash_key(key: str) -> str:
    """The value to put in ``kiosk_key_sha256`` for ``key`` (hex SHA-256 of its UTF-8)."""
    return hashlib.sha256(key.encode()).hexdigest()


def is_kiosk_path(path: str) -> bool:
    """Routes that authenticate with the kiosk cookie instead of the bearer token."""
    return path == COOKIE_PATH or path.startswith(COOKIE_PATH + "/")


class KioskSessions:
    """Issues and checks kiosk cookies: ``v1~<terminal>~<issued unix>~<hmac hex>``."""

    def __init__(self, state_dir: Path) -> None:
        self.secret_path = state_dir / "kiosk.secret"
        self._secret: bytes | None = None

    def _key(self) -> bytes:
        """The HMAC secret, created once (mode 0600) and kept across restarts. A missing or
        damaged file (e.g. cut short by a crash) is replaced, signing every kiosk out."""
        if self._secret is None:
            try:
                secret = bytes.fromhex(self.secret_path.read_text().strip())
            except (OSError, ValueError):
                secret = b""
            if len(secret) < 32:
                secret = secrets.token_bytes(32)
                self.secret_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.secret_path.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(secret.hex())
                tmp.replace(self.secret_path)
            self._secret = secret
        return self._secret

    def _mac(self, terminal: str, key_sha256: str, issued: int) -> str:
        message = f"{terminal}\n{key_sha256}\n{issued}".encode()
        return hmac.new(self._key(), message, hashlib.sha256).hexdigest()

    def issue(self, terminal: str, key_sha256: str, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        return f"v1~{terminal}~{issued}~{self._mac(terminal, key_sha256, issued)}"

    def check(self, cookie: str, config: TerminalConfig, now: float | None = None) -> bool:
        """True for a cookie issued for ``config``'s terminal and current key, not expired."""
        if config.kiosk_key_sha256 is None:
            return False
        parts = cookie.split("~")
        if len(parts) != 4 or parts[0] != "v1" or parts[1] != config.id:
            return False
        if not (parts[2].isascii() and parts[2].isdigit()):
            return False
        issued = int(parts[2])
        age = (now if now is not None else time.time()) - issued
        if age < -300 or age > config.kiosk_session_days * 86400:
            return False
        expected = self._mac(config.id, config.kiosk_key_sha256, issued)
        return hmac.compare_digest(parts[3].encode(), expected.encode())


KIOSK: web.AppKey[KioskSessions] = web.AppKey("kiosk_sessions")


def _gateway(request: web.Request) -> Gateway:
    from gatewayd.http_api import GATEWAY  # http_api mounts these routes: import late

    return request.app[GATEWAY]


def _kiosk_config(request: web.Request, terminal: str | None) -> TerminalConfig | None:
    """The terminal's settings when it has a kiosk key, else None."""
    if terminal is None or not TERMINAL_ID.match(terminal):
        return None
    for config in _gateway(request).settings.terminals:
        if config.id == terminal and config.kiosk_key_sha256:
            return config
    return None


def _signed_in(request: web.Request, config: TerminalConfig | None) -> bool:
    cookie = request.cookies.get(COOKIE)
    return config is not None and cookie is not None and request.app[KIOSK].check(cookie, config)


def _cookie_terminal(request: web.Request) -> TerminalConfig | None:
    """The terminal named by a valid cookie, for routes without ``?terminal=`` (assets)."""
    cookie = request.cookies.get(COOKIE, "")
    parts = cookie.split("~")
    config = _kiosk_config(request, parts[1] if len(parts) == 4 else None)
    return config if _signed_in(request, config) else None


def _message_page(status: int, title: str, text: str) -> web.Response:
    body = (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html", headers=PAGE_HEADERS)


@functools.cache
def _read_static(name: str) -> str:
    return resources.files("gatewayd").joinpath("static", "kiosk", name).read_text("utf-8")


async def kiosk_page(request: web.Request) -> web.StreamResponse:
    """The page; with ``key=`` the one-time sign-in that sets the cookie and drops the key."""
    terminal = request.query.get("terminal")
    config = _kiosk_config(request, terminal)
    if config is None:
        return _message_page(
            404, "Kiosk not enabled", "This terminal has no kiosk_key_sha256 in gatewayd.toml."
        )
    lang = request.query.get("lang")
    lang = lang if lang in ("zh", "en") else config.kiosk_lang
    key = request.query.get("key")
    if key is not None:
        assert config.kiosk_key_sha256 is not None
        if not hmac.compare_digest(hash_key(key).encode(), config.kiosk_key_sha256.encode()):
            log.warning("kiosk_key_rejected", terminal=config.id, remote=request.remote)
            return _message_page(403, "Wrong kiosk key", "The key does not match this terminal.")
        kept = [(name, value) for name, value in request.query.items() if name != "key"]
        clean = str(request.rel_url.with_query(kept))
        response = web.Response(status=303, headers={**PAGE_HEADERS, "Location": clean})
        response.set_cookie(
            COOKIE,
            request.app[KIOSK].issue(config.id, config.kiosk_key_sha256),
            max_age=config.kiosk_session_days * 86400,
            path=COOKIE_PATH,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        log.info("kiosk_signed_in", terminal=config.id, remote=request.remote)
        return response
    if not _signed_in(request, config):
        return _message_page(
            401,
            "Kiosk not signed in",
            f"Open /kiosk?terminal={config.id}&key=<kiosk key> once on this kiosk.",
        )
    page = _read_static("index.html")
    values = {
        "lang": lang,
        "terminal": config.id,
        "display_seconds": f"{config.kiosk_display_seconds:g}",
    }
    for name, value in values.items():
        page = page.replace("{{" + name + "}}", html.escape(value, quote=True))
    return web.Response(text=page, content_type="text/html", headers=PAGE_HEADERS)


async def kiosk_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        return _message_page(404, "Not found", "No such kiosk file.")
    if _cookie_terminal(request) is None:
        return _message_page(401, "Kiosk not signed in", "Sign this kiosk in first.")
    return web.Response(
        text=_read_static(name),
        content_type=ASSETS[name],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


async def kiosk_session(request: web.Request) -> web.Response:
    """Whether this browser is still signed in for ``?terminal=`` (the page asks when its
    stream keeps failing, to tell "gateway away" from "signed out")."""
    config = _kiosk_config(request, request.query.get("terminal"))
    if not _signed_in(request, config):
        return web.json_response(
            {"error": {"code": "unauthorized", "message": "kiosk not signed in"}}, status=401
        )
    assert config is not None
    return web.json_response({"terminal": config.id}, headers={"Cache-Control": "no-store"})


def kiosk_view(data: str) -> str:
    """An identify event's JSON reduced to what the kiosk screen shows. Tokens are masked to
    their last 4 characters; payment codes are never sent at all."""
    event: dict[str, Any] = json.loads(data)
    token = event.get("token") or {}
    kind = str(token.get("kind", "unknown"))
    try:
        is_payment_code = TokenKind(kind) in PAYMENT_CODE_KINDS
    except ValueError:
        is_payment_code = False
    member = event.get("member")
    view = {
        "event_id": event.get("event_id"),
        "ts": event.get("ts"),
        "phase": event.get("phase"),
        "method": event.get("method"),
        "kind": kind,
        "token_masked": None if is_payment_code else mask(str(token.get("value", ""))),
        "reason": token.get("reason"),
        "source": event.get("source"),
        "member": ({k: member.get(k) for k in MEMBER_FIELDS} if isinstance(member, dict) else None),
    }
    return json.dumps(view, ensure_ascii=False)


def _frame(message: SseMessage) -> bytes | None:
    """The SSE frame for the kiosk; None for what it does not show (device states…)."""
    if message.event != "identify":
        return None
    return f"id: {message.id}\nevent: identify\ndata: {kiosk_view(message.data)}\n\n".encode()


async def kiosk_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events for the signed-in terminal only; ``Last-Event-ID`` (or
    ``?last_event_id=`` for a fresh EventSource) resumes, also across gateway restarts."""
    config = _kiosk_config(request, request.query.get("terminal"))
    if not _signed_in(request, config):
        return web.json_response(
            {"error": {"code": "unauthorized", "message": "kiosk not signed in"}}, status=401
        )
    assert config is not None
    hub = _gateway(request).sse
    queue = hub.subscribe()
    last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    backlog = hub.replay_after(last_id)  # taken with the subscription, before any await
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    sent = 0
    try:
        await response.prepare(request)
        hello = {"now": utc_timestamp(), "terminal": config.id, "boot": hub.boot}
        await response.write(f"retry: 1000\nevent: hello\ndata: {json.dumps(hello)}\n\n".encode())
        for message in backlog:
            frame = _frame(message) if message.terminal == config.id else None
            if frame is not None:
                await response.write(frame)
            sent = message.seq
        while True:
            try:
                next_message = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                # A named event, not a comment: the page's watchdog sees it.
                await response.write(b"event: ping\ndata: {}\n\n")
                continue
            if next_message is None:
                break
            if next_message.seq <= sent or next_message.terminal != config.id:
                continue
            frame = _frame(next_message)
            if frame is not None:
                await response.write(frame)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe(queue)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def add_kiosk_routes(app: web.Application, state_dir: Path) -> None:
    """Mount ``/kiosk``, ``/kiosk/events``, ``/kiosk/session`` and the page's two files."""
    app[KIOSK] = KioskSessions(state_dir)
    app.router.add_get("/kiosk", kiosk_page)
    app.router.add_get("/kiosk/events", kiosk_events)
    app.router.add_get("/kiosk/session", kiosk_session)
    app.router.add_get("/kiosk/{name}", kiosk_asset)
