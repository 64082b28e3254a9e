"""Custom-field, member-search and saved-search endpoints (issue 8).

Search and saved searches are HQ work: admin keys, or the dashboard's admin web session
(``cookie=True``). ``?format=xlsx|json`` turns a search into a download of every match
(bounded by ``exports.EXPORT_MAX_ROWS``) instead of one page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import BodyPartReader, web
from pydantic import Field

from . import exports, imports
from .api import ID_QUERY, Operation, QueryParam, parse_body, path_int, principal, respond
from .api import services as services_of
from .custom_fields import (
    CustomValues,
    CustomValuesOut,
    FieldCreate,
    FieldList,
    FieldOut,
    FieldUpdate,
)
from .errors import Invalid, NotFound, PayloadTooLarge
from .schemas import Out
from .search import (
    MAX_PAGE,
    SavedSearchCreate,
    SavedSearchList,
    SavedSearchOut,
    SearchPage,
    SearchRequest,
)

ENTITIES = ("member", "item", "staff", "gift")
CHUNK = 1 << 16


class RejectedRow(Out):
    row: int = Field(description="the row number in the sheet (the header is row 1)")
    reasons: list[str]


class ImportResult(Out):
    dry_run: bool
    partial: bool
    rows: int
    accepted: int
    applied: int = Field(description="rows written (0 on a dry run)")
    rejected: list[RejectedRow]


FORMAT = QueryParam(
    name="format", description="xlsx or json: download every match instead of one page"
)
ROW_COLUMNS = (
    "id", "name", "phone", "gender", "birthday", "level", "points", "balance_fen", "active",
    "created_at", "visits", "spent_fen", "last_visit_at", "home_store",
)  # fmt: skip


def _format(request: web.Request) -> str | None:
    value = request.query.get("format")
    if value not in (None, "xlsx", "json"):
        raise Invalid("format: xlsx or json", code="invalid_request")
    return value


def _entity(request: web.Request) -> str:
    entity = request.match_info["entity"]
    if entity not in ENTITIES:
        raise NotFound(f"no entity {entity[:20]!r}", code="not_found")
    return entity


# --- custom fields ----------------------------------------------------------------------


async def create_field(request: web.Request) -> web.Response:
    data = await parse_body(request, FieldCreate)
    return respond(FieldOut, await services_of(request).custom_fields.create(data), 201)


async def list_fields(request: web.Request) -> web.Response:
    entity = request.query.get("entity")
    if entity is not None and entity not in ENTITIES:
        raise Invalid("entity: member, item, staff or gift", code="invalid_request")
    items = await services_of(request).custom_fields.list(entity)
    return respond(FieldList, {"items": items})


async def get_field(request: web.Request) -> web.Response:
    field_id = path_int(request, "field_id")
    return respond(FieldOut, await services_of(request).custom_fields.get(field_id))


async def update_field(request: web.Request) -> web.Response:
    field_id = path_int(request, "field_id")
    data = await parse_body(request, FieldUpdate)
    return respond(FieldOut, await services_of(request).custom_fields.update(field_id, data))


def _entity_id(request: web.Request) -> str:
    value = request.match_info["entity_id"]
    if not ID_QUERY.fullmatch(value):
        raise Invalid("entity_id: 1-64 of A-Z a-z 0-9 _ . -", code="invalid_request")
    return value


async def get_values(request: web.Request) -> web.Response:
    entity, entity_id = _entity(request), _entity_id(request)
    body = await services_of(request).custom_fields.values(entity, entity_id)
    return respond(CustomValuesOut, body)


async def set_values(request: web.Request) -> web.Response:
    entity, entity_id = _entity(request), _entity_id(request)
    if entity != "member":  # items, staff, gifts are HQ's; members any key, as PATCH member
        principal(request).require_admin()
    data = await parse_body(request, CustomValues)
    body = await services_of(request).custom_fields.set_values(entity, entity_id, data.custom)
    return respond(CustomValuesOut, body)


# --- search ---------------------------------------------------------------------------------


async def _answer(request: web.Request, query: SearchRequest, name: str) -> web.StreamResponse:
    svc = services_of(request)
    fmt = _format(request)
    if fmt is None:
        return respond(SearchPage, await svc.member_search.page(query))
    keys = await svc.member_search.custom_keys()
    batches = svc.member_search.rows(query, exports.EXPORT_MAX_ROWS)
    if fmt == "json":
        return await exports.json_stream(request, f"{name}.json", batches)

    async def as_rows() -> AsyncIterator[list[list[Any]]]:
        async for items in batches:
            yield [
                [item[c] for c in ROW_COLUMNS] + [item["custom"].get(k) for k in keys]
                for item in items
            ]

    header = list(ROW_COLUMNS) + [f"custom.{k}" for k in keys]
    return await exports.xlsx_stream(request, f"{name}.xlsx", "members", header, as_rows())


async def search_members(request: web.Request) -> web.StreamResponse:
    query = await parse_body(request, SearchRequest)
    return await _answer(request, query, "members")


async def create_saved(request: web.Request) -> web.Response:
    data = await parse_body(request, SavedSearchCreate)
    return respond(SavedSearchOut, await services_of(request).member_search.save(data), 201)


async def list_saved(request: web.Request) -> web.Response:
    items = await services_of(request).member_search.list_saved()
    return respond(SavedSearchList, {"items": items})


async def get_saved(request: web.Request) -> web.Response:
    search_id = path_int(request, "search_id")
    return respond(SavedSearchOut, await services_of(request).member_search.saved(search_id))


async def delete_saved(request: web.Request) -> web.Response:
    await services_of(request).member_search.delete_saved(path_int(request, "search_id"))
    return respond(None, None, 204)


async def run_saved(request: web.Request) -> web.StreamResponse:
    search_id = path_int(request, "search_id")
    query = await services_of(request).member_search.saved_request(search_id)
    update: dict[str, Any] = {}
    if "cursor" in request.query:
        update["cursor"] = request.query["cursor"][:200]
    if "limit" in request.query:
        raw = request.query["limit"]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
            raise Invalid(f"limit: 1 to {MAX_PAGE}", code="invalid_request")
        update["limit"] = int(raw)
    return await _answer(request, query.model_copy(update=update), f"search-{search_id}")


# --- imports --------------------------------------------------------------------------------


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false")
    if value not in ("true", "false"):
        raise Invalid(f"{name}: true or false", code="invalid_request")
    return value == "true"


async def _read_part(part: BodyPartReader) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(CHUNK):
        size += len(chunk)
        if size > imports.MAX_BYTES:
            raise PayloadTooLarge(f"import file over {imports.MAX_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _upload(request: web.Request) -> bytes:
    """The file: a raw body (.xlsx or .csv) or the first part of a multipart form."""
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        part = await reader.next()
        if not isinstance(part, BodyPartReader):
            raise Invalid("the form holds no file", code="bad_file")
        raw = await _read_part(part)
    else:
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > imports.MAX_BYTES:
                raise PayloadTooLarge(f"import file over {imports.MAX_BYTES} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
    if not raw:
        raise Invalid("send the .xlsx or .csv file as the body", code="bad_file")
    return raw


async def import_members(request: web.Request) -> web.Response:
    dry_run, partial = _flag(request, "dry_run"), _flag(request, "partial")
    raw = await _upload(request)
    body = await services_of(request).imports.members(raw, dry_run=dry_run, partial=partial)
    return respond(ImportResult, body, 200 if dry_run else 201)


async def import_sales(request: web.Request) -> web.Response:
    dry_run, partial = _flag(request, "dry_run"), _flag(request, "partial")
    raw = await _upload(request)
    body = await services_of(request).imports.sales(raw, dry_run=dry_run, partial=partial)
    return respond(ImportResult, body, 200 if dry_run else 201)


IMPORT_QUERY = (
    QueryParam(name="dry_run", description="true: check only, write nothing"),
    QueryParam(name="partial", description="true: write the good rows even if some are rejected"),
)
FIELD = "/v1/custom-fields/{field_id}"
VALUES = "/v1/custom-values/{entity}/{entity_id}"
SAVED = "/v1/saved-searches/{search_id}"
OPERATIONS = (
    Operation(
        method="POST",
        path="/v1/custom-fields",
        handler=create_field,
        summary="Define a custom field",
        tag="custom fields",
        request=FieldCreate,
        response=FieldOut,
        status=201,
        auth="admin",
        errors=(409,),
        cookie=True,
        description="Typed (text, number, choice, date, boolean) on member, item, staff, gift.",
    ),
    Operation(
        method="GET",
        path="/v1/custom-fields",
        handler=list_fields,
        summary="List custom fields",
        tag="custom fields",
        response=FieldList,
        query=(QueryParam(name="entity", description="member, item, staff or gift"),),
        errors=(422,),
        cookie=True,
    ),
    Operation(
        method="GET",
        path=FIELD,
        handler=get_field,
        summary="Read a custom field",
        tag="custom fields",
        response=FieldOut,
        int_params=("field_id",),
        cookie=True,
    ),
    Operation(
        method="PATCH",
        path=FIELD,
        handler=update_field,
        summary="Change a custom field (label, flags, default, choices, active)",
        tag="custom fields",
        request=FieldUpdate,
        response=FieldOut,
        auth="admin",
        int_params=("field_id",),
        cookie=True,
    ),
    Operation(
        method="GET",
        path=VALUES,
        handler=get_values,
        summary="Read an entity's custom values",
        tag="custom fields",
        response=CustomValuesOut,
        str_params=("entity", "entity_id"),
        cookie=True,
    ),
    Operation(
        method="PATCH",
        path=VALUES,
        handler=set_values,
        summary="Change an entity's custom values (null clears)",
        tag="custom fields",
        request=CustomValues,
        response=CustomValuesOut,
        str_params=("entity", "entity_id"),
        cookie=True,
        description="Members: any key; items: admin. Staff and gifts have no registry yet.",
    ),
    Operation(
        method="POST",
        path="/v1/members/search",
        handler=search_members,
        summary="Search members (one page, or every match as xlsx/json)",
        tag="member search",
        request=SearchRequest,
        response=SearchPage,
        auth="admin",
        query=(FORMAT,),
        cookie=True,
        description="See docs/member-management.md for the filter; keyset pagination.",
    ),
    Operation(
        method="POST",
        path="/v1/saved-searches",
        handler=create_saved,
        summary="Save a search",
        tag="member search",
        request=SavedSearchCreate,
        response=SavedSearchOut,
        status=201,
        auth="admin",
        errors=(409,),
        cookie=True,
    ),
    Operation(
        method="GET",
        path="/v1/saved-searches",
        handler=list_saved,
        summary="List saved searches",
        tag="member search",
        response=SavedSearchList,
        auth="admin",
        cookie=True,
    ),
    Operation(
        method="GET",
        path=SAVED,
        handler=get_saved,
        summary="Read a saved search",
        tag="member search",
        response=SavedSearchOut,
        auth="admin",
        int_params=("search_id",),
        cookie=True,
    ),
    Operation(
        method="DELETE",
        path=SAVED,
        handler=delete_saved,
        summary="Delete a saved search",
        tag="member search",
        status=204,
        auth="admin",
        int_params=("search_id",),
        cookie=True,
    ),
    Operation(
        method="GET",
        path=SAVED + "/results",
        handler=run_saved,
        summary="Run a saved search (one page, or every match as xlsx/json)",
        tag="member search",
        response=SearchPage,
        auth="admin",
        int_params=("search_id",),
        query=(
            FORMAT,
            QueryParam(name="cursor", description="next_cursor of the previous page"),
            QueryParam(name="limit", description=f"1 to {MAX_PAGE}"),
        ),
        errors=(422,),
        cookie=True,
    ),
    Operation(
        method="POST",
        path="/v1/imports/members",
        handler=import_members,
        summary="Import members from .xlsx or .csv (dry run, all-or-nothing, or partial)",
        tag="imports",
        response=ImportResult,
        status=201,
        auth="admin",
        errors=(409, 413, 422),
        query=IMPORT_QUERY,
        cookie=True,
        description="Body: the file (raw or multipart). See docs/member-management.md.",
    ),
    Operation(
        method="POST",
        path="/v1/imports/sales",
        handler=import_sales,
        summary="Import historic sales from .xlsx or .csv (dry run, all-or-nothing, or partial)",
        tag="imports",
        response=ImportResult,
        status=201,
        auth="admin",
        errors=(413, 422),
        query=IMPORT_QUERY,
        cookie=True,
        description="Body: the file (raw or multipart). See docs/member-management.md.",
    ),
)
