"""Admin web sessions over real HTTP: login, cookie flags, CSRF, expiry, throttling, logout.

Central runs on a real socket over SQLite and PostgreSQL; cookies are carried by hand (the
client's cookie jar refuses cookies for IP addresses), so every flag can be asserted.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gatewayd.central.admin_users import add_admin_user, verify_admin_user
from gatewayd.central.db import Database
from gatewayd.central.web_sessions import WebSessions
from tests.central.conftest import Central

PASSWORD = "correct horse battery"
COOKIE = "gatewayd_admin_session"


async def _user(central: Central, name: str = "boss") -> None:
    await add_admin_user(central.services.db, central.clock, name, PASSWORD)


async def _login(
    central: Central, name: str = "boss", password: str = PASSWORD, **headers: str
) -> tuple[int, Any, dict[str, str]]:
    status, body, resp = await central.call(
        "POST",
        "/v1/dashboard/login",
        key=None,
        json={"name": name, "password": password},
        headers=headers,
    )
    jar = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie", []):
        jar.load(header)
    return (
        status,
        body,
        {k: v.value for k, v in jar.items()}
        | {"_raw": ";".join(resp.headers.getall("Set-Cookie", []))},
    )


def _cookie(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={cookies[COOKIE]}"}


async def test_login_sets_a_strict_http_only_cookie_and_answers_the_csrf_token(
    central: Central,
) -> None:
    await _user(central)
    status, body, cookies = await _login(central)
    assert status == 200 and body["user"] == "boss" and len(body["csrf_token"]) >= 40
    raw = cookies["_raw"]
    assert "HttpOnly" in raw and "SameSite=Strict" in raw and "Path=/" in raw
    assert "Secure" not in raw  # plain HTTP here; over TLS the flag is set (request.secure)
    status, session, _ = await central.call(
        "GET", "/v1/dashboard/session", key=None, headers=_cookie(cookies)
    )
    assert status == 200 and session == body
    status, data, _ = await central.call(
        "GET", "/v1/dashboard/overview", key=None, headers=_cookie(cookies)
    )
    assert status == 200 and data["counts"]["total"] == 2


async def test_bad_passwords_and_unknown_users_are_refused_alike(central: Central) -> None:
    await _user(central)
    for name, password in (("boss", "wrong password!"), ("nobody", PASSWORD)):
        status, body, cookies = await _login(central, name, password)
        assert (status, body["error"]["code"]) == (401, "bad_login")
        assert COOKIE not in cookies
    with capture_logs() as logs:  # a password typed into the name field stays out of logs
        assert (await _login(central, "Secret-Pa55word-typed", PASSWORD))[0] == 401
    failed = [e for e in logs if e["event"] == "dashboard_login_failed"]
    assert len(failed) == 1 and "Secret-Pa55word" not in str(logs)
    status, body, _ = await central.call("GET", "/v1/dashboard/overview", key=None)
    assert (status, body["error"]["code"]) == (401, "missing_key")
    status, body, _ = await central.call(
        "GET", "/v1/dashboard/overview", key=None, headers={"Cookie": f"{COOKIE}=forged"}
    )
    assert (status, body["error"]["code"]) == (401, "no_session")


async def test_state_changes_need_the_csrf_token_and_the_same_origin(central: Central) -> None:
    await _user(central)
    _, body, cookies = await _login(central)
    rule = {
        "name": "offline",
        "kind": "gateway_offline",
        "threshold": 5,
        "recipients": [{"channel": "sms", "address": "13800138000"}],
    }
    headers = _cookie(cookies)
    for extra in ({}, {"X-CSRF-Token": "guess"}):
        status, answer, _ = await central.call(
            "POST", "/v1/alert-rules", key=None, json=rule, headers=headers | extra
        )
        assert (status, answer["error"]["code"]) == (403, "csrf_failed")
    token = {"X-CSRF-Token": body["csrf_token"]}
    status, answer, _ = await central.call(
        "POST",
        "/v1/alert-rules",
        key=None,
        json=rule,
        headers=headers | token | {"Origin": "http://evil.example"},
    )
    assert (status, answer["error"]["code"]) == (403, "csrf_failed")
    status, created, _ = await central.call(
        "POST", "/v1/alert-rules", key=None, json=rule, headers=headers | token
    )
    assert status == 201 and created["kind"] == "gateway_offline"
    status, _, _ = await central.call("GET", "/v1/alert-rules", key=None, headers=headers)
    assert status == 200  # reading needs no token


async def test_sessions_expire_when_idle_and_in_any_case_after_the_maximum(
    central: Central,
) -> None:
    await _user(central)
    idle = central.services.settings.session_idle
    maximum = central.services.settings.session_max
    _, _, cookies = await _login(central)
    central.clock.advance(idle + 1)
    status, _, _ = await central.call(
        "GET", "/v1/dashboard/session", key=None, headers=_cookie(cookies)
    )
    assert status == 401
    _, _, cookies = await _login(central)
    elapsed = 0.0
    while elapsed + idle / 2 < maximum:
        central.clock.advance(idle / 2)
        elapsed += idle / 2
        status, _, _ = await central.call(
            "GET", "/v1/dashboard/session", key=None, headers=_cookie(cookies)
        )
        assert status == 200, elapsed  # kept alive by use
    central.clock.advance(maximum - elapsed + 1)  # used within the idle limit, yet too old
    status, _, _ = await central.call(
        "GET", "/v1/dashboard/session", key=None, headers=_cookie(cookies)
    )
    assert status == 401


async def test_one_realm_never_expires_another_realms_sessions(central: Central) -> None:
    """A member signing in to the portal (short idle limit) keeps HQ admins signed in."""
    portal_like = WebSessions(
        central.services.db,
        central.clock,
        realm="member",
        cookie_name="member_session",
        idle_seconds=60,
        absolute_seconds=3600,
    )
    await _user(central)
    _, _, cookies = await _login(central)
    central.clock.advance(120)  # past the member realm's idle limit, within the admin one
    await portal_like.start("member:1")
    status, _, _ = await central.call(
        "GET", "/v1/dashboard/session", key=None, headers=_cookie(cookies)
    )
    assert status == 200


async def test_logins_are_throttled_per_account_and_per_address(central: Central) -> None:
    await _user(central)
    await _user(central, "other")
    for _ in range(5):
        assert (await _login(central, password="wrong password!"))[0] == 401
    status, body, cookies = await _login(central)  # even the right password now
    assert (status, body["error"]["code"]) == (429, "login_throttled")
    assert COOKIE not in cookies
    assert (await _login(central, "other"))[0] == 200  # another account from the same address
    for n in range(15):
        await _login(central, f"ghost{n}", "wrong password!")
    status, body, _ = await _login(central, "other")  # 20 failures from this address
    assert (status, body["error"]["code"]) == (429, "login_throttled")
    central.clock.advance(901)
    assert (await _login(central))[0] == 200


async def test_logout_ends_the_session_on_the_server(central: Central) -> None:
    await _user(central)
    _, body, cookies = await _login(central)
    headers = _cookie(cookies)
    status, _, _ = await central.call("POST", "/v1/dashboard/logout", key=None, headers=headers)
    assert status == 403  # logging out is a state change too: CSRF token required
    token = {"X-CSRF-Token": body["csrf_token"]}
    status, _, resp = await central.call(
        "POST", "/v1/dashboard/logout", key=None, headers=headers | token
    )
    assert status == 204 and f"{COOKIE}=" in resp.headers["Set-Cookie"]
    status, _, _ = await central.call("GET", "/v1/dashboard/session", key=None, headers=headers)
    assert status == 401


async def test_keys_still_work_and_gateway_keys_are_refused(central: Central) -> None:
    status, _, _ = await central.call("GET", "/v1/dashboard/overview")
    assert status == 200
    status, body, _ = await central.call("GET", "/v1/dashboard/overview", "gw-1")
    assert (status, body["error"]["code"]) == (403, "admin_only")


@pytest.mark.parametrize("page", ["/dashboard/", "/dashboard/gateway?id=gw-1", "/dashboard/alerts"])
async def test_pages_redirect_to_login_without_a_session(central: Central, page: str) -> None:
    async with central.http.get(central.url + page, allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/dashboard/login"
    await _user(central)
    _, _, cookies = await _login(central)
    async with central.http.get(central.url + page, headers=_cookie(cookies)) as resp:
        assert resp.status == 200
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert "<script" in await resp.text()


def test_admin_user_add_command(tmp_path: Path) -> None:
    """``gatewayd central admin-user add NAME --password-stdin`` (the password never in argv)."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    env = {**os.environ, "GATEWAYD_CENTRAL_SECRET": "s"}

    def run(*args: str, password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gatewayd", "central", *args, "--db", url],
            input=password + "\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    assert run("migrate", password="").returncode == 0
    added = run("admin-user", "add", "alice", "--password-stdin", password=PASSWORD)
    assert added.returncode == 0, added.stderr
    short = run("admin-user", "add", "bob", "--password-stdin", password="short")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    again = run("admin-user", "add", "alice", "--password-stdin", password=PASSWORD)
    assert again.returncode == 1 and "exists" in again.stderr

    async def check() -> tuple[int | None, int | None]:
        db = Database.from_url(url)
        try:
            return (
                await verify_admin_user(db, "alice", PASSWORD),
                await verify_admin_user(db, "alice", PASSWORD + "x"),
            )
        finally:
            await db.close()

    good, bad = asyncio.run(check())
    assert good is not None and bad is None
