"""Report endpoints and the report page (issue 8).

``GET /v1/reports/{report}`` answers JSON (``ReportOut``) or, with ``?format=xlsx``, a
workbook with one sheet per table. The page ``/reports/`` (static HTML and JS, charts drawn
as inline SVG, no external resources) needs the dashboard's admin web session; signed out,
it sends you to the dashboard's login.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from . import exports
from .api import ID_QUERY, Operation, QueryParam, add_page, add_static_files, respond
from .api import services as services_of
from .errors import Invalid
from .reports import REPORTS, ReportOut

STATIC: Final = Path(__file__).with_name("static") / "reports"
PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def get_report(request: web.Request) -> web.StreamResponse:
    name = request.match_info["report"]
    if name not in REPORTS:
        raise web.HTTPNotFound(reason=f"no report {name[:20]!r}")
    fmt = request.query.get("format")
    if fmt not in (None, "json", "xlsx"):
        raise Invalid("format: json or xlsx", code="invalid_request")
    store = request.query.get("store") or None
    if store is not None and not ID_QUERY.fullmatch(store):
        raise Invalid("store: not a valid id", code="invalid_request")
    report = await services_of(request).reports.build(
        name, request.query.get("from"), request.query.get("to"), store
    )
    filename = f"report-{name}-{report['start']}-{report['end']}"
    if fmt == "xlsx":
        sheets = [(t["title"], t["columns"], t["rows"]) for t in report["tables"]]
        return await exports.xlsx_sheets(request, filename + ".xlsx", sheets)
    if fmt == "json":
        body = ReportOut.model_validate(report).model_dump(mode="json")
        return web.Response(
            text=json.dumps(body, ensure_ascii=False),
            content_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{filename}.json"'},
        )
    return respond(ReportOut, report)


def _page(name: str) -> Any:
    async def serve(request: web.Request) -> web.StreamResponse:
        if await services_of(request).admin_sessions.load(request) is None:
            raise web.HTTPFound("/dashboard/login")
        return web.FileResponse(STATIC / name, headers=PAGE_HEADERS)

    return serve


async def _to_page(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/reports/")


def add_report_pages(app: web.Application) -> None:
    """``/reports/`` and its script and style (no data: that comes from the API)."""
    add_page(app, "/reports", _to_page)
    add_page(app, "/reports/", _page("index.html"))
    add_static_files(app, "/reports/static", STATIC)


OPERATIONS = (
    Operation(
        method="GET",
        path="/v1/reports/{report}",
        handler=get_report,
        summary="A report as tables and charts (JSON), or as an Excel workbook",
        tag="reports",
        response=ReportOut,
        auth="admin",
        str_params=("report",),
        errors=(422,),
        query=(
            QueryParam(name="from", description="first day, YYYY-MM-DD (default: 30 days ago)"),
            QueryParam(name="to", description="last day, YYYY-MM-DD (default: today, UTC)"),
            QueryParam(name="store", description="only this store"),
            QueryParam(name="format", description="json (a download) or xlsx"),
        ),
        cookie=True,
        description="report: members, behaviour, sales, items, recharges or settlement.",
    ),
)
