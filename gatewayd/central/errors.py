"""Central's one exception root and the few subclasses the HTTP boundary maps to a status.

Services raise these; ``app.py`` turns each into ``{"error": {"code", "message"}}`` with the
class's ``status``. Anything else escaping a handler is a bug and answers 500.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CentralError(Exception):
    """Root of every error central raises on purpose."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details


class Unauthenticated(CentralError):
    """No key, or a key that is unknown or revoked."""

    status = 401
    default_code = "unauthenticated"


class Forbidden(CentralError):
    """A valid key acting outside its rights (another store, an admin-only operation)."""

    status = 403
    default_code = "forbidden"


class NotFound(CentralError):
    """The thing asked for does not exist (member, card, store, route)."""

    status = 404
    default_code = "not_found"


class MethodNotAllowed(CentralError):
    """The route exists but not with this HTTP method."""

    status = 405
    default_code = "method_not_allowed"


class Conflict(CentralError):
    """The request clashes with the current state: duplicate phone, code already used."""

    status = 409
    default_code = "conflict"


class Expired(CentralError):
    """A time-limited code whose validity has passed."""

    status = 410
    default_code = "expired"


class PayloadTooLarge(CentralError):
    """The request body is over the configured limit."""

    status = 413
    default_code = "payload_too_large"


class Invalid(CentralError):
    """A request that is malformed: bad JSON, a failed check digit, an impossible value."""

    status = 422
    default_code = "invalid"


class RateLimited(CentralError):
    """Too many requests from one terminal or for one member; retry after ``retry_after``."""

    status = 429
    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class UpstreamError(CentralError):
    """A payment provider failed or answered something we cannot use."""

    status = 502
    default_code = "upstream_error"


class Unavailable(CentralError):
    """A feature needed for this request is not configured (e.g. a payment provider)."""

    status = 503
    default_code = "unavailable"


def error_body(exc: CentralError) -> dict[str, Any]:
    """The one error shape: ``{"error": {"code", "message"}}`` (+ ``details`` when useful)."""
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details is not None:
        error["details"] = exc.details
    return {"error": error}
