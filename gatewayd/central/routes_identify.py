"""``POST /v1/identify`` and ``POST /v1/consumption-codes/redeem``: the tills' hot path."""

from __future__ import annotations

from aiohttp import web

from .api import Operation, parse_body, principal, respond, services
from .clock import iso
from .jsonwire import json_bytes_response, json_response
from .members import summary_of
from .schemas import (
    IdentifyRequest,
    IdentifyResponse,
    RedeemRequest,
    RedeemResponse,
)


async def identify(request: web.Request) -> web.Response:
    req = await parse_body(request, IdentifyRequest)
    svc = services(request)
    caller = principal(request)
    caller.require_store(req.store)  # before the rate limit: another store's key spends none
    svc.identify_limit.hit(f"{req.store}/{req.terminal}")
    outcome = await svc.identifier.identify(req, caller)
    if outcome.raw is not None:
        # A fresh answer, serialised once for the record and for the wire. The same bytes
        # as the branches below (tests/central/test_central_perf_parts.py checks).
        return json_bytes_response(outcome.raw, status=outcome.status)
    if outcome.status == 200:
        return respond(IdentifyResponse, outcome.body)
    return json_response(outcome.body, status=outcome.status)


async def redeem(request: web.Request) -> web.Response:
    req = await parse_body(request, RedeemRequest)
    svc = services(request)
    principal(request).require_store(req.store)
    svc.redeem_limit.hit(f"{req.store}/{req.terminal}")
    await svc.registry.require_terminal(req.store, req.terminal)
    code, redeemed_at, balance = await svc.codes.redeem(
        req.code, req.store, req.terminal, req.amount_fen
    )
    member = await svc.members.get(code.member_id)
    return respond(
        RedeemResponse,
        {
            "member": summary_of(member),
            "code_last4": code.last4,
            "redeemed_at": iso(redeemed_at),
            "debited_fen": req.amount_fen or 0,
            "balance_fen": balance,
        },
    )


OPERATIONS = (
    Operation(
        method="POST",
        path="/v1/identify",
        handler=identify,
        summary="Resolve any token (card, code, phone, ID, payment code) to a member",
        tag="identify",
        request=IdentifyRequest,
        response=IdentifyResponse,
        errors=(404, 409, 410, 429, 502),
        description=(
            "200 {member, card, method}; 404 unknown token; 422 malformed (bad check digit); "
            "410 expired code; 409 code already used; 429 too many from this terminal. "
            "With event_id, a replay returns the first answer. With id_number, id_match says "
            "whether that ID card belongs to the identified member."
        ),
    ),
    Operation(
        method="POST",
        path="/v1/consumption-codes/redeem",
        handler=redeem,
        summary="Use up a consumption code (once), optionally debiting stored value",
        tag="codes",
        request=RedeemRequest,
        response=RedeemResponse,
        errors=(404, 409, 410, 429),
        description=(
            "Atomic: of concurrent redeemers of one code exactly one gets 200, the others "
            "409 code_used. 410 once expired; 409 insufficient_balance rolls the use back."
        ),
    ),
)
