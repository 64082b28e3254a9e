"""JSON on the wire: every answer central sends is serialised here, by orjson.

One serialiser, so that an identify answer built on the hot path and the same answer built
through its response model are the same bytes (``tests/central/test_central_perf_parts.py``
checks). orjson writes compact UTF-8 (no spaces after ``,`` and ``:``, non-ASCII as is);
the standard library's encoder cost identify about a twentieth of its time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import web

# Dict keys that are not strings (an int-keyed mapping in a model) are written as strings,
# as ``json.dumps`` does, instead of failing.
_OPTIONS: Final = orjson.OPT_NON_STR_KEYS


def dumps_bytes(value: Any) -> bytes:
    """``value`` as JSON, UTF-8 encoded. Raises TypeError for what JSON cannot hold.

    Text with a lone surrogate (a gateway may send ``"\\ud800"``, which JSON parsers accept)
    cannot be UTF-8: orjson refuses it, and such an answer is written with ASCII escapes
    instead, as the standard library does.
    """
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def dumps(value: Any) -> str:
    """``value`` as JSON text (for a column that stores the answer as sent)."""
    return dumps_bytes(value).decode()


def json_bytes_response(
    body: bytes, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An answer whose JSON body is already serialised."""
    return web.Response(
        body=body,
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``aiohttp.web.json_response``, serialised by orjson."""
    return json_bytes_response(dumps_bytes(data), status=status, headers=headers)
