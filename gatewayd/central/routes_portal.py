"""The member portal over HTTP: its pages and the JSON endpoints under ``/portal/api``.

Pages are static files in ``static/portal/`` (no inline script, no external resources); a
page without a member session redirects to ``/portal/login``. The endpoints take the member
session cookie only (never an API key) and act for that member alone; every state-changing
call needs the session's ``X-CSRF-Token``. Every answer under ``/portal`` carries the
security headers below (strict CSP, no framing, no referrer, ``Cache-Control: no-store``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

from aiohttp import web
from pydantic import Field

from .api import Operation, QueryParam, add_page, add_static_files, parse_body, respond, services
from .clock import iso, to_millis
from .errors import Invalid, Unauthenticated
from .portal import REALM, Portal, qr_svg
from .schemas import Body, Gender, IsoDate, Name, Out
from .web_sessions import WebSession, require_csrf, require_same_origin

STATIC: Final = Path(__file__).with_name("static") / "portal"
SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
PAGES: Final = {
    "/portal/": "index.html",
    "/portal/codes": "codes.html",
    "/portal/profile": "profile.html",
}
MAX_ITEMS: Final = 100
Mobile = Annotated[str, Field(pattern=r"^(?:\+86)?1[3-9][0-9]{9}$", description="a mobile number")]


# --- bodies ------------------------------------------------------------------------------------


class PortalLogin(Body):
    account: str = Field(min_length=1, max_length=64, description="card number or mobile phone")
    password: str = Field(min_length=1, max_length=1024)


class PortalSession(Out):
    member_id: int
    name: str
    csrf_token: str = Field(description="send as X-CSRF-Token with every state-changing request")


class PortalProfile(Body):
    """The fields a member may change themselves (never level, points or balance)."""

    name: Name = Field(default=None)  # type: ignore[assignment]
    gender: Gender | None = None
    birthday: IsoDate | None = None
    address: Annotated[str, Field(max_length=500)] | None = None
    email: Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    custom: dict[str, str | int | float | bool | None] | None = Field(
        default=None,
        description="member-editable custom fields by key (null clears); others: 422",
    )


class PortalCustomField(Out):
    """One of the chain's member fields, as the profile page shows it."""

    key: str
    label: str
    type: str = Field(description="text, number, choice, date or boolean")
    required: bool
    choices: list[str] | None = Field(description="choice fields only")
    editable: bool = Field(description="the member may change it (else shown read-only)")
    value: str | int | float | bool | None


class PortalMe(Out):
    id: int
    name: str
    phone: str | None
    gender: str | None
    birthday: str | None
    address: str | None
    email: str | None
    level: str
    points: int
    balance_fen: int
    earned_points: int
    card_number: str | None = Field(description="the main card's number")
    custom_fields: list[PortalCustomField] = Field(
        default_factory=list, description="the chain's custom member fields and their values"
    )


class PasswordChange(Body):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=6, max_length=128)


class PhoneCodeRequest(Body):
    phone: Mobile


class PhoneCodeSent(Out):
    phone_masked: str
    expires_in_seconds: int


class PhoneConfirm(Body):
    phone: Mobile
    code: str = Field(pattern=r"^[0-9]{6}$", description="the 6 digits sent by SMS")


class LedgerItem(Out):
    id: int
    account: str = Field(description="points, stored_value, earned, count_card or time_card")
    amount: int = Field(description="signed; fen for stored_value")
    balance_after: int
    kind: str
    store: str
    order_id: int | None
    created_at: str


class LedgerList(Out):
    items: list[LedgerItem]


class OrderPaymentItem(Out):
    method: str
    amount_fen: int
    points: int


class OrderItem(Out):
    id: int
    store: str
    store_name: str | None
    kind: str
    total_fen: int
    points_earned: int
    refunded_fen: int
    payments: list[OrderPaymentItem]
    created_at: str


class OrderList(Out):
    items: list[OrderItem]


class MemberCodeOut(Out):
    member_code: str = Field(description="the main card's fixed member code (96…)")
    card_number: str
    qr: str = Field(description="QR code of member_code as an SVG data: URI")


class PortalCodeOut(Out):
    code: str = Field(description="consumption code (97…), single use")
    expires_at: str
    expires_in_seconds: int
    qr: str = Field(description="QR code of the code as an SVG data: URI")


# --- sessions ----------------------------------------------------------------------------------


def _portal(request: web.Request) -> Portal:
    return services(request).portal


async def _session(request: web.Request) -> tuple[int, WebSession]:
    """The signed-in member (401 without a live session; 403 without the CSRF token)."""
    portal = _portal(request)
    session = await portal.sessions.load(request)
    if session is None:
        raise Unauthenticated("sign in first", code="no_session")
    require_csrf(request, session)
    member_id = int(session.subject.removeprefix(f"{REALM}:"))
    if not await portal.is_active(member_id):
        await portal.sessions.end(request)
        raise Unauthenticated("this membership is no longer active", code="no_session")
    return member_id, session


def _limit(request: web.Request) -> int:
    text = request.query.get("limit", "20")
    if not text.isdigit() or not 1 <= int(text) <= MAX_ITEMS:
        raise Invalid(f"limit: a whole number from 1 to {MAX_ITEMS}", code="invalid_request")
    return int(text)


async def _start(request: web.Request, member_id: int, status: int = 200) -> web.Response:
    portal = _portal(request)
    cookie, session = await portal.sessions.start(f"{REALM}:{member_id}")
    me = await portal.me(member_id)
    body = {"member_id": member_id, "name": me["name"], "csrf_token": session.csrf_token}
    response = respond(PortalSession, body, status)
    portal.sessions.set_cookie(request, response, cookie)
    return response


# --- handlers ----------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    data = await parse_body(request, PortalLogin)
    require_same_origin(request)
    address = request.remote or "unknown"
    member_id = await _portal(request).login(data.account, data.password, address)
    return await _start(request, member_id)


async def current_session(request: web.Request) -> web.Response:
    member_id, session = await _session(request)
    me = await _portal(request).me(member_id)
    body = {"member_id": member_id, "name": me["name"], "csrf_token": session.csrf_token}
    return respond(PortalSession, body)


async def logout(request: web.Request) -> web.Response:
    await _session(request)
    portal = _portal(request)
    await portal.sessions.end(request)
    response = web.Response(status=204)
    portal.sessions.clear_cookie(request, response)
    return response


async def me(request: web.Request) -> web.Response:
    member_id, _ = await _session(request)
    return respond(PortalMe, await _portal(request).me(member_id))


async def ledger_list(request: web.Request) -> web.Response:
    member_id, _ = await _session(request)
    items = await _portal(request).ledger(member_id, _limit(request))
    return respond(LedgerList, {"items": items})


async def order_list(request: web.Request) -> web.Response:
    member_id, _ = await _session(request)
    items = await _portal(request).orders(member_id, _limit(request))
    return respond(OrderList, {"items": items})


async def update_profile(request: web.Request) -> web.Response:
    member_id, _ = await _session(request)
    data = await parse_body(request, PortalProfile)
    if "name" in data.model_fields_set and data.name is None:
        raise Invalid("name cannot be empty", code="invalid_request")
    fields = data.model_dump(exclude_unset=True)
    return respond(PortalMe, await _portal(request).update_profile(member_id, fields))


async def change_password(request: web.Request) -> web.Response:
    member_id, _ = await _session(request)
    data = await parse_body(request, PasswordChange)
    address = request.remote or "unknown"
    await _portal(request).change_password(
        member_id, data.current_password, data.new_password, address
    )
    # Every session of the member ended (other phones signed out); this browser gets a new one.
    return await _start(request, member_id)


async def request_phone_code(request: web.Request) -> web.Response:
    member_id, _ = await _session(request)
    data = await parse_body(request, PhoneCodeRequest)
    phone = data.phone.removeprefix("+86")
    seconds = await _portal(request).request_phone_code(member_id, phone)
    body = {"phone_masked": phone[:3] + "****" + phone[-4:], "expires_in_seconds": seconds}
    return respond(PhoneCodeSent, body, 202)


async def confirm_phone(request: web.Request) -> web.Response:
    member_id, _ = await _session(request)
    data = await parse_body(request, PhoneConfirm)
    phone = data.phone.removeprefix("+86")
    return respond(PortalMe, await _portal(request).confirm_phone(member_id, phone, data.code))


async def member_code(request: web.Request) -> web.Response:
    member_id, _ = await _session(request)
    return respond(MemberCodeOut, await _portal(request).member_code(member_id))


async def consumption_code(request: web.Request) -> web.Response:
    member_id, _ = await _session(request)
    svc = services(request)
    svc.issue_limit.hit(f"code/{member_id}")
    issued = await _portal(request).consumption_code(member_id)
    now_ms = to_millis(svc.clock.now())
    body = {
        "code": issued.code,
        "expires_at": iso(issued.expires_at_ms),
        "expires_in_seconds": max(0, (issued.expires_at_ms - now_ms) // 1000),
        "qr": qr_svg(issued.code),
    }
    return respond(PortalCodeOut, body, 201)


# --- pages -------------------------------------------------------------------------------------


def _page(name: str) -> Any:
    async def serve(request: web.Request) -> web.StreamResponse:
        signed_in = await _portal(request).sessions.load(request) is not None
        if name == "login.html" and signed_in:
            raise web.HTTPFound("/portal/")
        if name != "login.html" and not signed_in:
            raise web.HTTPFound("/portal/login")
        return web.FileResponse(STATIC / name)

    return serve


async def _to_home(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/portal/")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/portal" or request.path.startswith("/portal/"):
        response.headers.update(SECURITY_HEADERS)


def add_portal_pages(app: web.Application) -> None:
    """Mount the pages, their assets and the security headers of everything under /portal."""
    add_page(app, "/portal", _to_home)
    for path, name in PAGES.items():
        add_page(app, path, _page(name))
    add_page(app, "/portal/login", _page("login.html"))
    add_static_files(app, "/portal/static", STATIC)
    app.on_response_prepare.append(_security_headers)


_MEMBER: Final[dict[str, Any]] = {"auth": "public", "tag": "portal", "errors": (401, 403)}
API: Final = "/portal/api"
LIMIT = QueryParam(name="limit", description="at most this many, newest first (1-100, 20)")
OPERATIONS = (
    Operation(
        method="POST",
        path=API + "/login",
        handler=login,
        summary="Member sign-in with card number or mobile phone and password",
        description=(
            "Sets the member session cookie (HttpOnly, SameSite=Strict, Secure over TLS) and "
            "answers the CSRF token. Wrong account and wrong password answer the same 401 "
            "bad_login; failures are throttled per account and per address (429)."
        ),
        tag="portal",
        request=PortalLogin,
        response=PortalSession,
        auth="public",
        errors=(401, 403, 422, 429),
    ),
    Operation(
        method="GET",
        path=API + "/session",
        handler=current_session,
        summary="The signed-in member and the session's CSRF token",
        response=PortalSession,
        **_MEMBER,
    ),
    Operation(
        method="POST",
        path=API + "/logout",
        handler=logout,
        summary="Sign out (ends the session)",
        status=204,
        **_MEMBER,
    ),
    Operation(
        method="GET",
        path=API + "/me",
        handler=me,
        summary="The member's profile, points, stored value and main card number",
        response=PortalMe,
        **_MEMBER,
    ),
    Operation(
        method="GET",
        path=API + "/ledger",
        handler=ledger_list,
        summary="The member's latest ledger entries (points, stored value, passes)",
        response=LedgerList,
        query=(LIMIT,),
        tag="portal",
        auth="public",
        errors=(401, 403, 422),
    ),
    Operation(
        method="GET",
        path=API + "/orders",
        handler=order_list,
        summary="The member's latest orders and how they were paid",
        response=OrderList,
        query=(LIMIT,),
        tag="portal",
        auth="public",
        errors=(401, 403, 422),
    ),
    Operation(
        method="PATCH",
        path=API + "/profile",
        handler=update_profile,
        summary=(
            "Change name, gender, birthday, address, email or member-editable custom fields "
            "(null clears, but name)"
        ),
        request=PortalProfile,
        response=PortalMe,
        **_MEMBER,
    ),
    Operation(
        method="POST",
        path=API + "/password",
        handler=change_password,
        summary="Change the password (needs the current one); other sessions end",
        description="Answers a new session (cookie and CSRF token) for this browser.",
        request=PasswordChange,
        response=PortalSession,
        tag="portal",
        auth="public",
        errors=(401, 403, 429),
    ),
    Operation(
        method="POST",
        path=API + "/phone/code",
        handler=request_phone_code,
        summary="Send a 6-digit code by SMS to the new phone (valid 10 minutes, 5 tries)",
        request=PhoneCodeRequest,
        response=PhoneCodeSent,
        status=202,
        tag="portal",
        auth="public",
        errors=(401, 403, 409, 429, 503),
    ),
    Operation(
        method="POST",
        path=API + "/phone",
        handler=confirm_phone,
        summary="Change the phone to the one the code was sent to",
        request=PhoneConfirm,
        response=PortalMe,
        tag="portal",
        auth="public",
        errors=(401, 403, 404, 409, 410),
    ),
    Operation(
        method="GET",
        path=API + "/member-code",
        handler=member_code,
        summary="The main card's fixed member code and its QR code (SVG)",
        response=MemberCodeOut,
        tag="portal",
        auth="public",
        errors=(401, 403, 404),
    ),
    Operation(
        method="POST",
        path=API + "/consumption-code",
        handler=consumption_code,
        summary="A fresh consumption code (valid 10 minutes, single use) and its QR code",
        response=PortalCodeOut,
        status=201,
        tag="portal",
        auth="public",
        errors=(401, 403, 429),
    ),
)
