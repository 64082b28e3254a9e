"""Fleet endpoints: admins upload signed bundles and read outcomes and diagnostics; gateways
fetch their bundles and report back (docs/fleet.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import ConfigDict, Field

from .api import Operation, parse_body, path_int, principal, respond, services
from .fleet_store import FleetStore
from .schemas import Body, Out, RowId

ReasonCode = Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]


class BundleUpload(Body):
    """A bundle exactly as ``gatewayd fleet bundle`` wrote it."""

    format: Literal["gatewayd-bundle-1"]
    manifest: Annotated[str, Field(min_length=1, max_length=16 * 1024)]
    signature: Annotated[str, Field(min_length=1, max_length=200)]
    files: dict[str, str]


class Delivery(Out):
    bundle_id: int
    gateway_id: str
    message_id: int = Field(description="the channel message that carried the command")
    status: Literal["pending", "applied", "rolled_back", "rejected"]
    reason: str | None = Field(
        description="why not applied: untrusted_key, bad_signature, tampered, wrong_target, "
        "replayed_serial, expired, invalid_config, bad_path, busy, unhealthy…"
    )
    message: str | None
    updated_at: str | None


class BundleOut(Out):
    id: int
    serial: int
    key_id: str
    size: int
    targets: dict[str, Any]
    files: list[dict[str, Any]]
    created_at: str | None
    deliveries: list[Delivery]


class BundleList(Out):
    bundles: list[BundleOut]


class DeliveryList(Out):
    deliveries: list[Delivery]


class BundleContent(Out):
    bundle_id: int
    bundle: dict[str, Any]


class OutcomeReport(Body):
    status: Literal["applied", "rolled_back", "rejected"]
    reason: ReasonCode | None = None
    message: Annotated[str, Field(max_length=2000)] | None = None
    serial: int | None = None


class CommandResultReport(Body):
    message_id: int | None = Field(default=None, description="the channel message answered")
    command: Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]
    ok: bool
    result: dict[str, Any] = Field(default_factory=dict)


class CommandResult(Out):
    id: int
    message_id: int | None
    command: str
    ok: bool
    result: Any
    received_at: str | None


class CommandResultList(Out):
    results: list[CommandResult]


class DiagnosticsUpload(Body):
    """A gateway's diagnostics bundle; its other fields are free-form JSON (see docs)."""

    model_config = ConfigDict(extra="allow")
    format: Literal["gatewayd-diagnostics-1"]
    request: RowId | None = None


class DiagnosticsCreated(Out):
    id: int


class DiagnosticsSummary(Out):
    id: int
    request_id: int | None
    size: int
    received_at: str | None


class DiagnosticsList(Out):
    diagnostics: list[DiagnosticsSummary]


class DiagnosticsBundle(Out):
    model_config = ConfigDict(extra="allow")


def fleet(request: web.Request) -> FleetStore:
    return services(request).fleet


async def post_gateway_bundle(request: web.Request) -> web.Response:
    body = await parse_body(request, BundleUpload)
    result = await fleet(request).submit(
        body.model_dump(), gateway_id=request.match_info["gateway_id"]
    )
    return respond(BundleOut, result, 201)


async def post_store_bundle(request: web.Request) -> web.Response:
    store_id = request.match_info["store_id"]
    await services(request).registry.get_store(store_id)
    body = await parse_body(request, BundleUpload)
    result = await fleet(request).submit(body.model_dump(), store_id=store_id)
    return respond(BundleOut, result, 201)


async def post_fleet_bundle(request: web.Request) -> web.Response:
    body = await parse_body(request, BundleUpload)
    result = await fleet(request).submit(body.model_dump())
    return respond(BundleOut, result, 201)


async def list_bundles(request: web.Request) -> web.Response:
    return respond(BundleList, {"bundles": await fleet(request).bundles()})


async def get_bundle(request: web.Request) -> web.Response:
    return respond(BundleOut, await fleet(request).bundle(path_int(request, "bundle_id")))


async def gateway_deliveries(request: web.Request) -> web.Response:
    await services(request).link.store_of(request.match_info["gateway_id"])
    deliveries = await fleet(request).deliveries(request.match_info["gateway_id"])
    return respond(DeliveryList, {"deliveries": deliveries})


async def bundle_content(request: web.Request) -> web.Response:
    gateway_id = request.match_info["gateway_id"]
    principal(request).require_gateway(gateway_id)
    bundle_id = path_int(request, "bundle_id")
    content = await fleet(request).content_for(gateway_id, bundle_id)
    return respond(BundleContent, {"bundle_id": bundle_id, "bundle": content})


async def post_outcome(request: web.Request) -> web.Response:
    gateway_id = request.match_info["gateway_id"]
    principal(request).require_gateway(gateway_id)
    bundle_id = path_int(request, "bundle_id")
    body = await parse_body(request, OutcomeReport)
    delivery = await fleet(request).record_outcome(
        gateway_id, bundle_id, body.status, body.reason, body.message
    )
    return respond(Delivery, delivery)


async def post_command_result(request: web.Request) -> web.Response:
    gateway_id = request.match_info["gateway_id"]
    principal(request).require_gateway(gateway_id)
    body = await parse_body(request, CommandResultReport)
    await services(request).link.store_of(gateway_id)
    await fleet(request).record_result(
        gateway_id, body.message_id, body.command, body.ok, body.result
    )
    return web.Response(status=204)


async def list_command_results(request: web.Request) -> web.Response:
    gateway_id = request.match_info["gateway_id"]
    await services(request).link.store_of(gateway_id)
    return respond(CommandResultList, {"results": await fleet(request).results(gateway_id)})


async def post_diagnostics(request: web.Request) -> web.Response:
    gateway_id = request.match_info["gateway_id"]
    principal(request).require_gateway(gateway_id)
    body = await parse_body(request, DiagnosticsUpload)
    await services(request).link.store_of(gateway_id)
    new_id = await fleet(request).store_diagnostics(
        gateway_id, body.model_dump(mode="json"), body.request
    )
    return respond(DiagnosticsCreated, {"id": new_id}, 201)


async def list_diagnostics(request: web.Request) -> web.Response:
    gateway_id = request.match_info["gateway_id"]
    await services(request).link.store_of(gateway_id)
    items = await fleet(request).diagnostics(gateway_id)
    return respond(DiagnosticsList, {"diagnostics": items})


async def get_diagnostics(request: web.Request) -> web.Response:
    bundle = await fleet(request).diagnostics_bundle(
        request.match_info["gateway_id"], path_int(request, "diagnostics_id")
    )
    return respond(DiagnosticsBundle, bundle)


GATEWAY = "/v1/gateways/{gateway_id}"
TAG = "fleet"
OPERATIONS = (
    Operation(
        method="POST",
        path=f"{GATEWAY}/bundles",
        handler=post_gateway_bundle,
        summary="Relay a signed bundle (config, profiles, plugins) to one gateway",
        tag=TAG,
        request=BundleUpload,
        response=BundleOut,
        status=201,
        auth="admin",
        str_params=("gateway_id",),
        description="Central checks the bundle's shape and that its targets include the "
        "gateway; the gateway verifies the signature and reports the outcome.",
    ),
    Operation(
        method="POST",
        path="/v1/stores/{store_id}/bundles",
        handler=post_store_bundle,
        summary="Relay a signed bundle to every gateway of a store it targets",
        tag=TAG,
        request=BundleUpload,
        response=BundleOut,
        status=201,
        auth="admin",
        str_params=("store_id",),
    ),
    Operation(
        method="POST",
        path="/v1/fleet/bundles",
        handler=post_fleet_bundle,
        summary="Relay a signed bundle to every gateway of the chain it targets",
        tag=TAG,
        request=BundleUpload,
        response=BundleOut,
        status=201,
        auth="admin",
    ),
    Operation(
        method="GET",
        path="/v1/fleet/bundles",
        handler=list_bundles,
        summary="The newest bundles with each gateway's outcome",
        tag=TAG,
        response=BundleList,
        auth="admin",
    ),
    Operation(
        method="GET",
        path="/v1/fleet/bundles/{bundle_id}",
        handler=get_bundle,
        summary="One bundle with each gateway's outcome",
        tag=TAG,
        response=BundleOut,
        auth="admin",
        int_params=("bundle_id",),
    ),
    Operation(
        method="GET",
        path=f"{GATEWAY}/bundles",
        handler=gateway_deliveries,
        summary="The bundles sent to one gateway and their outcomes",
        tag=TAG,
        response=DeliveryList,
        auth="admin",
        str_params=("gateway_id",),
    ),
    Operation(
        method="GET",
        path=f"{GATEWAY}/bundles/{{bundle_id}}",
        handler=bundle_content,
        summary="A bundle as uploaded, fetched by the gateway it was sent to",
        tag=TAG,
        response=BundleContent,
        str_params=("gateway_id",),
        int_params=("bundle_id",),
    ),
    Operation(
        method="POST",
        path=f"{GATEWAY}/bundles/{{bundle_id}}/outcome",
        handler=post_outcome,
        summary="A gateway reports what it did with a bundle",
        tag=TAG,
        request=OutcomeReport,
        response=Delivery,
        str_params=("gateway_id",),
        int_params=("bundle_id",),
    ),
    Operation(
        method="POST",
        path=f"{GATEWAY}/command-results",
        handler=post_command_result,
        summary="A gateway acknowledges a channel command with its result",
        tag=TAG,
        request=CommandResultReport,
        status=204,
        str_params=("gateway_id",),
    ),
    Operation(
        method="GET",
        path=f"{GATEWAY}/command-results",
        handler=list_command_results,
        summary="The newest command results of one gateway",
        tag=TAG,
        response=CommandResultList,
        auth="admin",
        str_params=("gateway_id",),
    ),
    Operation(
        method="POST",
        path=f"{GATEWAY}/diagnostics",
        handler=post_diagnostics,
        summary="A gateway uploads a diagnostics bundle (masked logs, config without "
        "secrets, devices)",
        tag=TAG,
        request=DiagnosticsUpload,
        response=DiagnosticsCreated,
        status=201,
        str_params=("gateway_id",),
    ),
    Operation(
        method="GET",
        path=f"{GATEWAY}/diagnostics",
        handler=list_diagnostics,
        summary="The diagnostics bundles one gateway uploaded",
        tag=TAG,
        response=DiagnosticsList,
        auth="admin",
        str_params=("gateway_id",),
    ),
    Operation(
        method="GET",
        path=f"{GATEWAY}/diagnostics/{{diagnostics_id}}",
        handler=get_diagnostics,
        summary="Download one diagnostics bundle",
        tag=TAG,
        response=DiagnosticsBundle,
        auth="admin",
        str_params=("gateway_id",),
        int_params=("diagnostics_id",),
    ),
)
