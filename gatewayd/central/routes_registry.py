"""Stores, terminals, gateways, heartbeats, admin keys and chain settings endpoints."""

from __future__ import annotations

from aiohttp import web

from .api import ID_QUERY, Operation, QueryParam, parse_body, principal, respond, services
from .auth import create_admin_key
from .clock import iso
from .errors import Invalid
from .schemas import (
    AdminKeyCreate,
    AdminKeyCreated,
    ChainSettings,
    ChainSettingsUpdate,
    GatewayCreate,
    GatewayCreated,
    GatewayList,
    GatewayOut,
    Heartbeat,
    StoreCreate,
    StoreList,
    StoreOut,
    TerminalCreate,
    TerminalList,
    TerminalOut,
)


def _store_param(request: web.Request) -> str:
    store_id = request.match_info["store_id"]
    principal(request).require_store(store_id)
    return store_id


async def create_store(request: web.Request) -> web.Response:
    data = await parse_body(request, StoreCreate)
    return respond(StoreOut, await services(request).registry.create_store(data), 201)


async def list_stores(request: web.Request) -> web.Response:
    return respond(StoreList, {"items": await services(request).registry.list_stores()})


async def get_store(request: web.Request) -> web.Response:
    store = await services(request).registry.get_store(_store_param(request))
    return respond(StoreOut, store)


async def create_terminal(request: web.Request) -> web.Response:
    store_id = request.match_info["store_id"]
    data = await parse_body(request, TerminalCreate)
    terminal = await services(request).registry.create_terminal(store_id, data)
    return respond(TerminalOut, terminal, 201)


async def list_terminals(request: web.Request) -> web.Response:
    items = await services(request).registry.list_terminals(_store_param(request))
    return respond(TerminalList, {"items": items})


async def create_gateway(request: web.Request) -> web.Response:
    data = await parse_body(request, GatewayCreate)
    gateway, key = await services(request).registry.create_gateway(data)
    return respond(GatewayCreated, {"gateway": gateway, "api_key": key}, 201)


async def list_gateways(request: web.Request) -> web.Response:
    store = request.query.get("store")
    if store is not None and not ID_QUERY.fullmatch(store):
        raise Invalid("store: not a valid store id", code="invalid_request")
    items = await services(request).registry.list_gateways(store)
    return respond(GatewayList, {"items": items})


async def get_gateway(request: web.Request) -> web.Response:
    gateway_id = request.match_info["gateway_id"]
    gateway = await services(request).registry.get_gateway(gateway_id)
    principal(request).require_store(gateway["store"])
    return respond(GatewayOut, gateway)


async def heartbeat(request: web.Request) -> web.Response:
    gateway_id = request.match_info["gateway_id"]
    principal(request).require_gateway(gateway_id)
    beat = await parse_body(request, Heartbeat)
    return respond(GatewayOut, await services(request).registry.heartbeat(gateway_id, beat))


async def create_admin(request: web.Request) -> web.Response:
    data = await parse_body(request, AdminKeyCreate)
    svc = services(request)
    key_id, key = await create_admin_key(svc.db, data.name, svc.clock)
    created = iso(int(svc.clock.now() * 1000))
    return respond(
        AdminKeyCreated,
        {"id": key_id, "name": data.name, "api_key": key, "created_at": created},
        201,
    )


async def get_settings(request: web.Request) -> web.Response:
    return respond(ChainSettings, await services(request).registry.settings())


async def update_settings(request: web.Request) -> web.Response:
    data = await parse_body(request, ChainSettingsUpdate)
    changes = data.model_dump(exclude_unset=True)
    return respond(ChainSettings, await services(request).registry.update_settings(changes))


STORE = "/v1/stores/{store_id}"
GATEWAY = "/v1/gateways/{gateway_id}"
OPERATIONS = (
    Operation(
        method="POST",
        path="/v1/stores",
        handler=create_store,
        summary="Register a store",
        tag="registry",
        request=StoreCreate,
        response=StoreOut,
        status=201,
        auth="admin",
        errors=(409,),
    ),
    Operation(
        method="GET",
        path="/v1/stores",
        handler=list_stores,
        summary="List the chain's stores",
        tag="registry",
        response=StoreList,
    ),
    Operation(
        method="GET",
        path=STORE,
        handler=get_store,
        summary="Read a store (a gateway: only its own)",
        tag="registry",
        response=StoreOut,
        str_params=("store_id",),
    ),
    Operation(
        method="POST",
        path=STORE + "/terminals",
        handler=create_terminal,
        summary="Register a terminal (POS lane, kiosk) in a store",
        tag="registry",
        request=TerminalCreate,
        response=TerminalOut,
        status=201,
        auth="admin",
        errors=(409,),
        str_params=("store_id",),
    ),
    Operation(
        method="GET",
        path=STORE + "/terminals",
        handler=list_terminals,
        summary="List a store's terminals (a gateway: only its own store)",
        tag="registry",
        response=TerminalList,
        str_params=("store_id",),
    ),
    Operation(
        method="POST",
        path="/v1/gateways",
        handler=create_gateway,
        summary="Register a gateway; its API key is in the answer, shown once",
        tag="registry",
        request=GatewayCreate,
        response=GatewayCreated,
        status=201,
        auth="admin",
        errors=(404, 409),
    ),
    Operation(
        method="GET",
        path="/v1/gateways",
        handler=list_gateways,
        summary="Every gateway with its state, last heartbeat and staleness (90 s)",
        tag="registry",
        response=GatewayList,
        auth="admin",
        errors=(422,),
        query=(QueryParam(name="store", description="only this store's gateways"),),
    ),
    Operation(
        method="GET",
        path=GATEWAY,
        handler=get_gateway,
        summary="One gateway's state (a gateway: only its own store)",
        tag="registry",
        response=GatewayOut,
        str_params=("gateway_id",),
    ),
    Operation(
        method="POST",
        path=GATEWAY + "/heartbeat",
        handler=heartbeat,
        summary="A gateway reports device states and counters",
        tag="registry",
        request=Heartbeat,
        response=GatewayOut,
        str_params=("gateway_id",),
    ),
    Operation(
        method="POST",
        path="/v1/admin-keys",
        handler=create_admin,
        summary="Create another admin key (shown once)",
        tag="registry",
        request=AdminKeyCreate,
        response=AdminKeyCreated,
        status=201,
        auth="admin",
    ),
    Operation(
        method="GET",
        path="/v1/settings",
        handler=get_settings,
        summary="Chain-wide settings",
        tag="registry",
        response=ChainSettings,
    ),
    Operation(
        method="PATCH",
        path="/v1/settings",
        handler=update_settings,
        summary="Change chain-wide settings (admin)",
        tag="registry",
        request=ChainSettingsUpdate,
        response=ChainSettings,
        auth="admin",
    ),
)
