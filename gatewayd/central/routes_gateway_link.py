"""The gateway link endpoints: outbox intake, the channel, and posting to it."""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from .api import Operation, QueryParam, parse_body, principal, respond, services
from .errors import Invalid
from .gateway_link import (
    ChannelMessageCreate,
    GatewayCommand,
    GatewayLink,
    MessageCreated,
    OutboxBatch,
    OutboxResult,
)

KEEPALIVE = 15.0
POLL = 1.0


def link(request: web.Request) -> GatewayLink:
    return services(request).link


async def outbox(request: web.Request) -> web.Response:
    gateway_id = request.match_info["gateway_id"]
    caller = principal(request)
    caller.require_gateway(gateway_id)
    batch = await parse_body(request, OutboxBatch)
    await link(request).store_of(gateway_id)  # 404 for a gateway central does not know
    results = await link(request).intake(gateway_id, caller, batch)
    return respond(OutboxResult, {"results": results})


async def post_store_message(request: web.Request) -> web.Response:
    store_id = request.match_info["store_id"]
    await services(request).registry.get_store(store_id)
    body = await parse_body(request, ChannelMessageCreate)
    message_id = await link(request).post_message(
        store_id, None, body.terminal, body.kind, body.payload
    )
    return respond(MessageCreated, {"id": message_id}, 201)


async def post_command(request: web.Request) -> web.Response:
    gateway_id = request.match_info["gateway_id"]
    body = await parse_body(request, GatewayCommand)
    the_link = link(request)
    store_id = await the_link.store_of(gateway_id)
    message_id = await the_link.post_message(
        store_id, gateway_id, None, "command", {"command": body.command, "args": body.args}
    )
    return respond(MessageCreated, {"id": message_id}, 201)


async def channel(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every message for this gateway after ``Last-Event-ID``."""
    gateway_id = request.match_info["gateway_id"]
    principal(request).require_gateway(gateway_id)
    raw_after = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    if not raw_after.isdigit() or len(raw_after) > 12:
        raise Invalid("Last-Event-ID / after: a message id", code="invalid_request")
    after = int(raw_after)
    the_link = link(request)
    store_id = await the_link.store_of(gateway_id)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    idle = 0.0
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        await response.write(b"retry: 1000\n\n")
        while True:
            messages = await the_link.messages_after(store_id, gateway_id, after)
            for message in messages:
                after = message["id"]
                data = json.dumps(message, ensure_ascii=False)
                await response.write(
                    f"id: {after}\nevent: {message['kind']}\ndata: {data}\n\n".encode()
                )
            if messages:
                idle = 0.0
                continue
            await the_link.wait_for_post(POLL)
            idle += POLL
            if idle >= KEEPALIVE:
                await response.write(b": keepalive\n\n")
                idle = 0.0
    return response


GATEWAY = "/v1/gateways/{gateway_id}"
OPERATIONS = (
    Operation(
        method="POST",
        path=f"{GATEWAY}/outbox",
        handler=outbox,
        summary="Record a batch from a gateway's outbox (identifications, heartbeats, "
        "device states), each item at most once by its key",
        tag="gateway link",
        request=OutboxBatch,
        response=OutboxResult,
        str_params=("gateway_id",),
    ),
    Operation(
        method="GET",
        path=f"{GATEWAY}/channel",
        handler=channel,
        summary="Server-sent events from central to one gateway, resumable with Last-Event-ID",
        tag="gateway link",
        str_params=("gateway_id",),
        errors=(422,),
        query=(
            QueryParam(
                name="after", description="resume after this message id", pattern=r"^[0-9]{1,12}$"
            ),
        ),
        description="text/event-stream: `id` is the message id, `event` its kind, `data` "
        '`{"id", "kind", "terminal", "payload"}`.',
    ),
    Operation(
        method="POST",
        path=f"{GATEWAY}/commands",
        handler=post_command,
        summary="Send a command to one gateway over its channel",
        tag="gateway link",
        request=GatewayCommand,
        response=MessageCreated,
        status=201,
        auth="admin",
        str_params=("gateway_id",),
    ),
    Operation(
        method="POST",
        path="/v1/stores/{store_id}/messages",
        handler=post_store_message,
        summary="Push a message to a store's terminals (reminders, password prompts)",
        tag="gateway link",
        request=ChannelMessageCreate,
        response=MessageCreated,
        status=201,
        auth="admin",
        str_params=("store_id",),
    ),
)
