"""Member, card, payment-account and consumption-code endpoints.

Members are chain-wide: any gateway may register and read them (a new member signs up at
whichever store they walk into); deactivating a member is for HQ (admin keys) only.
"""

from __future__ import annotations

from aiohttp import web

from .api import Operation, parse_body, path_int, principal, respond, services
from .clock import iso
from .schemas import (
    CardCreate,
    CardList,
    CardOut,
    ConsumptionCodeOut,
    MemberCreate,
    MemberOut,
    MemberUpdate,
    PasswordCheck,
    PasswordResult,
    PaymentBindingCreate,
    PaymentBindingList,
    PaymentBindingOut,
)


async def create_member(request: web.Request) -> web.Response:
    data = await parse_body(request, MemberCreate)
    return respond(MemberOut, await services(request).members.create(data), 201)


async def get_member(request: web.Request) -> web.Response:
    return respond(MemberOut, await services(request).members.get(path_int(request, "member_id")))


async def update_member(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    data = await parse_body(request, MemberUpdate)
    return respond(MemberOut, await services(request).members.update(member_id, data))


async def deactivate_member(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    return respond(MemberOut, await services(request).members.deactivate(member_id))


async def check_password(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    data = await parse_body(request, PasswordCheck)
    svc = services(request)
    svc.issue_limit.hit(f"password/{member_id}")
    valid = await svc.members.check_password(member_id, data.password)
    return respond(PasswordResult, {"valid": valid})


async def add_card(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    data = await parse_body(request, CardCreate)
    return respond(CardOut, await services(request).members.add_card(member_id, data), 201)


async def list_cards(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    return respond(CardList, {"items": await services(request).members.list_cards(member_id)})


async def deactivate_card(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    card_id = path_int(request, "card_id")
    return respond(CardOut, await services(request).members.deactivate_card(member_id, card_id))


async def touch_card(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    card_id = path_int(request, "card_id")
    return respond(CardOut, await services(request).members.touch_card(member_id, card_id))


async def bind_payment(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    data = await parse_body(request, PaymentBindingCreate)
    binding = await services(request).members.bind_payment(member_id, data)
    return respond(PaymentBindingOut, binding, 201)


async def list_bindings(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    items = await services(request).members.list_bindings(member_id)
    return respond(PaymentBindingList, {"items": items})


async def unbind_payment(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    binding_id = path_int(request, "binding_id")
    await services(request).members.unbind_payment(member_id, binding_id)
    return respond(None, None, 204)


async def issue_code(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    svc = services(request)
    svc.issue_limit.hit(f"code/{member_id}")
    issued = await svc.codes.issue(member_id)
    return respond(
        ConsumptionCodeOut,
        {
            "code": issued.code,
            "member_id": issued.member_id,
            "expires_at": iso(issued.expires_at_ms),
            "valid_seconds": int(svc.settings.code_ttl),
        },
        201,
    )


async def _admin_only(request: web.Request) -> web.Response:
    principal(request).require_admin()
    return await deactivate_member(request)


MEMBER = "/v1/members/{member_id}"
CARD = MEMBER + "/cards/{card_id}"
OPERATIONS = (
    Operation(
        method="POST",
        path="/v1/members",
        handler=create_member,
        summary="Register a member",
        tag="members",
        request=MemberCreate,
        response=MemberOut,
        status=201,
        errors=(409,),
        description="Phone and ID number are unique across the chain (409 when taken).",
    ),
    Operation(
        method="GET",
        path=MEMBER,
        handler=get_member,
        summary="Read a member with all cards",
        tag="members",
        response=MemberOut,
        int_params=("member_id",),
    ),
    Operation(
        method="PATCH",
        path=MEMBER,
        handler=update_member,
        summary="Change a member's fields (only those sent; null clears)",
        tag="members",
        request=MemberUpdate,
        response=MemberOut,
        errors=(409,),
        int_params=("member_id",),
    ),
    Operation(
        method="DELETE",
        path=MEMBER,
        handler=_admin_only,
        summary="Deactivate a member (admin); identify no longer finds them",
        tag="members",
        response=MemberOut,
        int_params=("member_id",),
    ),
    Operation(
        method="POST",
        path=MEMBER + "/password-check",
        handler=check_password,
        summary="Check a member's password (e.g. confirming a phone identification)",
        tag="members",
        request=PasswordCheck,
        response=PasswordResult,
        errors=(429,),
        int_params=("member_id",),
    ),
    Operation(
        method="POST",
        path=MEMBER + "/cards",
        handler=add_card,
        summary="Add a card (main or secondary); numbers get a Luhn check digit",
        tag="cards",
        request=CardCreate,
        response=CardOut,
        status=201,
        errors=(409,),
        int_params=("member_id",),
    ),
    Operation(
        method="GET",
        path=MEMBER + "/cards",
        handler=list_cards,
        summary="List a member's cards",
        tag="cards",
        response=CardList,
        int_params=("member_id",),
    ),
    Operation(
        method="DELETE",
        path=CARD,
        handler=deactivate_card,
        summary="Deactivate a card",
        tag="cards",
        response=CardOut,
        int_params=("member_id", "card_id"),
    ),
    Operation(
        method="POST",
        path=CARD + "/touch",
        handler=touch_card,
        summary="Record that the member used this card last (wins for payment codes)",
        tag="cards",
        response=CardOut,
        errors=(409,),
        int_params=("member_id", "card_id"),
    ),
    Operation(
        method="POST",
        path=MEMBER + "/payment-accounts",
        handler=bind_payment,
        summary="Bind a WeChat openid or Alipay user_id to one of the member's cards",
        tag="cards",
        request=PaymentBindingCreate,
        response=PaymentBindingOut,
        status=201,
        errors=(409,),
        int_params=("member_id",),
    ),
    Operation(
        method="GET",
        path=MEMBER + "/payment-accounts",
        handler=list_bindings,
        summary="List the member's payment-account bindings",
        tag="cards",
        response=PaymentBindingList,
        int_params=("member_id",),
    ),
    Operation(
        method="DELETE",
        path=MEMBER + "/payment-accounts/{binding_id}",
        handler=unbind_payment,
        summary="Remove a payment-account binding",
        tag="cards",
        status=204,
        int_params=("member_id", "binding_id"),
    ),
    Operation(
        method="POST",
        path=MEMBER + "/consumption-codes",
        handler=issue_code,
        summary="Issue a consumption code (valid 10 minutes, single use)",
        tag="codes",
        response=ConsumptionCodeOut,
        status=201,
        errors=(429,),
        int_params=("member_id",),
    ),
)
