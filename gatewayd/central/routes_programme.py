"""HQ's programme endpoints: levels, upgrade and recharge rules, pass products, settings,
plus the ledger's reports (a member's balances and entries, settlement between stores) and
HQ corrections (adjustments and reversals, both new entries: nothing is ever edited).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import sqlalchemy as sa
from aiohttp import web
from pydantic import Field

from . import ledger
from .api import Operation, QueryParam, parse_body, path_int, respond, services
from .clock import iso, to_millis
from .errors import Invalid
from .ledger_reports import EntryOut as EntryOut
from .ledger_reports import MemberLedger as MemberLedger
from .ledger_reports import Settlement as Settlement
from .ledger_reports import entry_out as entry_out
from .ledger_reports import history as history
from .ledger_reports import settlement as settlement
from .levels import (
    LevelIn,
    LevelList,
    LevelOut,
    ProgrammeSettings,
    ProgrammeSettingsUpdate,
    UpgradeRuleIn,
    UpgradeRuleList,
    UpgradeRuleOut,
    programme_settings_in,
    update_programme_settings,
)
from .models_programme import ledger_entries
from .orders import RequestId
from .passes import PassProductIn, PassProductList, PassProductOut
from .recharge import RechargeRuleIn, RechargeRuleList, RechargeRuleOut
from .routes_orders import replayed
from .schemas import MAX_FEN, Body

# --- models ---------------------------------------------------------------------------------


class Adjustment(Body):
    """An HQ correction: one new entry (the cached balance follows; never below zero)."""

    request_id: RequestId
    account: Literal["points", "stored_value"]
    amount: Annotated[int, Field(ge=-MAX_FEN, le=MAX_FEN)]
    reason: Annotated[str, Field(min_length=1, max_length=60)]


class Reversal(Body):
    request_id: RequestId


# --- handlers -------------------------------------------------------------------------------


async def put_level(request: web.Request) -> web.Response:
    data = await parse_body(request, LevelIn)
    return respond(LevelOut, await services(request).programme.levels.put_level(data))


async def list_levels(request: web.Request) -> web.Response:
    items = await services(request).programme.levels.list_levels()
    return respond(LevelList, {"items": items})


async def create_upgrade_rule(request: web.Request) -> web.Response:
    data = await parse_body(request, UpgradeRuleIn)
    rule = await services(request).programme.levels.create_rule(data)
    return respond(UpgradeRuleOut, rule, 201)


async def list_upgrade_rules(request: web.Request) -> web.Response:
    items = await services(request).programme.levels.list_rules()
    return respond(UpgradeRuleList, {"items": items})


async def delete_upgrade_rule(request: web.Request) -> web.Response:
    await services(request).programme.levels.delete_rule(path_int(request, "rule_id"))
    return respond(None, None, 204)


async def create_recharge_rule(request: web.Request) -> web.Response:
    data = await parse_body(request, RechargeRuleIn)
    rule = await services(request).programme.recharges.create_rule(data)
    return respond(RechargeRuleOut, rule, 201)


async def list_recharge_rules(request: web.Request) -> web.Response:
    items = await services(request).programme.recharges.list_rules()
    return respond(RechargeRuleList, {"items": items})


async def deactivate_recharge_rule(request: web.Request) -> web.Response:
    rule_id = path_int(request, "rule_id")
    rule = await services(request).programme.recharges.deactivate_rule(rule_id)
    return respond(RechargeRuleOut, rule)


async def create_pass_product(request: web.Request) -> web.Response:
    data = await parse_body(request, PassProductIn)
    product = await services(request).programme.passes.create_product(data)
    return respond(PassProductOut, product, 201)


async def list_pass_products(request: web.Request) -> web.Response:
    items = await services(request).programme.passes.list_products()
    return respond(PassProductList, {"items": items})


async def deactivate_pass_product(request: web.Request) -> web.Response:
    product_id = path_int(request, "product_id")
    product = await services(request).programme.passes.deactivate_product(product_id)
    return respond(PassProductOut, product)


async def get_settings(request: web.Request) -> web.Response:
    db = services(request).db
    async with db.read() as conn:
        values = await programme_settings_in(conn)
    return respond(ProgrammeSettings, values)


async def patch_settings(request: web.Request) -> web.Response:
    data = await parse_body(request, ProgrammeSettingsUpdate)
    changes = data.model_dump(exclude_unset=True)
    return respond(
        ProgrammeSettings, await update_programme_settings(services(request).db, changes)
    )


async def member_ledger(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    db = services(request).db
    async with db.read() as conn:
        current = await ledger.balances(conn, member_id)
    entries = await history(db, member_id)
    return respond(MemberLedger, {"member_id": member_id, "balances": current, "entries": entries})


def _time_param(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 15:
        raise Invalid(f"{name} must be epoch milliseconds", code="invalid_request")
    return int(text)


async def get_settlement(request: web.Request) -> web.Response:
    now = to_millis(services(request).clock.now())
    since = _time_param(request, "since", 0)
    until = _time_param(request, "until", now + 1)
    items = await settlement(services(request).db, since, until)
    return respond(Settlement, {"since": iso(since), "until": iso(until), "items": items})


async def adjust(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    data = await parse_body(request, Adjustment)
    svc = services(request)
    now = to_millis(svc.clock.now())

    async def work(conn: Any) -> tuple[int, Any]:
        posted = await ledger.post(
            conn,
            member_id=member_id,
            store=ledger.HQ_STORE,
            account=data.account,
            amount=data.amount,
            kind="adjustment",
            now=now,
            ref=data.reason,
        )
        row = (
            await conn.execute(
                sa.select(ledger_entries).where(ledger_entries.c.id == posted.entry_id)
            )
        ).one()
        return 201, EntryOut.model_validate(entry_out(row)).model_dump(mode="json")

    replay = await ledger.run_idempotent(
        svc.db,
        store=ledger.HQ_STORE,
        request_id=data.request_id,
        operation=f"adjust:{member_id}",
        body=data.model_dump(mode="json"),
        now=now,
        work=work,
    )
    return replayed(replay)


async def reverse_entry(request: web.Request) -> web.Response:
    entry_id = path_int(request, "entry_id")
    data = await parse_body(request, Reversal)
    svc = services(request)
    now = to_millis(svc.clock.now())

    async def work(conn: Any) -> tuple[int, Any]:
        posted = await ledger.reverse(conn, entry_id, store=ledger.HQ_STORE, now=now)
        row = (
            await conn.execute(
                sa.select(ledger_entries).where(ledger_entries.c.id == posted.entry_id)
            )
        ).one()
        return 201, EntryOut.model_validate(entry_out(row)).model_dump(mode="json")

    replay = await ledger.run_idempotent(
        svc.db,
        store=ledger.HQ_STORE,
        request_id=data.request_id,
        operation=f"reverse:{entry_id}",
        body=data.model_dump(mode="json"),
        now=now,
        work=work,
    )
    return replayed(replay)


LEVEL = "/v1/programme/levels"
OPERATIONS = (
    Operation(
        method="PUT",
        path=LEVEL,
        handler=put_level,
        summary="Define a level, or rename / re-rank it (admin)",
        tag="programme",
        request=LevelIn,
        response=LevelOut,
        auth="admin",
    ),
    Operation(
        method="GET",
        path=LEVEL,
        handler=list_levels,
        summary="List the levels, lowest rank first",
        tag="programme",
        response=LevelList,
    ),
    Operation(
        method="POST",
        path="/v1/programme/upgrade-rules",
        handler=create_upgrade_rule,
        summary="Add an upgrade rule: from level, cumulative earned points, to level, "
        "points deducted (admin)",
        tag="programme",
        request=UpgradeRuleIn,
        response=UpgradeRuleOut,
        status=201,
        auth="admin",
        errors=(404, 409),
    ),
    Operation(
        method="GET",
        path="/v1/programme/upgrade-rules",
        handler=list_upgrade_rules,
        summary="List the upgrade rules",
        tag="programme",
        response=UpgradeRuleList,
    ),
    Operation(
        method="DELETE",
        path="/v1/programme/upgrade-rules/{rule_id}",
        handler=delete_upgrade_rule,
        summary="Remove an upgrade rule (admin)",
        tag="programme",
        status=204,
        auth="admin",
        int_params=("rule_id",),
    ),
    Operation(
        method="POST",
        path="/v1/programme/recharge-rules",
        handler=create_recharge_rule,
        summary="Add a recharge rule: amount → first-time bonus money and points, then "
        "every N days a bonus, K times (admin)",
        tag="programme",
        request=RechargeRuleIn,
        response=RechargeRuleOut,
        status=201,
        auth="admin",
        errors=(404,),
    ),
    Operation(
        method="GET",
        path="/v1/programme/recharge-rules",
        handler=list_recharge_rules,
        summary="List the recharge rules",
        tag="programme",
        response=RechargeRuleList,
    ),
    Operation(
        method="DELETE",
        path="/v1/programme/recharge-rules/{rule_id}",
        handler=deactivate_recharge_rule,
        summary="Stop using a recharge rule for new recharges (admin)",
        tag="programme",
        response=RechargeRuleOut,
        auth="admin",
        int_params=("rule_id",),
    ),
    Operation(
        method="POST",
        path="/v1/programme/pass-products",
        handler=create_pass_product,
        summary="Define a count card (uses) or time card (minutes, step and rate) (admin)",
        tag="programme",
        request=PassProductIn,
        response=PassProductOut,
        status=201,
        auth="admin",
    ),
    Operation(
        method="GET",
        path="/v1/programme/pass-products",
        handler=list_pass_products,
        summary="List the count and time card products",
        tag="programme",
        response=PassProductList,
    ),
    Operation(
        method="DELETE",
        path="/v1/programme/pass-products/{product_id}",
        handler=deactivate_pass_product,
        summary="Stop selling a pass product (admin); sold passes stay valid",
        tag="programme",
        response=PassProductOut,
        auth="admin",
        int_params=("product_id",),
    ),
    Operation(
        method="GET",
        path="/v1/programme/settings",
        handler=get_settings,
        summary="The chain-wide programme settings",
        tag="programme",
        response=ProgrammeSettings,
    ),
    Operation(
        method="PATCH",
        path="/v1/programme/settings",
        handler=patch_settings,
        summary="Change programme settings (admin; only the fields sent)",
        tag="programme",
        request=ProgrammeSettingsUpdate,
        response=ProgrammeSettings,
        auth="admin",
    ),
    Operation(
        method="GET",
        path="/v1/members/{member_id}/ledger",
        handler=member_ledger,
        summary="A member's balances and latest 100 ledger entries",
        tag="ledger",
        response=MemberLedger,
        int_params=("member_id",),
    ),
    Operation(
        method="POST",
        path="/v1/members/{member_id}/adjustments",
        handler=adjust,
        summary="Correct a member's points or stored value with one new entry (admin)",
        tag="ledger",
        request=Adjustment,
        response=EntryOut,
        status=201,
        auth="admin",
        errors=(409,),
        int_params=("member_id",),
        description="Idempotent per request_id (HQ's own namespace).",
    ),
    Operation(
        method="POST",
        path="/v1/ledger/entries/{entry_id}/reversal",
        handler=reverse_entry,
        summary="Reverse one ledger entry exactly (admin); 409 when already reversed",
        tag="ledger",
        request=Reversal,
        response=EntryOut,
        status=201,
        auth="admin",
        errors=(409,),
        int_params=("entry_id",),
    ),
    Operation(
        method="GET",
        path="/v1/ledger/settlement",
        handler=get_settlement,
        summary="Credits and debits per store and account between two times (admin)",
        tag="ledger",
        response=Settlement,
        auth="admin",
        errors=(422,),
        query=(
            QueryParam(name="since", description="epoch ms, inclusive (default 0)"),
            QueryParam(name="until", description="epoch ms, exclusive (default now)"),
        ),
        description="Stored value recharged at store A and spent at store B appears as "
        "A's credit and B's debit, so stores can settle between them.",
    ),
)
