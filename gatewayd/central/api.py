"""HTTP plumbing shared by the route modules: the operation table, bodies, keys, services.

Each route module lists ``Operation``s; ``app.py`` mounts them and ``openapi.py`` documents
them from the same table, so the document cannot drift from what is served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ValidationError

from .alerts import Alerts
from .answers import BodyLimit, Handler, error_response, guard, refuse_oversized
from .auth import Authenticator, Principal
from .catalog import Catalog
from .clock import Clock
from .codes import ConsumptionCodes
from .config import CentralSettings
from .custom_fields import CustomFields
from .dashboard import Dashboard
from .db import Database
from .errors import Invalid, NotFound, PayloadTooLarge, Unauthenticated
from .fleet_store import FleetStore
from .gateway_link import GatewayLink
from .identify import Identifier
from .imports import MAX_BYTES as IMPORT_MAX_BYTES
from .imports import Importer
from .jsonwire import json_response
from .member_events import MemberEvents
from .members import MemberService
from .notifications import Notifications
from .notify_dispatch import Campaigns, NotifyLoops
from .portal import Portal
from .pricing import Pricing
from .ratelimit import TokenBucketLimiter
from .recharge import Programme
from .registry import Registry
from .reports import Reports
from .schemas import ID_PATTERN, MAX_ROW_ID
from .search import MemberSearch
from .service_plans import ServicePlans
from .staff_gifts import StaffGifts
from .web_sessions import LoginThrottle, WebSessions, require_csrf

Auth = Literal["public", "any", "admin"]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, kw_only=True)
class Services:
    """Everything a handler needs; built once per process in the app's cleanup context."""

    settings: CentralSettings
    clock: Clock
    db: Database
    http: aiohttp.ClientSession
    auth: Authenticator
    members: MemberService
    registry: Registry
    codes: ConsumptionCodes
    identifier: Identifier
    link: GatewayLink
    identify_limit: TokenBucketLimiter
    redeem_limit: TokenBucketLimiter
    issue_limit: TokenBucketLimiter
    events: MemberEvents
    notifications: Notifications
    service_plans: ServicePlans
    campaigns: Campaigns
    notify_loops: NotifyLoops
    fleet: FleetStore
    catalog: Catalog
    pricing: Pricing
    dashboard: Dashboard
    alerts: Alerts
    admin_sessions: WebSessions
    login_throttle: LoginThrottle
    programme: Programme
    # Member management (issue 8).
    custom_fields: CustomFields
    member_search: MemberSearch
    imports: Importer
    reports: Reports
    portal: Portal
    staff_gifts: StaffGifts


SERVICES = web.AppKey("services", Services)
PRINCIPAL = web.RequestKey("principal", Principal)


@dataclass(frozen=True, kw_only=True)
class QueryParam:
    name: str
    description: str
    pattern: str | None = None


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One documented endpoint: how it is routed, authenticated and described."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    auth: Auth = "any"
    errors: tuple[int, ...] = ()
    int_params: tuple[str, ...] = ()
    str_params: tuple[str, ...] = ()
    query: tuple[QueryParam, ...] = ()
    description: str = ""
    operation_id: str = field(default="")
    # Also accept an admin web session (dashboard pages) when no Authorization is sent.
    cookie: bool = False

    @property
    def route_path(self) -> str:
        """The aiohttp form: integer parameters only match digits."""
        path = self.path
        for name in self.int_params:
            path = path.replace("{" + name + "}", "{" + name + r":\d{1,12}}")
        return path

    def error_statuses(self) -> list[int]:
        statuses = set(self.errors)
        if self.auth != "public":
            statuses |= {401, 403}
        if self.request is not None:
            statuses |= {413, 422}
        if self.int_params or self.str_params:
            statuses |= {404}
        return sorted(statuses)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def principal(request: web.Request) -> Principal:
    """The authenticated caller (set by the operation wrapper before the handler runs)."""
    return request[PRINCIPAL]


def path_int(request: web.Request, name: str) -> int:
    """An integer path parameter; ids beyond any row id are simply not found."""
    value = int(request.match_info[name])
    if not 1 <= value <= MAX_ROW_ID:
        raise NotFound(f"no such {name.removesuffix('_id')} {value}", code="not_found")
    return value


def _describe(exc: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    details = [
        {"loc": [str(part) for part in err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_input=False, include_url=False)
    ]
    message = "; ".join(f"{'.'.join(d['loc']) or 'body'}: {d['msg']}" for d in details[:10])
    return message, details


LARGE_BODY_PATHS = ("/outbox", "/bundles", "/diagnostics")
"""Gateway batches, fleet bundles and diagnostics: a larger, still bounded body (× 8)."""
OUTBOX_BODY_FACTOR = 8


async def parse_body(request: web.Request, model: type[M]) -> M:
    """Read and validate the JSON body (413 over the limit, 422 with every problem listed)."""
    raw = await request.read()
    limit = services(request).settings.body_limit
    if len(raw) > limit and not request.path.endswith(LARGE_BODY_PATHS):
        # A chunked body has no Content-Length for the middleware to refuse early.
        raise PayloadTooLarge(f"request body over {limit} bytes")
    if not raw.strip():
        raise Invalid("a JSON request body is required", code="invalid_request")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        message, details = _describe(exc)
        raise Invalid(message, code="invalid_request", details=details) from exc


def respond(model: type[BaseModel] | None, body: Any, status: int = 200) -> web.Response:
    """Serialise ``body`` through its response model, so responses match the document."""
    if model is None:
        return web.Response(status=status)
    data = model.model_validate(body).model_dump(mode="json")
    return json_response(data, status=status)


def body_limit_for(path: str) -> BodyLimit:
    """The body limit of the route at ``path`` (a template: its suffix is literal)."""
    if path.endswith(LARGE_BODY_PATHS):
        return lambda request: services(request).settings.body_limit * OUTBOX_BODY_FACTOR
    if path.startswith("/v1/imports/"):  # files, read in bounded chunks
        return lambda _request: IMPORT_MAX_BYTES
    return lambda request: services(request).settings.body_limit


def wrap(op: Operation) -> Handler:
    """The route handler: authenticate and authorise per ``op.auth``, then call the handler;
    ``answers.guard``'s body limit and error shape in the same frame (one layer, not two,
    on the way to every handler: this is identify's path too)."""

    allowed_query = {q.name for q in op.query}
    body_limit = body_limit_for(op.path)

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            refuse_oversized(request, body_limit(request))
            if request.query_string:  # most calls have none: skip parsing an empty query
                unknown = sorted(set(request.query) - allowed_query)
                if unknown:
                    raise Invalid(
                        f"unknown query parameters: {', '.join(unknown)[:200]}",
                        code="invalid_request",
                    )
            if op.auth != "public":
                header = request.headers.get("Authorization")
                if header is None and op.cookie:
                    found = await session_admin(request)
                else:
                    found = await services(request).auth.authenticate(header)
                if op.auth == "admin":
                    found.require_admin()
                request[PRINCIPAL] = found
            return await op.handler(request)
        except Exception as exc:  # noqa: BLE001 - every error leaves in the one shape
            return error_response(request, exc)

    return handle


def add_static_files(app: web.Application, prefix: str, directory: Path) -> None:
    """Serve the files under ``directory`` (as they are at start) below ``prefix``.

    Only the files listed at start can be named, so no path can lead outside ``directory``;
    a miss is a 404 in the error shape (aiohttp's ``add_static`` answers in plain text).
    """
    files = {
        path.relative_to(directory).as_posix(): path
        for path in directory.rglob("*")
        if path.is_file()
    }

    async def serve(request: web.Request) -> web.StreamResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise NotFound("no such file", code="not_found")
        return web.FileResponse(path)

    add_page(app, prefix + "/{name:.+}", serve)


def add_page(app: web.Application, path: str, handler: Handler) -> None:
    """Mount a GET handler that is no documented operation (pages, the document, health),
    guarded as operations are."""
    app.router.add_get(path, guard(handler, body_limit_for(path)))


async def session_admin(request: web.Request) -> Principal:
    """Dashboard pages: an admin web session instead of a key (CSRF-checked on changes)."""
    sessions = services(request).admin_sessions
    if sessions.cookie_name not in request.cookies:
        raise Unauthenticated("missing Authorization: Bearer <key>", code="missing_key")
    session = await sessions.load(request)
    if session is None:
        raise Unauthenticated("session expired or ended: sign in again", code="no_session")
    require_csrf(request, session)
    return Principal(role="admin", key_id=0)


ID_QUERY = re.compile(ID_PATTERN)
