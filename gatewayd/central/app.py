"""The aiohttp application: routes, response hooks and the one cleanup context.

Resources (database engine, HTTP client for payment providers, services) are acquired in
``_resources`` before its ``yield`` and released after it, in reverse order. Every error,
unknown paths and wrong methods included, leaves as ``{"error": {"code", "message"}}``;
without a middleware (``answers`` says how and why).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .alerts import Alerts
from .answers import RequestTally, add_unrouted, worker_header
from .api import OUTBOX_BODY_FACTOR, SERVICES, Operation, Services, add_page, wrap
from .auth import Authenticator
from .catalog import Catalog
from .clock import Clock, SystemClock, to_millis
from .codes import CODE_KEY_PURPOSE, ID_KEY_PURPOSE, ConsumptionCodes
from .config import CentralSettings
from .custom_fields import CustomFields
from .dashboard import Dashboard
from .db import Database
from .errors import CentralError
from .fleet_store import FleetStore
from .gateway_link import GatewayLink
from .identify import Identifier, settle_heap
from .imports import Importer
from .jsonwire import json_response
from .logs import get_logger
from .member_events import MemberEvents
from .members import MemberService
from .metrics import (
    METRICS_FOLD_SECONDS,
    MULTIPROC_ENV,
    CentralMetrics,
    gateway_state_registry,
    state_counts_query,
)
from .migrate import current_revision, head_revision
from .models_members_ext import subscribe as subscribe_member_stats
from .notifications import build_notifications
from .notify_dispatch import Campaigns, build_notify_loops
from .openapi import build_openapi, render_docs
from .payments import AlipayAdapter, PaymentAdapter, WeChatPayAdapter
from .portal import build_portal
from .pricing import Pricing
from .ratelimit import TokenBucketLimiter
from .recharge import build_programme
from .registry import Registry
from .reports import Reports
from .routes_catalog import OPERATIONS as CATALOG_OPERATIONS
from .routes_dashboard import OPERATIONS as DASHBOARD_OPERATIONS
from .routes_dashboard import add_dashboard_pages
from .routes_fleet import OPERATIONS as FLEET_OPERATIONS
from .routes_gateway_link import OPERATIONS as LINK_OPERATIONS
from .routes_identify import OPERATIONS as IDENTIFY_OPERATIONS
from .routes_members import OPERATIONS as MEMBER_OPERATIONS
from .routes_notifications import OPERATIONS as NOTIFY_OPERATIONS
from .routes_orders import OPERATIONS as ORDER_OPERATIONS
from .routes_portal import OPERATIONS as PORTAL_OPERATIONS
from .routes_portal import add_portal_pages
from .routes_programme import OPERATIONS as PROGRAMME_OPERATIONS
from .routes_registry import OPERATIONS as REGISTRY_OPERATIONS
from .routes_reports import OPERATIONS as REPORT_OPERATIONS
from .routes_reports import add_report_pages
from .routes_search import OPERATIONS as SEARCH_OPERATIONS
from .routes_staff_gifts import OPERATIONS as STAFF_GIFT_OPERATIONS
from .search import MemberSearch
from .service_plans import ServicePlans
from .staff_gifts import StaffGifts
from .web_sessions import LoginThrottle, WebSessions

log = get_logger(__name__)
API_VERSION: Final = "1.0.0"
OPERATIONS: Final[tuple[Operation, ...]] = (
    IDENTIFY_OPERATIONS
    + MEMBER_OPERATIONS
    + REGISTRY_OPERATIONS
    + LINK_OPERATIONS
    + FLEET_OPERATIONS
    + CATALOG_OPERATIONS
    + DASHBOARD_OPERATIONS
    + NOTIFY_OPERATIONS
    + ORDER_OPERATIONS
    + PROGRAMME_OPERATIONS
    + SEARCH_OPERATIONS
    + REPORT_OPERATIONS
    + PORTAL_OPERATIONS
    + STAFF_GIFT_OPERATIONS
)
OPENAPI_DOC = web.AppKey("openapi_doc", bytes)


class SchemaOutdated(CentralError):
    """The database is not migrated to the revision this code needs."""

    default_code = "schema_outdated"


METRICS = web.AppKey("metrics", CentralMetrics)


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
    settings: CentralSettings,
    clock: Clock,
    db: Database,
    http: aiohttp.ClientSession,
    metrics: CentralMetrics | None = None,
) -> Services:
    """Wire the services over one database and one HTTP client."""
    registry = Registry(db, clock, settings.stale_after)
    catalog = Catalog(db, clock)
    events = MemberEvents()
    codes = ConsumptionCodes(
        db, clock, settings.key_for(CODE_KEY_PURPOSE), settings.code_ttl, events=events
    )
    id_key = settings.key_for(ID_KEY_PURPOSE)
    identifier = Identifier(
        db,
        clock,
        id_key=id_key,
        codes=codes,
        registry=registry,
        adapters=_adapters(settings, http),
        observe=metrics.identified if metrics is not None else None,
    )
    dashboard = Dashboard(db, clock, settings.stale_after, settings.offline_after)
    notifications = build_notifications(settings, db, clock, http, events)
    service_plans = ServicePlans(db, clock, events, notifications)
    members = MemberService(db, clock, id_key, events)
    built = Services(
        settings=settings,
        clock=clock,
        db=db,
        http=http,
        auth=Authenticator(db),
        members=members,
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
        events=events,
        notifications=notifications,
        service_plans=service_plans,
        campaigns=Campaigns(db, clock, notifications),
        notify_loops=build_notify_loops(settings, db, clock, notifications, events, service_plans),
        fleet=FleetStore(db, clock),
        catalog=catalog,
        pricing=Pricing(catalog, registry),
        dashboard=dashboard,
        alerts=Alerts(db, clock, dashboard, notifications),
        admin_sessions=WebSessions(
            db,
            clock,
            realm="admin",
            cookie_name="gatewayd_admin_session",
            idle_seconds=settings.session_idle,
            absolute_seconds=settings.session_max,
        ),
        login_throttle=LoginThrottle(db, clock),
        programme=build_programme(
            db,
            clock,
            events,
            members,
            settings.key_for(CODE_KEY_PURPOSE),
        ),
        portal=build_portal(
            settings,
            db,
            clock,
            members=members,
            codes=codes,
            notifications=notifications,
            registry=registry,
        ),
        custom_fields=CustomFields(db, clock),
        member_search=MemberSearch(db, clock),
        imports=Importer(db, clock, id_key),
        reports=Reports(db, clock),
        staff_gifts=StaffGifts(db, clock),
    )
    subscribe_member_stats(events)  # refunds lower member_stats.spent_fen (issue 8)
    return built


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
                app[SERVICES] = build_services(settings, clock, db, http, app[METRICS])
                settle_heap()
                log.info("central_started", db=settings.db.split("@")[-1], pid=os.getpid())
                yield
        finally:
            await db.close()

    return ctx


async def _notify_loops(app: web.Application) -> AsyncIterator[None]:
    """The notification dispatcher and scheduler of this worker (off with notify_loops = 0)."""
    services = app[SERVICES]
    settings = services.settings
    if settings.notify_loops:
        services.notify_loops.start(settings.notify_poll, settings.notify_schedule_interval)
    yield
    await services.notify_loops.stop()


async def _programme_scheduler(app: web.Application) -> AsyncIterator[None]:
    """Recharge returns and pass expiry; every worker runs one (each payment happens once)."""
    scheduler = app[SERVICES].programme.scheduler
    scheduler.start()
    yield
    await scheduler.stop()


async def _alert_loop(app: web.Application) -> AsyncIterator[None]:
    """Evaluate alert rules in the background (every worker may; incidents fire once)."""
    services = app[SERVICES]
    interval = services.settings.alert_interval
    task = asyncio.create_task(services.alerts.run(interval)) if interval > 0 else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _metrics_fold(app: web.Application) -> AsyncIterator[None]:
    """With several workers a scrape reaches one of them: each folds its tallies every
    second, so the sum it reads from the others is at most that old."""
    task = None
    if os.environ.get(MULTIPROC_ENV):
        task = asyncio.create_task(_fold_every(app[METRICS], METRICS_FOLD_SECONDS))
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    app[METRICS].fold()


async def _fold_every(metrics: CentralMetrics, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        metrics.fold()


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_DOC], content_type="application/json")


async def _docs(request: web.Request) -> web.Response:
    document = json.loads(request.app[OPENAPI_DOC])
    return web.Response(text=render_docs(document), content_type="text/html")


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus text: an admin key, or the scrape token (``metrics_token``) as Bearer."""
    svc = request.app[SERVICES]
    header = request.headers.get("Authorization", "")
    token = svc.settings.metrics_token
    scheme, _, presented = header.partition(" ")
    if not (
        token
        and scheme.lower() == "bearer"
        and hmac.compare_digest(presented.strip().encode(), token.encode())
    ):
        (await svc.auth.authenticate(header or None)).require_admin()
    query = state_counts_query(
        to_millis(svc.clock.now()),
        int(svc.settings.stale_after * 1000),
        int(svc.settings.offline_after * 1000),
    )
    async with svc.db.read() as conn:
        counts = {str(state): int(n) for state, n in (await conn.execute(query)).all()}
    body = request.app[METRICS].exposition(gateway_state_registry(counts))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _health(_request: web.Request) -> web.Response:
    return json_response({"status": "ok", "worker": os.getpid()})


def build_app(
    settings: CentralSettings,
    *,
    clock: Clock | None = None,
    operations: Iterable[Operation] = OPERATIONS,
) -> web.Application:
    """The central application; nothing is opened until the app starts."""
    ops = tuple(operations)
    metrics = CentralMetrics()
    app = web.Application(
        client_max_size=settings.body_limit * OUTBOX_BODY_FACTOR,
        # No middleware (see ``answers``): aiohttp's access-log hook counts every request.
        handler_args={"access_log_class": RequestTally, "access_log": metrics},
    )
    app[OPENAPI_DOC] = json.dumps(build_openapi(ops, version=API_VERSION)).encode()
    app[METRICS] = metrics
    app.cleanup_ctx.append(_resources(settings, clock or SystemClock()))
    app.cleanup_ctx.append(_alert_loop)
    app.cleanup_ctx.append(_notify_loops)
    app.cleanup_ctx.append(_programme_scheduler)
    app.cleanup_ctx.append(_metrics_fold)
    app.on_response_prepare.append(worker_header)
    for path, handler in (
        ("/openapi.json", _openapi),
        ("/docs", _docs),
        ("/healthz", _health),
        ("/metrics", _metrics),
    ):
        add_page(app, path, handler)
    for op in ops:
        app.router.add_route(op.method, op.route_path, wrap(op))
    add_dashboard_pages(app)
    add_report_pages(app)
    add_portal_pages(app)
    add_unrouted(app)
    return app
