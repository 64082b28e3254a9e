"""The least any identify can do here: the floor under ``benchmarks/central.py``'s figures.

An aiohttp handler that reads the JSON body, looks the member code up with identify's own
prepared statement and records the answer with identify's own recorder (group commit,
answered after the COMMIT), through the same ``Database`` hot path: no authentication, no
validation, no rate limit, no replay handling, no metrics, no logging. Whatever central
adds to that is the price of those features; the gap between this and the bare handler is
the price of one look-up and one durable insert per request.

    python benchmarks/identify_floor.py sqlite:///path/to/central.db 8701

(``benchmarks/central.py`` starts it itself.)
"""

from __future__ import annotations

import gc
import json
import sys
import time

from aiohttp import web

from gatewayd.central.db import Database
from gatewayd.central.identify import _BY_CARD_FIELD, _RECORD_COLUMNS, _STORED
from gatewayd.central.jsonwire import dumps
from gatewayd.central.members import summary
from gatewayd.central.models import identifications
from gatewayd.protocols.tokens import TokenKind


def build(url: str) -> web.Application:
    db = Database.from_url(url)
    by_code = db.prepare(_BY_CARD_FIELD[TokenKind.MEMBER_CODE])
    recorder = db.recorder(identifications, _RECORD_COLUMNS, db.prepare(_STORED))

    async def identify(request: web.Request) -> web.Response:
        req = json.loads(await request.read())
        row = await db.fetch_row(by_code, {"value": req["token"]})
        if row is None:
            return web.json_response({"error": "unknown"}, status=404)
        body = {
            "member": summary(row),
            "card": {"id": row.card_id, "number": row.card_number, "kind": row.card_kind},
            "method": "member_code",
        }
        text = dumps(body)
        values = {
            "store_id": req["store"],
            "terminal_id": req["terminal"],
            "gateway_id": None,
            "event_id": req.get("event_id"),
            "token_kind": "member_code",
            "token_last4": req["token"][-4:],
            "method": "barcode",
            "member_id": row.id,
            "card_id": row.card_id,
            "secondary_card": not row.card_main,
            "status": 200,
            "response": text,
            "created_at": int(time.time() * 1000),
        }
        key = {"store": req["store"], "event_id": req.get("event_id")}
        await db.record(recorder, values, key)
        return web.Response(text=text, content_type="application/json")

    async def close(_app: web.Application) -> None:
        await db.close()

    app = web.Application()
    app.router.add_post("/v1/identify", identify)
    app.on_cleanup.append(close)
    return app


def main() -> None:
    url, port = sys.argv[1], int(sys.argv[2])
    app = build(url)
    gc.collect()
    gc.freeze()  # as central does once its services are built
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
