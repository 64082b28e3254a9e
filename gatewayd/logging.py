"""Logging: structlog, JSON lines off a TTY and readable lines on one, personal data masked.

Masking is a processor, so no call site can forget it: any run of seven or more digits
(phones, payment codes, ID numbers, card numbers) and any 36-letter legacy member code is cut
down to its last four characters before a line is rendered.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from gatewayd.recent_logs import remember_log_record

_DIGITS = re.compile(r"(?<!\d)\d{6,}[\dXx]?(?!\d)")
_LEGACY = re.compile(r"(?<![A-Za-z])[A-Za-z]{36}(?![A-Za-z])")


def _mask_match(match: re.Match[str]) -> str:
    text = match.group(0)
    return "*" * (len(text) - 4) + text[-4:]


def mask_text(text: str) -> str:
    """Mask every personal-data-shaped run in ``text`` to its last four characters."""
    if len(text) < 6:
        return text
    return _LEGACY.sub(_mask_match, _DIGITS.sub(_mask_match, text))


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1_000_000:
        return mask_text(str(value))
    if isinstance(value, Mapping):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(v) for v in value]
    return value


def mask_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: masks every value (and the event text) of a log line."""
    for key, value in list(event_dict.items()):
        if key == "timestamp":
            continue
        event_dict[key] = _mask_value(value)
    return event_dict


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog once for the process: masking always comes before rendering."""
    stream = stream or sys.stderr
    renderer: Any
    if stream.isatty():
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_personal_data,
            remember_log_record,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries that use the standard logging module (aiohttp, amqtt) go through the same
    # masking and rendering.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                mask_personal_data,
                remember_log_record,
                renderer,
            ],
            foreign_pre_chain=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
