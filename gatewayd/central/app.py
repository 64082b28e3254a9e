"""The aiohttp application: middlewares, routes and the one cleanup context.

Resources (database engine, HTTP client for payment providers, services) are acquired in
``_resources`` before its ``yield`` and released after it, in reverse order. Every error,
including aiohttp's own 404/405/413, leaves as ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from .api import SERVICES, Operation, Services, wrap
from .auth import Authenticator
from .clock import Clock, SystemClock
from .codes import CODE_KEY_PURPOSE, ID_KEY_PURPOSE, ConsumptionCodes
from .config import CentralSettings
from .db import Database
from .errors import CentralError, PayloadTooLarge, RateLimited, error_body
from .gateway_link import GatewayLink
from .identify import Identifier
from .logs import get_logger
from .member_events import MemberEvents
from .members import MemberService
from .migrate import current_revision, head_revision
from .openapi import build_openapi, render_docs
from .payments import AlipayAdapter, PaymentAdapter, WeChatPayAdapter
from .ratelimit import TokenBucketLimiter
from .registry import Registry
from .routes_gateway_link import OPERATIONS as LINK_OPERATIONS
from .routes_identify import OPERATIONS as IDENTIFY_OPERATIONS
from .routes_members import OPERATIONS as MEMBER_OPERATIONS
from .routes_registry import OPERATIONS as REGISTRY_OPERATIONS

log = get_logger(__name__)
API_VERSION: Final = "1.0.0"
WORKER_HEADER: Final = "X-Central-Worker"
OPERATIONS: Final[tuple[Operation, ...]] = (
    IDENTIFY_OPERATIONS + MEMBER_OPERATIONS + REGISTRY_OPERATIONS + LINK_OPERATIONS
)
OPENAPI_DOC = web.AppKey("openapi_doc", bytes)
_HTTP_CODES: Final = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    400: "bad_request",
}


class SchemaOutdated(CentralError):
    """The database is not migrated to the revision this code needs."""

    default_code = "schema_outdated"


def _error_response(exc: CentralError) -> web.Response:
    response = web.json_response(error_body(exc), status=exc.status)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response


OUTBOX_BODY_FACTOR = 8


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Map every error to the one error shape; enforce the body limit before reading."""
    try:
        limit = request.app[SERVICES].settings.body_limit
        if request.path.endswith("/outbox"):  # gateway batches: a larger, still bounded body
            limit *= OUTBOX_BODY_FACTOR
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        response: web.StreamResponse = await handler(request)
        return response
    except CentralError as exc:
        return _error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        response = web.json_response(
            {"error": {"code": code, "message": exc.reason}}, status=exc.status
        )
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as exc:
        # The database is unreachable, overloaded or the pool is exhausted: retryable.
        log.warning("database_unavailable", path=request.path, error=type(exc).__name__)
        response = web.json_response(
            {"error": {"code": "database_unavailable", "message": "database unavailable"}},
            status=503,
        )
        response.headers["Retry-After"] = "1"
        return response
    except Exception:
        log.exception("unhandled_error", path=request.path, method=request.method)
        return web.json_response(
            {"error": {"code": "internal_error", "message": "internal error"}}, status=500
        )


async def _worker_header(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers[WORKER_HEADER] = str(os.getpid())


def _adapters(settings: CentralSettings, http: aiohttp.ClientSession) -> dict[str, PaymentAdapter]:
    adapters: dict[str, PaymentAdapter] = {}
    if settings.wechat_base_url:
        adapters["wechat"] = WeChatPayAdapter(
            http,
            base_url=settings.wechat_base_url,
            appid=settings.wechat_appid or "",
            mch_id=settings.wechat_mch_id or "",
            api_key=settings.wechat_api_key or "",
            sub_appid=settings.wechat_sub_appid,
            sub_mch_id=settings.wechat_sub_mch_id,
            timeout=settings.payment_timeout,
        )
    if settings.alipay_base_url:
        adapters["alipay"] = AlipayAdapter(
            http,
            base_url=settings.alipay_base_url,
            app_id=settings.alipay_app_id or "",
            key=settings.alipay_key or "",
            timeout=settings.payment_timeout,
        )
    return adapters


def build_services(
    settings: CentralSettings, clock: Clock, db: Database, http: aiohttp.ClientSession
) -> Services:
    """Wire the services over one database and one HTTP client."""
    registry = Registry(db, clock, settings.stale_after)
    codes = ConsumptionCodes(db, clock, settings.key_for(CODE_KEY_PURPOSE), settings.code_ttl)
    id_key = settings.key_for(ID_KEY_PURPOSE)
    identifier = Identifier(
        db,
        clock,
        id_key=id_key,
        codes=codes,
        registry=registry,
        adapters=_adapters(settings, http),
    )
    return Services(
        settings=settings,
        clock=clock,
        db=db,
        http=http,
        auth=Authenticator(db),
        members=MemberService(db, clock, id_key),
        registry=registry,
        codes=codes,
        identifier=identifier,
        link=GatewayLink(db, clock, identifier, registry),
        identify_limit=TokenBucketLimiter(
            settings.identify_rate, settings.identify_burst, what="identify requests"
        ),
        redeem_limit=TokenBucketLimiter(
            settings.identify_rate, settings.identify_burst, what="redeem requests"
        ),
        issue_limit=TokenBucketLimiter(
            settings.code_issue_rate, settings.code_issue_burst, what="requests for this member"
        ),
        events=MemberEvents(),
    )


def _resources(settings: CentralSettings, clock: Clock) -> Any:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        db = Database.from_url(settings.db)
        try:
            revision = await current_revision(db)
            if revision != head_revision():
                raise SchemaOutdated(
                    f"database schema is at {revision or 'nothing'}, this code needs "
                    f"{head_revision()}: run `gatewayd central migrate`"
                )
            async with aiohttp.ClientSession() as http:
                app[SERVICES] = build_services(settings, clock, db, http)
                log.info("central_started", db=settings.db.split("@")[-1], pid=os.getpid())
                yield
        finally:
            await db.close()

    return ctx


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_DOC], content_type="application/json")


async def _docs(request: web.Request) -> web.Response:
    document = json.loads(request.app[OPENAPI_DOC])
    return web.Response(text=render_docs(document), content_type="text/html")


async def _health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "worker": os.getpid()})


def build_app(
    settings: CentralSettings,
    *,
    clock: Clock | None = None,
    operations: Iterable[Operation] = OPERATIONS,
) -> web.Application:
    """The central application; nothing is opened until the app starts."""
    ops = tuple(operations)
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=settings.body_limit * OUTBOX_BODY_FACTOR,
    )
    app[OPENAPI_DOC] = json.dumps(build_openapi(ops, version=API_VERSION)).encode()
    app.cleanup_ctx.append(_resources(settings, clock or SystemClock()))
    app.on_response_prepare.append(_worker_header)
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/docs", _docs)
    app.router.add_get("/healthz", _health)
    for op in ops:
        app.router.add_route(op.method, op.route_path, wrap(op))
    return app
