"""The last few hundred log records, kept in memory for diagnostics bundles and heartbeats.

``remember_log_record`` is a structlog processor. ``gatewayd.logging.configure_logging``
places it *after* the personal-data masking processor, so the buffer only ever holds masked
records: a diagnostics bundle or a heartbeat built from it cannot leak a phone number or an ID
number that the log lines themselves would not show.

The buffers are bounded deques (old records fall off), so a noisy device cannot grow memory.
Records are stored as JSON-safe copies: anything that is not a str/int/float/bool/None, list
or dict is turned into its ``str()`` at record time, so readers can ``json.dumps`` the result
without surprises and later mutation of the logged objects does not change history.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, MutableMapping
from typing import Any

RECENT_LOG_CAPACITY = 1000
"""How many records of any level are kept."""
RECENT_ERROR_CAPACITY = 200
"""How many warning-or-worse records are kept (separately, so info noise cannot push them out)."""

_WARNING_LEVELS = frozenset({"warning", "warn", "error", "critical", "exception", "fatal"})

_lock = threading.Lock()
_records: deque[dict[str, Any]] = deque(maxlen=RECENT_LOG_CAPACITY)
_errors: deque[dict[str, Any]] = deque(maxlen=RECENT_ERROR_CAPACITY)


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    return str(value)


def remember_log_record(
    _logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: keep a JSON-safe copy of the (already masked) record.

    The level comes from the ``level`` key that ``add_log_level`` sets, falling back to the
    name of the logging method. The record is passed on unchanged.
    """
    record = {str(k): _json_safe(v) for k, v in event_dict.items()}
    level = str(record.get("level") or method).lower()
    record.setdefault("level", level)
    with _lock:
        _records.append(record)
        if level in _WARNING_LEVELS:
            _errors.append(record)
    return event_dict


def recent_logs(limit: int = 500) -> list[dict[str, Any]]:
    """The newest ``limit`` records of any level, oldest first (copies; safe to modify)."""
    with _lock:
        items = list(_records)
    return [dict(r) for r in items[-limit:]] if limit > 0 else []


def recent_errors(limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` warning-or-worse records, oldest first (copies; safe to modify)."""
    with _lock:
        items = list(_errors)
    return [dict(r) for r in items[-limit:]] if limit > 0 else []


def clear_recent_logs() -> None:
    """Forget every kept record (tests, and after a diagnostics upload if ever wanted)."""
    with _lock:
        _records.clear()
        _errors.clear()
