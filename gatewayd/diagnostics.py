"""Diagnostics bundles: what HQ needs to look at a store's gateway without logging in to it.

A bundle holds the recent log records (from ``recent_logs``: already masked when logged, and
masked again here), the configuration with every secret replaced by ``"***"``, the device list
with states, the version and the uptime. It is bounded: the oldest log records are dropped
until the JSON fits ``[fleet] diagnostics_max_bytes`` (central refuses bigger bodies anyway).
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

from gatewayd import __version__
from gatewayd.logging import mask_text
from gatewayd.recent_logs import recent_logs

if TYPE_CHECKING:
    from gatewayd.config import Settings

REDACTED = "***"
LOG_RECORDS = 500
# Key names whose values are secrets (or could be): tokens, keys, passwords, API keys.
_SECRET_KEY = re.compile(r"(token|password|passwd|secret|key)", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def _mask_deep(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_deep(v) for v in value]
    return value


def redact_secrets(value: Any) -> Any:
    """A copy of a JSON-like value with every secret-named key's value set to ``"***"`` and
    credentials in URLs (``mqtt://user:pass@host``) removed."""
    if isinstance(value, dict):
        return {
            k: (
                REDACTED
                if _SECRET_KEY.search(str(k)) and v not in (None, "", [], ())
                else redact_secrets(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_secrets(v) for v in value]
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(REDACTED + "@", value)
    return value


def redacted_config(settings: Settings) -> dict[str, Any]:
    """The effective settings (file, environment and defaults merged) without secrets."""
    data = settings.model_dump(mode="json")
    data["devices"] = [d.model_dump(mode="json") for d in settings.devices]
    result: dict[str, Any] = redact_secrets(data)
    return result


def build_diagnostics(
    settings: Settings, status: dict[str, Any], *, request_id: int | None, max_bytes: int
) -> dict[str, Any]:
    """The bundle uploaded to central. ``status`` is ``Gateway.status()``."""
    bundle: dict[str, Any] = {
        "format": "gatewayd-diagnostics-1",
        "request": request_id,
        "created": int(time.time()),
        "gateway": settings.gateway.id,
        "store": settings.gateway.store,
        "version": __version__,
        "uptime": status.get("uptime"),
        "devices": _mask_deep(status.get("devices", [])),
        "mqtt": status.get("mqtt"),
        "central": redact_secrets(status.get("central")),
        "config": redacted_config(settings),
        "logs": _mask_deep(recent_logs(LOG_RECORDS)),
        "logs_dropped": 0,
    }
    while len(json.dumps(bundle, ensure_ascii=False).encode()) > max_bytes and bundle["logs"]:
        drop = max(1, len(bundle["logs"]) // 4)
        bundle["logs"] = bundle["logs"][drop:]
        bundle["logs_dropped"] += drop
    return bundle
