"""Staff and gift endpoints (issue 8): ``/v1/staff`` for HQ, ``/v1/gifts`` read by any key.

Staff are HQ's (admin keys only, reads included: names and roles are personal data); a
till may list gifts and their prices in points, but only HQ writes them. Every body carries
``custom`` (see ``/v1/custom-fields``), validated like a member's.
"""

from __future__ import annotations

from aiohttp import web

from .api import ID_QUERY, Operation, QueryParam, parse_body, path_int, respond
from .api import services as services_of
from .errors import Invalid
from .staff_gifts import (
    GiftCreate,
    GiftList,
    GiftOut,
    GiftUpdate,
    StaffCreate,
    StaffList,
    StaffOut,
    StaffUpdate,
)

STAFF = "/v1/staff/{staff_id}"
GIFT = "/v1/gifts/{gift_id}"
ACTIVE = QueryParam(name="active", description="true or false: only active or inactive rows")
STORE = QueryParam(name="store", description="only staff of this store")


def _active(request: web.Request) -> bool | None:
    value = request.query.get("active")
    if value is None:
        return None
    if value not in ("true", "false"):
        raise Invalid("active: true or false", code="invalid_request")
    return value == "true"


async def create_staff(request: web.Request) -> web.Response:
    data = await parse_body(request, StaffCreate)
    return respond(StaffOut, await services_of(request).staff_gifts.create_staff(data), 201)


async def list_staff(request: web.Request) -> web.Response:
    store = request.query.get("store")
    if store is not None and not ID_QUERY.fullmatch(store):
        raise Invalid("store: not a valid store id", code="invalid_request")
    items = await services_of(request).staff_gifts.list_staff(store, _active(request))
    return respond(StaffList, {"items": items})


async def get_staff(request: web.Request) -> web.Response:
    staff_id = path_int(request, "staff_id")
    return respond(StaffOut, await services_of(request).staff_gifts.get_staff(staff_id))


async def update_staff(request: web.Request) -> web.Response:
    staff_id = path_int(request, "staff_id")
    data = await parse_body(request, StaffUpdate)
    return respond(StaffOut, await services_of(request).staff_gifts.update_staff(staff_id, data))


async def deactivate_staff(request: web.Request) -> web.Response:
    staff_id = path_int(request, "staff_id")
    return respond(StaffOut, await services_of(request).staff_gifts.deactivate_staff(staff_id))


async def create_gift(request: web.Request) -> web.Response:
    data = await parse_body(request, GiftCreate)
    return respond(GiftOut, await services_of(request).staff_gifts.create_gift(data), 201)


async def list_gifts(request: web.Request) -> web.Response:
    items = await services_of(request).staff_gifts.list_gifts(_active(request))
    return respond(GiftList, {"items": items})


async def get_gift(request: web.Request) -> web.Response:
    gift_id = path_int(request, "gift_id")
    return respond(GiftOut, await services_of(request).staff_gifts.get_gift(gift_id))


async def update_gift(request: web.Request) -> web.Response:
    gift_id = path_int(request, "gift_id")
    data = await parse_body(request, GiftUpdate)
    return respond(GiftOut, await services_of(request).staff_gifts.update_gift(gift_id, data))


async def deactivate_gift(request: web.Request) -> web.Response:
    gift_id = path_int(request, "gift_id")
    return respond(GiftOut, await services_of(request).staff_gifts.deactivate_gift(gift_id))


OPERATIONS = (
    Operation(
        method="POST",
        path="/v1/staff",
        handler=create_staff,
        summary="Add a staff member to a store (admin), with custom fields",
        tag="staff",
        request=StaffCreate,
        response=StaffOut,
        status=201,
        auth="admin",
        errors=(404,),
    ),
    Operation(
        method="GET",
        path="/v1/staff",
        handler=list_staff,
        summary="List staff (admin), oldest first",
        tag="staff",
        response=StaffList,
        auth="admin",
        query=(STORE, ACTIVE),
        errors=(422,),
    ),
    Operation(
        method="GET",
        path=STAFF,
        handler=get_staff,
        summary="Read a staff member (admin)",
        tag="staff",
        response=StaffOut,
        auth="admin",
        int_params=("staff_id",),
    ),
    Operation(
        method="PATCH",
        path=STAFF,
        handler=update_staff,
        summary="Change a staff member (admin): only the fields sent; custom null clears one",
        tag="staff",
        request=StaffUpdate,
        response=StaffOut,
        auth="admin",
        int_params=("staff_id",),
    ),
    Operation(
        method="DELETE",
        path=STAFF,
        handler=deactivate_staff,
        summary="Deactivate a staff member (admin); the row stays",
        tag="staff",
        response=StaffOut,
        auth="admin",
        int_params=("staff_id",),
    ),
    Operation(
        method="POST",
        path="/v1/gifts",
        handler=create_gift,
        summary="Add a gift members could get for points (admin), with custom fields",
        tag="gifts",
        request=GiftCreate,
        response=GiftOut,
        status=201,
        auth="admin",
    ),
    Operation(
        method="GET",
        path="/v1/gifts",
        handler=list_gifts,
        summary="List gifts with their points cost and stock, oldest first",
        tag="gifts",
        response=GiftList,
        query=(ACTIVE,),
        errors=(422,),
    ),
    Operation(
        method="GET",
        path=GIFT,
        handler=get_gift,
        summary="Read a gift",
        tag="gifts",
        response=GiftOut,
        int_params=("gift_id",),
    ),
    Operation(
        method="PATCH",
        path=GIFT,
        handler=update_gift,
        summary="Change a gift (admin): only the fields sent; custom null clears one",
        tag="gifts",
        request=GiftUpdate,
        response=GiftOut,
        auth="admin",
        int_params=("gift_id",),
    ),
    Operation(
        method="DELETE",
        path=GIFT,
        handler=deactivate_gift,
        summary="Deactivate a gift (admin); the row stays",
        tag="gifts",
        response=GiftOut,
        auth="admin",
        int_params=("gift_id",),
    ),
)
