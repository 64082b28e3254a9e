"""Notification and service-plan endpoints (docs/notifications.md).

Templates, settings, campaigns, the outbox and inbound tokens are for HQ (admin keys). Opt-outs,
replies and service plans are for any key (a till records a member's wish or books a
service), service plans only for the caller's own store. The inbound reply endpoint is called
by the SMS gateway with its own per-sender token, not an API key.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, ValidationError

from .api import Operation, QueryParam, parse_body, path_int, principal, respond, services
from .errors import Invalid, NotFound
from .notifications import NotifySettings
from .schemas import MAX_ROW_ID, Body, EntityId, Out
from .service_plans import ServicePlanCreate, ServicePlanList, ServicePlanOut

NAME = r"^[a-z][a-z0-9_]{0,31}$"
_NAME = re.compile(NAME)
ChannelName = Annotated[str, Field(pattern=NAME, description="sms, email or a plugin's channel")]
TemplateText = Annotated[str, Field(min_length=1, max_length=4000)]
Subject = Annotated[str, Field(max_length=200)]
Clock = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM")]
Status = Literal["pending", "sent", "failed", "skipped"]


class NotificationOut(Out):
    id: int
    member_id: int | None
    store: str | None
    kind: str
    channel: str
    address_masked: str
    subject: str | None
    text: str
    marketing: bool = Field(description="held by quiet hours; transactional kinds are not")
    status: Status
    attempts: int
    next_at: str | None
    last_error: str | None
    created_at: str
    sent_at: str | None


class NotificationList(Out):
    items: list[NotificationOut]


class TemplatePut(Body):
    store: EntityId | None = Field(default=None, description="only for this store; else chain")
    subject: Subject | None = Field(default=None, description="email subject (a template too)")
    text: TemplateText = Field(description="{placeholder} names; {{ and }} for braces")


class TemplateOut(Out):
    kind: str
    channel: str | None = Field(description="None for a built-in default (every channel)")
    store: str | None
    subject: str | None
    text: str
    default: bool


class TemplateList(Out):
    items: list[TemplateOut]


class SettingsBody(Body):
    quiet_start: Clock | None = "21:00"
    quiet_end: Clock | None = "08:00"
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "Asia/Shanghai"
    store_timezones: dict[str, str] = Field(default_factory=dict)
    dormant_days: Annotated[int, Field(ge=0, le=3650)] = 90
    redeemable_points: Annotated[int, Field(ge=0, le=10**12)] = 0
    birthdays: bool = True


class SettingsOut(Out):
    quiet_start: str | None
    quiet_end: str | None
    timezone: str
    store_timezones: dict[str, str]
    dormant_days: int = Field(description="dormant wake-up after this many days; 0 = off")
    redeemable_points: int = Field(description="points-redeemable reminder from; 0 = off")
    birthdays: bool


class CampaignFilter(Body):
    level: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    store: EntityId | None = Field(default=None, description="members identified there")
    birthday_month: Annotated[int, Field(ge=1, le=12)] | None = None


class CampaignCreate(Body):
    key: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="idempotency key: the same key queues the campaign once"
    )
    name: Annotated[str, Field(min_length=1, max_length=200)]
    channel: ChannelName = "sms"
    subject: Subject | None = None
    text: TemplateText
    filter: CampaignFilter = Field(default_factory=CampaignFilter)


class CampaignOut(Out):
    id: int
    key: str
    name: str
    channel: str
    queued: int = Field(
        description="messages queued (members without an address or opted out are left out)"
    )
    filter: dict[str, Any]
    created_at: str
    repeated: bool = Field(description="true when this key was posted before (nothing queued)")


class InboundToken(Out):
    sender: str
    token: str = Field(description="shown once; central keeps only its SHA-256")


class InboundReply(Body):
    phone: Annotated[str, Field(pattern=r"^\+?[0-9]{3,20}$")]
    text: Annotated[str, Field(max_length=2000)]
    message_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class ReplyStored(Out):
    member_id: int | None
    opted_out: bool


class ReplyOut(Out):
    id: int
    sender: str
    text: str
    opted_out: bool
    received_at: str


class ReplyList(Out):
    items: list[ReplyOut]


class OptOuts(Out):
    channels: list[str]


def _name(request: web.Request, key: str) -> str:
    value = request.match_info[key]
    if not _NAME.fullmatch(value):
        raise NotFound(f"no such {key}", code="not_found")
    return value


# --- admin ------------------------------------------------------------------------------


async def list_outbox(request: web.Request) -> web.Response:
    query = request.query
    member = query.get("member_id")
    status = query.get("status")
    limit = query.get("limit", "100")
    if (member is not None and not _digits(member)) or not _digits(limit):
        raise Invalid("member_id and limit are numbers", code="invalid_request")
    if status is not None and status not in ("pending", "sent", "failed", "skipped"):
        raise Invalid("status: pending, sent, failed or skipped", code="invalid_request")
    member_id = int(member) if member else None
    if member_id is not None and member_id > MAX_ROW_ID:  # beyond any row: nobody's messages
        return respond(NotificationList, {"items": []})
    items = await services(request).notifications.outbox(
        member_id=member_id,
        status=status,
        limit=max(1, min(int(limit), 1000)),
    )
    return respond(NotificationList, {"items": items})


def _digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes "²", which ``int`` refuses), at most 18."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit()


async def list_templates(request: web.Request) -> web.Response:
    items = await services(request).notifications.templates()
    return respond(TemplateList, {"items": items})


async def put_template(request: web.Request) -> web.Response:
    kind, channel = _name(request, "kind"), _name(request, "channel")
    body = await parse_body(request, TemplatePut)
    saved = await services(request).notifications.put_template(
        kind, channel, body.store, body.subject, body.text
    )
    return respond(TemplateOut, saved)


async def delete_template(request: web.Request) -> web.Response:
    kind, channel = _name(request, "kind"), _name(request, "channel")
    store = request.query.get("store")
    await services(request).notifications.delete_template(kind, channel, store)
    return respond(None, None, 204)


async def get_settings(request: web.Request) -> web.Response:
    settings = await services(request).notifications.settings()
    return respond(SettingsOut, settings.__dict__)


async def put_settings(request: web.Request) -> web.Response:
    body = await parse_body(request, SettingsBody)
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    for zone in [body.timezone, *body.store_timezones.values()]:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise Invalid(f"unknown time zone {zone[:64]!r}", code="invalid_request") from exc
    if (body.quiet_start is None) != (body.quiet_end is None):
        raise Invalid("quiet_start and quiet_end go together", code="invalid_request")
    saved = await services(request).notifications.save_settings(NotifySettings(**body.model_dump()))
    return respond(SettingsOut, saved.__dict__)


async def create_campaign(request: web.Request) -> web.Response:
    body = await parse_body(request, CampaignCreate)
    result = await services(request).campaigns.queue(
        key=body.key,
        name=body.name,
        channel=body.channel,
        subject=body.subject,
        text=body.text,
        member_filter=body.filter.model_dump(exclude_none=True),
    )
    return respond(CampaignOut, result, 201)


async def new_inbound_token(request: web.Request) -> web.Response:
    sender = _name(request, "sender")
    token = await services(request).notifications.inbound.new_inbound_token(sender)
    return respond(InboundToken, {"sender": sender, "token": token}, 201)


# --- the SMS gateway's callback ----------------------------------------------------------


async def inbound_reply(request: web.Request) -> web.Response:
    """A reply from a member, posted by the SMS gateway as JSON or as a form."""
    sender = _name(request, "sender")
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else request.query.get("token")
    inbound = services(request).notifications.inbound
    await inbound.check_inbound_token(sender, token)
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        try:
            body = InboundReply.model_validate(
                {k: str(v) for k, v in form.items() if k in InboundReply.model_fields}
            )
        except ValidationError as exc:
            raise Invalid("phone and text are required", code="invalid_request") from exc
    else:
        body = await parse_body(request, InboundReply)
    stored = await inbound.receive_reply(sender, body.phone, body.text, body.message_id)
    return respond(ReplyStored, stored)


# --- members: opt-outs and replies ---------------------------------------------------------


async def get_opt_outs(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    channels = await services(request).notifications.inbound.opt_outs(member_id)
    return respond(OptOuts, {"channels": channels})


async def opt_out(request: web.Request) -> web.Response:
    member_id, channel = path_int(request, "member_id"), _name(request, "channel")
    inbound = services(request).notifications.inbound
    channels = await inbound.set_opt_out(member_id, channel, request.method == "PUT")
    return respond(OptOuts, {"channels": channels})


async def list_replies(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    await services(request).notifications.inbound.opt_outs(member_id)  # 404 when unknown
    items = await services(request).notifications.inbound.replies(member_id)
    return respond(ReplyList, {"items": items})


# --- service plans ------------------------------------------------------------------------


async def create_plan(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    body = await parse_body(request, ServicePlanCreate)
    plan = await services(request).service_plans.create(member_id, principal(request), body)
    return respond(ServicePlanOut, plan, 201)


async def list_plans(request: web.Request) -> web.Response:
    member_id = path_int(request, "member_id")
    items = await services(request).service_plans.for_member(member_id)
    return respond(ServicePlanList, {"items": items})


async def complete_plan(request: web.Request) -> web.Response:
    plan_id = path_int(request, "plan_id")
    status: Literal["completed", "cancelled"] = (
        "completed" if request.path.endswith("/complete") else "cancelled"
    )
    plan = await services(request).service_plans.finish(plan_id, principal(request), status)
    return respond(ServicePlanOut, plan)


BASE = "/v1/notifications"
MEMBER = "/v1/members/{member_id}"
PLAN = "/v1/service-plans/{plan_id}"
OPERATIONS = (
    Operation(
        method="GET",
        path=BASE,
        handler=list_outbox,
        summary="The notification outbox, newest first (addresses masked)",
        tag="notifications",
        response=NotificationList,
        auth="admin",
        errors=(422,),
        query=(
            QueryParam(name="member_id", description="one member's", pattern=r"^[0-9]{1,12}$"),
            QueryParam(name="status", description="pending, sent, failed or skipped"),
            QueryParam(name="limit", description="at most 1000 (100)", pattern=r"^[0-9]{1,6}$"),
        ),
    ),
    Operation(
        method="GET",
        path=f"{BASE}/templates",
        handler=list_templates,
        summary="Stored templates, then the built-in defaults they override",
        tag="notifications",
        response=TemplateList,
        auth="admin",
    ),
    Operation(
        method="PUT",
        path=f"{BASE}/templates/{{kind}}/{{channel}}",
        handler=put_template,
        summary="Create or replace a template for one kind and channel (chain or one store)",
        tag="notifications",
        request=TemplatePut,
        response=TemplateOut,
        auth="admin",
        str_params=("kind", "channel"),
    ),
    Operation(
        method="DELETE",
        path=f"{BASE}/templates/{{kind}}/{{channel}}",
        handler=delete_template,
        summary="Remove a stored template (the default applies again)",
        tag="notifications",
        status=204,
        auth="admin",
        errors=(422,),
        str_params=("kind", "channel"),
        query=(QueryParam(name="store", description="the store's template; else the chain's"),),
    ),
    Operation(
        method="GET",
        path=f"{BASE}/settings",
        handler=get_settings,
        summary="Quiet hours, time zones and the scheduled messages' settings",
        tag="notifications",
        response=SettingsOut,
        auth="admin",
    ),
    Operation(
        method="PUT",
        path=f"{BASE}/settings",
        handler=put_settings,
        summary="Replace the notification settings",
        tag="notifications",
        request=SettingsBody,
        response=SettingsOut,
        auth="admin",
    ),
    Operation(
        method="POST",
        path=f"{BASE}/campaigns",
        handler=create_campaign,
        summary="Queue a bulk message for the members a filter selects (once per key: a "
        "repeated key answers the first campaign with repeated = true)",
        tag="notifications",
        request=CampaignCreate,
        response=CampaignOut,
        status=201,
        auth="admin",
    ),
    Operation(
        method="PUT",
        path=f"{BASE}/inbound-tokens/{{sender}}",
        handler=new_inbound_token,
        summary="Create or rotate the token an SMS gateway uses to post replies",
        tag="notifications",
        response=InboundToken,
        status=201,
        auth="admin",
        str_params=("sender",),
    ),
    Operation(
        method="POST",
        path=f"{BASE}/inbound/{{sender}}",
        handler=inbound_reply,
        summary="A member's reply, posted by the SMS gateway (JSON or form); TD/退订 opts out",
        tag="notifications",
        request=InboundReply,
        response=ReplyStored,
        auth="public",
        errors=(401,),
        str_params=("sender",),
        query=(QueryParam(name="token", description="the sender's token (or Bearer header)"),),
        description="Authenticated by the sender's token from `PUT /v1/notifications/"
        "inbound-tokens/{sender}`, as `Authorization: Bearer <token>` or `?token=`.",
    ),
    Operation(
        method="GET",
        path=f"{MEMBER}/notification-opt-outs",
        handler=get_opt_outs,
        summary="The channels a member opted out of",
        tag="notifications",
        response=OptOuts,
        int_params=("member_id",),
    ),
    Operation(
        method="PUT",
        path=f"{MEMBER}/notification-opt-outs/{{channel}}",
        handler=opt_out,
        summary="Opt a member out of a channel (queued messages are skipped too)",
        tag="notifications",
        response=OptOuts,
        int_params=("member_id",),
        str_params=("channel",),
    ),
    Operation(
        method="DELETE",
        path=f"{MEMBER}/notification-opt-outs/{{channel}}",
        handler=opt_out,
        summary="Opt a member back into a channel",
        tag="notifications",
        response=OptOuts,
        int_params=("member_id",),
        str_params=("channel",),
    ),
    Operation(
        method="GET",
        path=f"{MEMBER}/replies",
        handler=list_replies,
        summary="A member's replies to messages, newest first",
        tag="notifications",
        response=ReplyList,
        int_params=("member_id",),
    ),
    Operation(
        method="POST",
        path=f"{MEMBER}/service-plans",
        handler=create_plan,
        summary="Book a service plan (due date or days from today; remind N days before)",
        tag="service plans",
        request=ServicePlanCreate,
        response=ServicePlanOut,
        status=201,
        int_params=("member_id",),
    ),
    Operation(
        method="GET",
        path=f"{MEMBER}/service-plans",
        handler=list_plans,
        summary="A member's service plans, by due date",
        tag="service plans",
        response=ServicePlanList,
        int_params=("member_id",),
    ),
    Operation(
        method="POST",
        path=f"{PLAN}/complete",
        handler=complete_plan,
        summary="Mark a service plan done (409 when already closed)",
        tag="service plans",
        response=ServicePlanOut,
        errors=(409,),
        int_params=("plan_id",),
    ),
    Operation(
        method="POST",
        path=f"{PLAN}/cancel",
        handler=complete_plan,
        summary="Cancel a service plan (409 when already closed)",
        tag="service plans",
        response=ServicePlanOut,
        errors=(409,),
        int_params=("plan_id",),
    ),
)
