"""structlog set-up with personal data masked as a processor, so no call site can forget.

Phone numbers, ID numbers, card numbers and codes keep at most their last 4 characters;
secrets (passwords, API keys) are dropped to ``***`` whatever their length.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import structlog

from gatewayd.protocols.tokens import mask

MASKED_KEYS: Final = frozenset(
    {
        "phone",
        "id_number",
        "token",
        "code",
        "card_number",
        "number",
        "member_code",
        "legacy_code",
        "ic_uid",
        "openid",
        "account_id",
        "auth_code",
    }
)
SECRET_KEYS: Final = frozenset({"password", "api_key", "key", "secret", "authorization"})


def mask_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask every known personal field, drop every secret."""
    for key in list(event_dict):
        value = event_dict[key]
        if key in SECRET_KEYS and value is not None:
            event_dict[key] = "***"
        elif key in MASKED_KEYS and isinstance(value, str):
            event_dict[key] = mask(value)
    return event_dict


_least_level = logging.NOTSET  # what ``configure`` lets through; NOTSET before it ran


def enabled(level: int) -> bool:
    """Whether a line at ``level`` would be written: a plain comparison, for hot paths that
    would otherwise spend microseconds building fields nobody reads. Before ``configure``
    ran (an application that set structlog up itself), always True: structlog decides."""
    return level >= _least_level


def configure(level: str = "info", json: bool = True) -> None:
    """Configure structlog once per process (each ``--workers`` child calls it).

    Logs go to stderr: stdout is for what a command prints on purpose (keys, JSON).
    """
    global _least_level
    _least_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_personal_data,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_least_level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def reset() -> None:
    """Undo ``configure`` (tests that run commands in-process configure logging globally)."""
    global _least_level
    _least_level = logging.NOTSET
    structlog.reset_defaults()


def get_logger(name: str) -> Any:
    """A logger that masks its keyword arguments itself.

    Masking here (and again as a processor in ``configure``) keeps personal data out of the
    logs even when the host application configured structlog without our processor.
    """
    return _MaskedLogger(structlog.get_logger(name))


class _MaskedLogger:
    """Wraps a structlog logger and masks keyword arguments before they reach it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def bind(self, **kw: Any) -> _MaskedLogger:
        return _MaskedLogger(self._inner.bind(**dict(mask_personal_data(None, "", kw))))

    def __getattr__(self, method: str) -> Any:
        target = getattr(self._inner, method)

        def emit(event: str, **kw: Any) -> Any:
            return target(event, **dict(mask_personal_data(None, "", kw)))

        return emit
