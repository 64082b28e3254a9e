"""The till's programme endpoints: orders and refunds, recharges, passes, time sessions.

Every write carries a ``request_id`` unique per store: a retry gets the first answer byte
for byte (same status), the same id with a different body is a 409 ``request_id_reused``.
A gateway key acts only for its own store; admin keys for any.
"""

from __future__ import annotations

from aiohttp import web

from . import ledger
from .api import Operation, parse_body, path_int, principal, respond, services
from .orders import OrderCreate, OrderOut, OrderRecord, RefundCreate, RefundOut
from .passes import PassList, PassOut, PassSale, SessionOut, SessionStart, SessionStop
from .recharge import RechargeCreate, RechargeOut, ScheduledBonusList


def replayed(replay: ledger.Replay) -> web.Response:
    """The stored answer exactly as first sent."""
    return web.Response(
        body=replay.body.encode(), status=replay.status, content_type="application/json"
    )


async def _at_till(request: web.Request, store: str, terminal: str) -> None:
    """The caller may act for the store, and the terminal is registered there (422)."""
    principal(request).require_store(store)
    await services(request).registry.require_terminal(store, terminal)


async def commit_order(request: web.Request) -> web.Response:
    data = await parse_body(request, OrderCreate)
    principal(request).require_store(data.store)
    svc = services(request)
    return replayed(await svc.programme.orders.commit(data, svc.pricing.quote))


async def get_order(request: web.Request) -> web.Response:
    order = await services(request).programme.orders.get(path_int(request, "order_id"))
    principal(request).require_store(order["store"])
    return respond(OrderRecord, order)


async def refund_order(request: web.Request) -> web.Response:
    order_id = path_int(request, "order_id")
    data = await parse_body(request, RefundCreate)
    await _at_till(request, data.store, data.terminal)
    # A gateway refunds only its own store's orders; HQ (admin keys) any order, anywhere.
    order = await services(request).programme.orders.get(order_id)
    principal(request).require_store(order["store"])
    return replayed(await services(request).programme.orders.refund(order_id, data))


async def recharge(request: web.Request) -> web.Response:
    data = await parse_body(request, RechargeCreate)
    await _at_till(request, data.store, data.terminal)
    return replayed(await services(request).programme.recharges.recharge(data))


async def scheduled_bonuses(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    items = await services(request).programme.recharges.scheduled(member_id)
    return respond(ScheduledBonusList, {"items": items})


async def sell_pass(request: web.Request) -> web.Response:
    data = await parse_body(request, PassSale)
    await _at_till(request, data.store, data.terminal)
    return replayed(await services(request).programme.passes.sell(data))


async def member_passes(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    items = await services(request).programme.passes.member_passes(member_id)
    return respond(PassList, {"items": items})


async def start_session(request: web.Request) -> web.Response:
    data = await parse_body(request, SessionStart)
    await _at_till(request, data.store, data.terminal)
    return replayed(await services(request).programme.passes.start(data))


async def stop_session(request: web.Request) -> web.Response:
    session_id = path_int(request, "session_id")
    data = await parse_body(request, SessionStop)
    await _at_till(request, data.store, data.terminal)
    return replayed(await services(request).programme.passes.stop(session_id, data))


_IDEMPOTENT = (
    " Idempotent per (store, request_id): a retry returns the first answer byte for byte; "
    "the same request_id with another body answers 409 request_id_reused."
)
OPERATIONS = (
    Operation(
        method="POST",
        path="/v1/orders",
        handler=commit_order,
        summary="Commit an order with its payments (cash, WeChat/Alipay, stored value, "
        "points, count cards)",
        tag="orders",
        request=OrderCreate,
        response=OrderOut,
        status=201,
        errors=(404, 409, 410),
        description="Prices the order like POST /v1/orders/quote, then posts every payment "
        "and the points earned in one transaction; payments must add up to the quoted total "
        "(422 payments_mismatch). Stored value needs the member's password (403 "
        "wrong_password) or a consumption code, which is used up (404/409/410). Balances "
        "never go negative (409 insufficient_balance / insufficient_points / "
        "insufficient_uses). Level upgrades are applied and listed." + _IDEMPOTENT,
    ),
    Operation(
        method="GET",
        path="/v1/orders/{order_id}",
        handler=get_order,
        summary="Read a committed order",
        tag="orders",
        response=OrderRecord,
        int_params=("order_id",),
    ),
    Operation(
        method="POST",
        path="/v1/orders/{order_id}/refunds",
        handler=refund_order,
        summary="Refund part or all of an order: stored value, points and count uses "
        "go back in proportion",
        tag="orders",
        request=RefundCreate,
        response=RefundOut,
        status=201,
        errors=(409,),
        int_params=("order_id",),
        description="Each component is reversed by its share of the amount refunded so far "
        "(rounded half up, minus what earlier refunds reversed). Earned points already "
        "spent are reported as points_shortfall. A gateway key refunds only its own "
        "store's orders (403 other_store). pay_back lists cash/external amounts the "
        "till returns. 409 refund_exceeds_order past the order total." + _IDEMPOTENT,
    ),
    Operation(
        method="POST",
        path="/v1/recharges",
        handler=recharge,
        summary="Recharge stored value (applies the level's recharge rule)",
        tag="stored value",
        request=RechargeCreate,
        response=RechargeOut,
        status=201,
        errors=(404, 409),
        description="Posts the amount, the rule's first-time bonus money and points, and "
        "schedules its periodic returns (listed in the answer)." + _IDEMPOTENT,
    ),
    Operation(
        method="GET",
        path="/v1/members/{member_id}/scheduled-bonuses",
        handler=scheduled_bonuses,
        summary="A member's recharge returns, paid and to come",
        tag="stored value",
        response=ScheduledBonusList,
        int_params=("member_id",),
    ),
    Operation(
        method="POST",
        path="/v1/passes",
        handler=sell_pass,
        summary="Sell a count or time card to a member",
        tag="passes",
        request=PassSale,
        response=PassOut,
        status=201,
        errors=(404, 409, 410),
        description="Paid in cash, externally or from stored value (password or consumption "
        "code)." + _IDEMPOTENT,
    ),
    Operation(
        method="GET",
        path="/v1/members/{member_id}/passes",
        handler=member_passes,
        summary="A member's count and time cards",
        tag="passes",
        response=PassList,
        int_params=("member_id",),
    ),
    Operation(
        method="POST",
        path="/v1/time-sessions",
        handler=start_session,
        summary="Start a time-card session at a terminal (e.g. a billiards table)",
        tag="passes",
        request=SessionStart,
        response=SessionOut,
        status=201,
        errors=(404, 409, 410),
        description=_IDEMPOTENT.strip(),
    ),
    Operation(
        method="POST",
        path="/v1/time-sessions/{session_id}/stop",
        handler=stop_session,
        summary="Stop a session and bill it per started step: pass minutes, then stored value",
        tag="passes",
        request=SessionStop,
        response=SessionOut,
        errors=(409, 410),
        int_params=("session_id",),
        description="Stored value is charged only for steps the pass does not cover and "
        "then needs the member's password or a consumption code." + _IDEMPOTENT,
    ),
)
