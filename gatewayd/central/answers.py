"""Every answer in the one error shape, every request counted, without a middleware.

An aiohttp middleware costs each request two more coroutine layers (its own and aiohttp's
``_fix_request_current_app``) and a handler chain looked up per request: about a twentieth
of identify's time. So the work is done where it is cheapest:

* ``guard`` wraps each handler central mounts (``api.wrap`` does the same for operations,
  with authentication, in one layer): a body over the limit is refused before it is read,
  and whatever the handler raises becomes ``{"error": {"code", "message"}}``;
* ``unrouted``, the last route, takes every path no other route takes and answers 404 or
  405 in that shape (aiohttp's own refusals are plain text, and a response hook would
  come after their length is fixed);
* ``RequestTally`` is aiohttp's access-log hook, called once each answer is written, with
  its duration: it counts every request for ``/metrics``, by route template.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, Final

import sqlalchemy as sa
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from .errors import CentralError, PayloadTooLarge, RateLimited, error_body
from .jsonwire import json_response
from .logs import get_logger
from .metrics import UNMATCHED, CentralMetrics

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BodyLimit = Callable[[web.Request], int]
"""The largest request body a route takes, in bytes (from the settings of the app)."""

WORKER_HEADER: Final = "X-Central-Worker"
HTTP_CODES: Final = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def refuse_oversized(request: web.Request, limit: int) -> None:
    """413 before reading, when the declared length is over ``limit`` (a chunked body has
    none: ``parse_body`` checks what it read)."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")


def error_response(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The answer for what a handler raised, in the one error shape.

    A redirect (an ``HTTPException`` below 400) is no error: it is raised again, for
    aiohttp to send.
    """
    if isinstance(exc, CentralError):
        response = json_response(error_body(exc), status=exc.status)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return response
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = HTTP_CODES.get(exc.status, "http_error")
        response = json_response(
            {"error": {"code": code, "message": exc.reason}}, status=exc.status
        )
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError):
        # The database is unreachable, overloaded or the pool is exhausted: retryable.
        log.warning("database_unavailable", path=request.path, error=type(exc).__name__)
        return json_response(
            {"error": {"code": "database_unavailable", "message": "database unavailable"}},
            status=503,
            headers={"Retry-After": "1"},
        )
    log.error("unhandled_error", path=request.path, method=request.method, exc_info=exc)
    return json_response(
        {"error": {"code": "internal_error", "message": "internal error"}}, status=500
    )


def guard(handler: Handler, body_limit: BodyLimit) -> Handler:
    """``handler`` with the body limit enforced and every error in the one shape."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            refuse_oversized(request, body_limit(request))
            return await handler(request)
        except Exception as exc:  # noqa: BLE001 - every error leaves in the one shape
            return error_response(request, exc)

    return guarded


_worker_pid = str(os.getpid())  # getpid is a system call: once per process, not per answer


def _forked() -> None:
    global _worker_pid
    _worker_pid = str(os.getpid())


os.register_at_fork(after_in_child=_forked)


async def worker_header(_request: web.Request, response: web.StreamResponse) -> None:
    """(``on_response_prepare``) which worker answered."""
    response.headers[WORKER_HEADER] = _worker_pid


UNROUTED_PATH: Final = r"/{unrouted:[\s\S]*}"  # any path, a newline in it included
_UNROUTED_CANONICAL: Final = "/{unrouted}"
_PROBE_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


async def unrouted(request: web.Request) -> web.StreamResponse:
    """The route of last resort: 405 when the path is served for another method, else 404."""
    allowed = set()
    for method in _PROBE_METHODS:
        if method != request.method:
            match = await request.app.router.resolve(request.clone(method=method))
            if match.route.handler is not unrouted:
                allowed.add(method)
    if allowed:
        exc: web.HTTPException = web.HTTPMethodNotAllowed(request.method, allowed)
    else:
        exc = web.HTTPNotFound()
    return error_response(request, exc)


def add_unrouted(app: web.Application) -> None:
    """Mount ``unrouted``: after every other route (the router tries routes in order)."""
    app.router.add_route("*", UNROUTED_PATH, unrouted)


class RequestTally(AbstractAccessLogger):
    """Counts each answered request for ``/metrics`` (aiohttp calls it as its access log).

    aiohttp hands the object given as ``access_log`` to the constructor: central gives its
    ``CentralMetrics`` there (``build_app``'s ``handler_args``), not a logger.
    """

    def __init__(self, logger: Any, log_format: str) -> None:
        super().__init__(logger, log_format)
        self.metrics: CentralMetrics = logger

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        # A request aiohttp could not parse never reached the router: no match info.
        match_info = getattr(request, "_match_info", None)
        resource = match_info.route.resource if match_info is not None else None
        route = resource.canonical if resource is not None else UNMATCHED
        if route == _UNROUTED_CANONICAL:
            route = UNMATCHED
        self.metrics.request(route, request.method, response.status, time)
