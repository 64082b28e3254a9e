"""The HQ dashboard: its pages, login/logout, JSON feeds, live stream and alert rules.

Pages are static files under ``static/dashboard/`` that fetch the JSON endpoints below; a
page without a session redirects to the login page. The JSON endpoints take an admin web
session (cookie, plus ``X-CSRF-Token`` on state changes) or an admin key (scripts). The live
stream (``GET /v1/dashboard/stream``) is Server-Sent Events polled from the database each
second, so it works the same with several worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any, Final, Literal

from aiohttp import web
from pydantic import Field

from gatewayd.protocols.tokens import mask

from .admin_users import admin_user_name, verify_admin_user
from .alerts import AlertRuleCreate, AlertRuleList, AlertRuleOut, IncidentList, IncidentOut
from .api import (
    ID_QUERY,
    Operation,
    QueryParam,
    add_page,
    add_static_files,
    parse_body,
    path_int,
    respond,
    services,
    session_admin,
)
from .auth import Principal
from .dashboard import STATES, ChangeCursor
from .errors import Invalid, Unauthenticated
from .logs import get_logger
from .schemas import Body, Out
from .web_sessions import require_same_origin

log = get_logger(__name__)
STATIC: Final = Path(__file__).with_name("static") / "dashboard"
STREAM_TICK: Final = 1.0
STREAM_MAX_SECONDS: Final = 300.0
MAX_PER_PAGE: Final = 200
PAGE_PATTERN: Final = "^[1-9][0-9]{0,5}$"
PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
GatewayState = Literal["online", "stale", "offline", "never_seen"]


class LoginRequest(Body):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(Out):
    user: str
    csrf_token: str = Field(description="send as X-CSRF-Token with every state-changing request")


class DeviceOut(Out):
    id: str
    state: str
    since: str | None = Field(description="when the device entered this state")


class GatewaySummary(Out):
    id: str
    name: str
    store: str
    store_name: str
    state: GatewayState
    last_seen_at: str | None
    version: str | None
    uptime_s: int | None
    backlog: int = Field(description="items waiting in the gateway's outbox")
    event_rate: float | None = Field(description="identify events per minute")
    last_identification_at: str | None
    devices: list[DeviceOut]
    devices_bad: int = Field(description="devices failed or offline")


class Counts(Out):
    online: int
    stale: int
    offline: int
    never_seen: int
    total: int
    devices_bad: int = Field(description="gateways with a failed or offline device")


class StoreRef(Out):
    id: str
    name: str


class Overview(Out):
    generated_at: str
    counts: Counts
    open_alerts: int
    stores: list[StoreRef]
    matching: int = Field(description="gateways matching the filter (all pages)")
    page: int
    per_page: int
    items: list[GatewaySummary]


class GatewayDetail(GatewaySummary):
    generated_at: str
    counters: dict[str, int]
    events_total: int
    dropped: int
    recent_errors: list[dict[str, Any]]
    history: list[dict[str, Any]]
    incidents: list[IncidentOut]


# --- authentication for pages and the stream -------------------------------------------------


async def _admin(request: web.Request) -> Principal:
    if "Authorization" in request.headers:
        found = await services(request).auth.authenticate(request.headers["Authorization"])
    else:
        found = await session_admin(request)
    found.require_admin()
    return found


def _page(name: str) -> Any:
    async def serve(request: web.Request) -> web.StreamResponse:
        if name != "login.html" and await services(request).admin_sessions.load(request) is None:
            raise web.HTTPFound("/dashboard/login")
        return web.FileResponse(STATIC / name, headers=PAGE_HEADERS)

    return serve


async def _to_overview(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/dashboard/")


def add_dashboard_pages(app: web.Application) -> None:
    """Mount the pages and their static assets (scripts and styles only; no data)."""
    add_page(app, "/dashboard", _to_overview)
    add_page(app, "/dashboard/", _page("index.html"))
    add_page(app, "/dashboard/gateway", _page("gateway.html"))
    add_page(app, "/dashboard/alerts", _page("alerts.html"))
    add_page(app, "/dashboard/login", _page("login.html"))
    add_static_files(app, "/dashboard/static", STATIC)
    add_page(app, "/v1/dashboard/stream", stream)


# --- login -----------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    data = await parse_body(request, LoginRequest)
    require_same_origin(request)
    svc = services(request)
    address = request.remote or "unknown"
    await svc.login_throttle.check("admin", data.name, address)
    user_id = await verify_admin_user(svc.db, data.name, data.password)
    if user_id is None:
        await svc.login_throttle.failed("admin", data.name, address)
        # Masked: a password typed into the name field must not land in the log.
        log.warning("dashboard_login_failed", user=mask(data.name), address=address)
        raise Unauthenticated("wrong name or password", code="bad_login")
    await svc.login_throttle.succeeded("admin", data.name)
    cookie, session = await svc.admin_sessions.start(str(user_id))
    log.info("dashboard_login", user=data.name, address=address)
    response = respond(SessionOut, {"user": data.name, "csrf_token": session.csrf_token})
    svc.admin_sessions.set_cookie(request, response, cookie)
    return response


async def current_session(request: web.Request) -> web.Response:
    svc = services(request)
    session = await svc.admin_sessions.load(request)
    if session is None:
        raise Unauthenticated("not signed in", code="no_session")
    name = await admin_user_name(svc.db, int(session.subject))
    if name is None:
        await svc.admin_sessions.end(request)
        raise Unauthenticated("this user is disabled", code="no_session")
    return respond(SessionOut, {"user": name, "csrf_token": session.csrf_token})


async def logout(request: web.Request) -> web.Response:
    svc = services(request)
    await svc.admin_sessions.end(request)
    response = web.Response(status=204)
    svc.admin_sessions.clear_cookie(request, response)
    return response


# --- feeds -----------------------------------------------------------------------------------


def _int_query(request: web.Request, name: str, default: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not re.fullmatch(PAGE_PATTERN, text) or not 1 <= int(text) <= high:
        raise Invalid(f"{name}: a whole number from 1 to {high}", code="invalid_request")
    return int(text)


async def overview(request: web.Request) -> web.Response:
    query = request.query
    state = query.get("state")
    if state is not None and state not in STATES:
        raise Invalid(f"state: one of {', '.join(STATES)}", code="invalid_request")
    store = query.get("store")
    if store is not None and not ID_QUERY.fullmatch(store):
        raise Invalid("store: not a valid store id", code="invalid_request")
    search = query.get("q")
    if search is not None and (not 1 <= len(search) <= 100 or "\x00" in search):
        raise Invalid("q: 1 to 100 characters, no NUL", code="invalid_request")
    problems = query.get("problems")
    if problems not in (None, "true", "false"):
        raise Invalid("problems: true or false", code="invalid_request")
    data = await services(request).dashboard.overview(
        state=state,
        store=store,
        search=search,
        problems=problems == "true",
        page=_int_query(request, "page", 1, 100_000),
        per_page=_int_query(request, "per_page", 50, MAX_PER_PAGE),
    )
    return respond(Overview, data)


async def gateway_detail(request: web.Request) -> web.Response:
    detail = await services(request).dashboard.gateway(request.match_info["gateway_id"])
    return respond(GatewayDetail, detail)


async def stream(request: web.Request) -> web.StreamResponse:
    """SSE: an ``changes`` event each second with the counts and the changed gateways.

    With ``?gateway=ID`` only that gateway, sent whenever it heartbeats. Streams end after
    five minutes; browsers reconnect by themselves (and are authenticated afresh)."""
    await _admin(request)
    gateway = request.query.get("gateway")
    if gateway is not None and not ID_QUERY.fullmatch(gateway):
        raise Invalid("gateway: not a valid gateway id", code="invalid_request")
    dashboard = services(request).dashboard
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAM_MAX_SECONDS
    cursor = ChangeCursor(since=dashboard.now())
    await dashboard.changes(cursor, gateway)  # what is already there is not a change
    with contextlib.suppress(ConnectionResetError):  # the browser left
        while loop.time() < deadline:
            await asyncio.sleep(STREAM_TICK)
            changes = await dashboard.changes(cursor, gateway)
            await response.write(f"event: changes\ndata: {json.dumps(changes)}\n\n".encode())
    return response


# --- alert rules -----------------------------------------------------------------------------


async def create_rule(request: web.Request) -> web.Response:
    data = await parse_body(request, AlertRuleCreate)
    return respond(AlertRuleOut, await services(request).alerts.create_rule(data), 201)


async def list_rules(request: web.Request) -> web.Response:
    return respond(AlertRuleList, {"items": await services(request).alerts.list_rules()})


async def disable_rule(request: web.Request) -> web.Response:
    rule = await services(request).alerts.disable_rule(path_int(request, "rule_id"))
    return respond(AlertRuleOut, rule)


async def list_incidents(request: web.Request) -> web.Response:
    open_only = request.query.get("open")
    if open_only not in (None, "true", "false"):
        raise Invalid("open: true or false", code="invalid_request")
    items = await services(request).alerts.incidents(
        open_only=open_only == "true", limit=_int_query(request, "limit", 100, 1000)
    )
    return respond(IncidentList, {"items": items})


_ADMIN: Final[dict[str, Any]] = {"auth": "admin", "cookie": True, "tag": "dashboard"}
OPERATIONS = (
    Operation(
        method="POST",
        path="/v1/dashboard/login",
        handler=login,
        summary="Sign in to the dashboard: sets the session cookie, answers the CSRF token",
        tag="dashboard",
        request=LoginRequest,
        response=SessionOut,
        auth="public",
        errors=(401, 403, 429),
    ),
    Operation(
        method="GET",
        path="/v1/dashboard/session",
        handler=current_session,
        summary="The signed-in user and the session's CSRF token",
        tag="dashboard",
        response=SessionOut,
        auth="public",
        errors=(401,),
    ),
    Operation(
        method="POST",
        path="/v1/dashboard/logout",
        handler=logout,
        summary="Sign out (ends the session)",
        status=204,
        **_ADMIN,
    ),
    Operation(
        method="GET",
        path="/v1/dashboard/overview",
        handler=overview,
        summary="Counts per state and one page of gateways with their health",
        response=Overview,
        errors=(422,),
        query=(
            QueryParam(
                name="state",
                description="online, stale, offline or never_seen",
                pattern="^(online|stale|offline|never_seen)$",
            ),
            QueryParam(name="store", description="only this store's gateways"),
            QueryParam(
                name="q",
                description="search in gateway and store ids and names",
                pattern=r"^[\s\S]{1,100}$",
            ),
            QueryParam(
                name="problems",
                description="true: only gateways with a bad device",
                pattern="^(true|false)$",
            ),
            QueryParam(name="page", description="page number, from 1", pattern=PAGE_PATTERN),
            QueryParam(
                name="per_page",
                description="gateways per page (1-200, default 50)",
                pattern=PAGE_PATTERN,
            ),
        ),
        **_ADMIN,
    ),
    Operation(
        method="GET",
        path="/v1/dashboard/gateways/{gateway_id}",
        handler=gateway_detail,
        summary="One gateway: devices, counters, recent errors, heartbeat history, incidents",
        response=GatewayDetail,
        str_params=("gateway_id",),
        **_ADMIN,
    ),
    Operation(
        method="POST",
        path="/v1/alert-rules",
        handler=create_rule,
        summary="Add an alert rule (gateway_offline, device_failed, backlog_over)",
        request=AlertRuleCreate,
        response=AlertRuleOut,
        status=201,
        errors=(404,),
        **_ADMIN,
    ),
    Operation(
        method="GET",
        path="/v1/alert-rules",
        handler=list_rules,
        summary="Every alert rule",
        response=AlertRuleList,
        **_ADMIN,
    ),
    Operation(
        method="DELETE",
        path="/v1/alert-rules/{rule_id}",
        handler=disable_rule,
        summary="Disable an alert rule (kept for its history; open incidents resolve)",
        response=AlertRuleOut,
        int_params=("rule_id",),
        **_ADMIN,
    ),
    Operation(
        method="GET",
        path="/v1/alert-incidents",
        handler=list_incidents,
        summary="Alert history, newest first: fired and resolved incidents",
        response=IncidentList,
        errors=(422,),
        query=(
            QueryParam(
                name="open", description="true: only incidents still open", pattern="^(true|false)$"
            ),
            QueryParam(
                name="limit",
                description="at most this many (1-1000, default 100)",
                pattern=PAGE_PATTERN,
            ),
        ),
        **_ADMIN,
    ),
)
