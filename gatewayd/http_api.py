"""The local HTTP API for POS terminals and kiosks (aiohttp).

``GET /healthz`` is open; everything else needs ``Authorization: Bearer <http.token>`` when a
token is configured (and a token is mandatory when ``http.listen`` is not loopback).
Bodies over ``http.max_body`` (64 KiB) get 413.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gatewayd.config import describe_errors
from gatewayd.errors import UnsupportedAction
from gatewayd.kiosk import add_kiosk_routes, is_kiosk_path
from gatewayd.protocols.tokens import Method, TokenError
from gatewayd.sse import SseMessage

if TYPE_CHECKING:
    from gatewayd.daemon import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
KEEPALIVE_SECONDS = 15.0
STREAM_ROUTES = frozenset({"/v1/events", "/kiosk/events"})
log = structlog.get_logger("gatewayd.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class InputBody(BaseModel):
    """``POST /v1/inputs``: a raw input as if the device had read it."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1, max_length=4096)
    method: Method | None = None


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Body limit and bearer auth, before any handler runs."""
    settings = request.app[GATEWAY].settings.http
    if request.content_length is not None and request.content_length > settings.max_body:
        return error(413, "body_too_large", f"bodies are limited to {settings.max_body} bytes")
    # Kiosk routes check their own per-terminal cookie (gatewayd/kiosk.py).
    if settings.token and request.path != "/healthz" and not is_kiosk_path(request.path):
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {settings.token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return error(401, "unauthorized", "missing or wrong bearer token")
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return error(413, "body_too_large", f"bodies are limited to {settings.max_body} bytes")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        raise


@web.middleware
async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``gatewayd_http_request_duration_seconds`` by route template (never the raw path).
    Streams (SSE) are left out: their duration is the client's stay, not a latency."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        if route not in STREAM_ROUTES:
            request.app[GATEWAY].metrics.http_duration.labels(
                route, request.method, str(status)
            ).observe(time.perf_counter() - started)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[GATEWAY].status())


async def metrics(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    gateway.refresh_metrics()
    body = generate_latest(gateway.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def inputs(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    try:
        body = InputBody.model_validate_json(await request.read())
    except ValidationError as exc:
        return error(422, "invalid_body", "; ".join(describe_errors(exc)))
    if body.device not in gateway.devices:
        return error(404, "unknown_device", f"no configured device {body.device!r}")
    try:
        event = gateway.inject(body.device, body.text, body.method)
    except TokenError as exc:
        return error(422, "invalid_input", str(exc))
    if event is None:
        return web.json_response({"accepted": True, "suppressed": True}, status=202)
    return web.Response(body=event.json_bytes, status=201, content_type="application/json")


async def device_action(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    device_id, action = request.match_info["device"], request.match_info["action"]
    driver = gateway.devices.get(device_id)
    if driver is None:
        return error(404, "unknown_device", f"no configured device {device_id!r}")
    raw = await request.read()
    try:
        params: Any = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        return error(422, "invalid_json", str(exc))
    if not isinstance(params, dict):
        return error(422, "invalid_body", "body must be a JSON object")
    try:
        result = await driver.perform(action, params)
    except UnsupportedAction as exc:
        return error(404, "unsupported_action", str(exc))
    except ValueError as exc:  # the request itself is wrong (unknown template, bad data)
        return error(422, "invalid_action", str(exc))
    except Exception as exc:  # noqa: BLE001 - report a device error, never crash the API
        log.error("device_action_failed", device=device_id, action=action, error=repr(exc))
        return error(502, "device_error", f"{type(exc).__name__}: {exc}")
    return web.json_response(result)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events, ``?terminal=`` to filter, ``Last-Event-ID`` to resume."""
    hub = request.app[GATEWAY].sse
    terminal = request.query.get("terminal")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue = hub.subscribe()
    try:
        await response.write(b"retry: 1000\n\n")
        last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        for message in hub.replay_after(last_id):
            if terminal is None or message.terminal in (None, terminal):
                await response.write(message.encode())
        while True:
            try:
                next_message: SseMessage | None = await asyncio.wait_for(
                    queue.get(), KEEPALIVE_SECONDS
                )
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if next_message is None:
                break
            if terminal is None or next_message.terminal in (None, terminal):
                await response.write(next_message.encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe(queue)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


class CheckoutBody(BaseModel):
    """``PUT /v1/terminals/{terminal}/checkout``: the POS says whether goods are entered."""

    model_config = ConfigDict(extra="forbid", strict=True)

    goods_entered: bool


async def claim_payment_code(request: web.Request) -> web.Response:
    """The POS takes the payment code held for its terminal, once."""
    central = request.app[GATEWAY].central
    terminal = request.match_info["terminal"]
    claimed = central.claim(terminal) if central is not None else None
    if claimed is None:
        return error(404, "no_payment_code", f"no payment code is held for terminal {terminal!r}")
    return web.json_response(claimed, headers={"Cache-Control": "no-store"})


async def checkout(request: web.Request) -> web.Response:
    central = request.app[GATEWAY].central
    try:
        body = CheckoutBody.model_validate_json(await request.read())
    except ValidationError as exc:
        return error(422, "invalid_body", "; ".join(describe_errors(exc)))
    terminal = request.match_info["terminal"]
    if central is not None:
        central.set_checkout(terminal, body.goods_entered)
    return web.json_response({"terminal": terminal, "goods_entered": body.goods_entered})


def build_app(gateway: Gateway) -> web.Application:
    app = web.Application(
        middlewares=[measure, guard], client_max_size=gateway.settings.http.max_body
    )
    app[GATEWAY] = gateway
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/v1/events", events)
    app.router.add_post("/v1/inputs", inputs)
    app.router.add_post("/v1/devices/{device}/actions/{action}", device_action)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/terminals/{terminal}/payment-code/claim", claim_payment_code)
    app.router.add_put("/v1/terminals/{terminal}/checkout", checkout)
    add_kiosk_routes(app, gateway.settings.gateway.state_dir)
    for plugin_routes in gateway.extra_routes:
        plugin_routes(app)
    return app
