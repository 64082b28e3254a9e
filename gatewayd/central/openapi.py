"""``/openapi.json`` (OpenAPI 3.1) and the ``/docs`` page, both built from the operation table.

Schemas come from the pydantic models the handlers validate and serialise with, so the
document describes exactly what is served. ``/docs`` is static HTML with no external assets
(the stores' network is closed).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .api import Operation
from .schemas import ID_PATTERN, MAX_ROW_ID, ErrorResponse

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No content",
    401: "No key or an unknown key",
    403: "The key may not do this (admin only, or another store)",
    404: "Not found",
    409: "Conflict (already used, already taken)",
    410: "Expired",
    413: "Request body too large",
    422: "Malformed request or token",
    429: "Rate limited; see Retry-After",
    502: "Payment provider failed",
}


def build_openapi(operations: Iterable[Operation], *, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``operations``."""
    ops = list(operations)
    inputs: list[tuple[type[BaseModel], Any]] = [
        (op.request, "validation") for op in ops if op.request is not None
    ]
    outputs: list[tuple[type[BaseModel], Any]] = [
        (op.response, "serialization") for op in ops if op.response is not None
    ]
    outputs.append((ErrorResponse, "serialization"))
    keys, defs = models_json_schema(
        list(dict.fromkeys(inputs + outputs)), ref_template="#/components/schemas/{model}"
    )
    error_ref = keys[(ErrorResponse, "serialization")]
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        item: dict[str, Any] = {
            "operationId": op.operation_id or op.handler.__name__,
            "summary": op.summary,
            "tags": [op.tag],
            "responses": {},
        }
        if op.description:
            item["description"] = op.description
        if op.auth != "public":
            item["security"] = [{"bearer": []}]
        params = [_path_param(name, int) for name in op.int_params]
        params += [_path_param(name, str) for name in op.str_params]
        params += [
            {
                "name": q.name,
                "in": "query",
                "required": False,
                "description": q.description,
                "schema": {"type": "string", "pattern": q.pattern or ID_PATTERN},
            }
            for q in op.query
        ]
        if params:
            item["parameters"] = params
        if op.request is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": keys[(op.request, "validation")]}},
            }
        success: dict[str, Any] = {"description": _STATUS_TEXT.get(op.status, "OK")}
        if op.response is not None:
            success["content"] = {
                "application/json": {"schema": keys[(op.response, "serialization")]}
            }
        item["responses"][str(op.status)] = success
        for status in op.error_statuses():
            item["responses"][str(status)] = {
                "description": _STATUS_TEXT.get(status, "Error"),
                "content": {"application/json": {"schema": error_ref}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gatewayd central membership API",
            "version": version,
            "description": (
                "The chain's central membership API. Every /v1 operation needs "
                "`Authorization: Bearer <key>`; every error is "
                '`{"error": {"code", "message"}}`. Money is integer fen.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _path_param(name: str, kind: type) -> dict[str, Any]:
    schema: dict[str, Any] = (
        {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID}
        if kind is int
        else {"type": "string", "pattern": ID_PATTERN}
    )
    return {"name": name, "in": "path", "required": True, "schema": schema}


def render_docs(document: dict[str, Any]) -> str:
    """A self-contained HTML page listing every operation with its request and answers."""
    rows: list[str] = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            answers = ", ".join(
                f"{status} {html.escape(r['description'])}" for status, r in op["responses"].items()
            )
            auth = "bearer key" if op.get("security") else "public"
            request_ref = body.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
            rows.append(
                "<section>"
                f"<h2><code>{method.upper()} {html.escape(path)}</code></h2>"
                f"<p>{html.escape(op['summary'])} <em>({auth})</em></p>"
                + (f"<p>{html.escape(op['description'])}</p>" if op.get("description") else "")
                + (
                    f"<p>Body: <a href='#{request_ref}'>{request_ref}</a></p>"
                    if request_ref
                    else ""
                )
                + f"<p>Answers: {answers}</p></section>"
            )
    schemas = "".join(
        f"<h3 id='{html.escape(name)}'>{html.escape(name)}</h3>"
        f"<pre>{html.escape(json.dumps(schema, indent=2))}</pre>"
        for name, schema in document["components"]["schemas"].items()
    )
    title = html.escape(document["info"]["title"])
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body{{font-family:sans-serif;max-width:60em;"
        "margin:2em auto;padding:0 1em}code,pre{background:#f4f4f4}"
        "pre{padding:.5em;overflow:auto}</style></head><body>"
        f"<h1>{title}</h1><p>{html.escape(document['info']['description'])}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p>"
        + "".join(rows)
        + "<h2>Schemas</h2>"
        + schemas
        + "</body></html>"
    )
