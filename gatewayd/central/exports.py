"""Excel (openpyxl) and JSON exports of searches and reports, streamed and bounded.

Workbooks are written in openpyxl's write-only mode to a temporary file on a worker thread
(batch by batch, so memory stays flat and the event loop never waits for openpyxl), then
streamed to the client. Every text cell is written as text: a member called ``=HYPERLINK(…)``
stays a name and never becomes a formula in the office's spreadsheet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from aiohttp import web
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EXPORT_MAX_ROWS: Final = 200_000
CHUNK: Final = 1 << 16
Sheet = tuple[str, Sequence[str], Sequence[Sequence[Any]]]


def cell_value(value: Any) -> Any:
    """A JSON-ish value as a spreadsheet value (dicts and lists as JSON text)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def _append(ws: WriteOnlyWorksheet, rows: Sequence[Sequence[Any]]) -> None:
    for row in rows:
        cells = []
        for value in row:
            cell = WriteOnlyCell(ws, value=cell_value(value))
            if isinstance(cell.value, str):
                cell.data_type = "s"  # never a formula
            cells.append(cell)
        ws.append(cells)


def _attachment(filename: str, content_type: str) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "Content-Disposition": f'attachment; filename="{filename}"',
    }


async def _stream_file(request: web.Request, path: str, filename: str) -> web.StreamResponse:
    response = web.StreamResponse(headers=_attachment(filename, XLSX_TYPE))
    response.content_length = (await asyncio.to_thread(os.stat, path)).st_size
    await response.prepare(request)
    with open(path, "rb") as handle:  # noqa: ASYNC230 - local temp file, read in chunks
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            await response.write(chunk)
    await response.write_eof()
    return response


async def xlsx_stream(
    request: web.Request,
    filename: str,
    title: str,
    header: Sequence[str],
    batches: AsyncIterator[list[list[Any]]],
) -> web.StreamResponse:
    """One sheet filled from ``batches`` (each a list of rows), streamed as .xlsx."""
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title[:31])
    await asyncio.to_thread(_append, ws, [list(header)])
    async for rows in batches:
        await asyncio.to_thread(_append, ws, rows)
    return await _save_and_stream(request, wb, filename)


async def xlsx_sheets(
    request: web.Request, filename: str, sheets: Sequence[Sheet]
) -> web.StreamResponse:
    """Several small sheets (reports) as one .xlsx."""
    wb = Workbook(write_only=True)
    for title, header, rows in sheets:
        ws = wb.create_sheet(title[:31])
        await asyncio.to_thread(_append, ws, [list(header), *[list(r) for r in rows]])
    return await _save_and_stream(request, wb, filename)


async def _save_and_stream(request: web.Request, wb: Workbook, filename: str) -> web.StreamResponse:
    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        await asyncio.to_thread(wb.save, path)
        return await _stream_file(request, path, filename)
    finally:
        os.unlink(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(type(value).__name__)


async def json_stream(
    request: web.Request, filename: str, batches: AsyncIterator[list[dict[str, Any]]]
) -> web.StreamResponse:
    """``{"items": [...]}`` written batch by batch (a download, not a page)."""
    response = web.StreamResponse(headers=_attachment(filename, "application/json"))
    await response.prepare(request)
    await response.write(b'{"items": [')
    first = True
    async for rows in batches:
        for row in rows:
            prefix = b"" if first else b", "
            first = False
            text = json.dumps(row, ensure_ascii=False, default=_json_default)
            await response.write(prefix + text.encode())
    await response.write(b"]}\n")
    await response.write_eof()
    return response
