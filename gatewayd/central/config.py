"""Central's settings: one frozen object built at start (CLI > environment > file > defaults).

Every field can come from ``--option``, from ``GATEWAYD_CENTRAL_<FIELD>`` in the environment,
or from ``<field> = value`` in a TOML file given by ``--config``. Nothing mutates it afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from .errors import CentralError

ENV_PREFIX: Final = "GATEWAYD_CENTRAL_"
DEFAULT_DB: Final = "sqlite:///central.db"


class SettingsError(CentralError):
    """The configuration is incomplete or contradictory; the CLI exits with code 2."""

    status = 500
    default_code = "settings_error"


@dataclasses.dataclass(frozen=True, kw_only=True)
class CentralSettings:
    """Everything central needs to run; secrets are kept out of ``repr``."""

    db: str = DEFAULT_DB
    listen: str = "127.0.0.1:8700"
    workers: int = 1
    tls_cert: str | None = None
    tls_key: str | None = None
    # Keys the ID-number and consumption-code hashes; must stay the same for the life of the
    # database (rotating it makes every stored ID number unfindable).
    secret: str | None = dataclasses.field(default=None, repr=False)
    body_limit: int = 64 * 1024
    identify_rate: float = 10.0
    identify_burst: int = 30
    code_issue_rate: float = 0.2
    code_issue_burst: int = 5
    code_ttl: float = 600.0
    stale_after: float = 90.0
    # Dashboard: a gateway silent this long is "offline" (between stale_after and this: stale).
    offline_after: float = 600.0
    # Admin web sessions end after this much inactivity, and in any case after session_max.
    session_idle: float = 1800.0
    session_max: float = 43200.0
    # Member portal sessions (docs/portal.md): idle and absolute expiry, in seconds.
    portal_session_idle: float = 900.0
    portal_session_max: float = 43200.0
    # Alert rules are evaluated this often (seconds); 0 turns evaluation off in this process.
    alert_interval: float = 30.0
    # Notifications (docs/notifications.md): a TOML file with one table per channel's sender;
    # without one, nothing is queued for members. notify_loops = 0 turns this worker's
    # dispatcher and scheduler off.
    notify_senders: str | None = None
    notify_member_channels: str = "sms,email"
    notify_loops: int = 1
    notify_poll: float = 2.0
    notify_schedule_interval: float = 60.0
    notify_max_attempts: int = 6
    notify_backoff: float = 30.0
    notify_lease: float = 120.0
    # Bearer token a Prometheus scraper may present at /metrics instead of an admin key.
    metrics_token: str | None = dataclasses.field(default=None, repr=False)
    log_level: str = "info"
    wechat_base_url: str | None = None
    wechat_appid: str | None = None
    wechat_mch_id: str | None = None
    wechat_sub_appid: str | None = None
    wechat_sub_mch_id: str | None = None
    wechat_api_key: str | None = dataclasses.field(default=None, repr=False)
    alipay_base_url: str | None = None
    alipay_app_id: str | None = None
    alipay_key: str | None = dataclasses.field(default=None, repr=False)
    payment_timeout: float = 5.0

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def key_for(self, purpose: str) -> bytes:
        """A sub-key of ``secret`` for one purpose (ID numbers, consumption codes)."""
        if not self.secret:
            raise SettingsError(
                f"no secret configured: set {ENV_PREFIX}SECRET (or secret in the config file)",
                code="no_secret",
            )
        return hmac.new(self.secret.encode(), purpose.encode(), hashlib.sha256).digest()

    def validate(self) -> None:
        """Raise ``SettingsError`` listing every problem at once."""
        problems: list[str] = []
        try:
            if not 0 < self.port < 65536:
                problems.append(f"listen port out of range: {self.listen}")
        except ValueError:
            problems.append(f"listen must be HOST:PORT, got {self.listen!r}")
        if self.workers < 1:
            problems.append("workers must be at least 1")
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("tls_cert and tls_key go together")
        if self.offline_after <= self.stale_after:
            problems.append("offline_after must be longer than stale_after")
        if self.alert_interval < 0:
            problems.append("alert_interval must be 0 (off) or positive")
        if self.notify_poll <= 0 or self.notify_schedule_interval <= 0 or self.notify_lease <= 0:
            problems.append("notify_poll, notify_schedule_interval and notify_lease must be > 0")
        if self.notify_max_attempts < 1:
            problems.append("notify_max_attempts must be at least 1")
        if self.body_limit < 1024:
            problems.append("body_limit must be at least 1024 bytes")
        if self.wechat_base_url and not (
            self.wechat_appid and self.wechat_mch_id and self.wechat_api_key
        ):
            problems.append("wechat_base_url needs wechat_appid, wechat_mch_id, wechat_api_key")
        if self.alipay_base_url and not (self.alipay_app_id and self.alipay_key):
            problems.append("alipay_base_url needs alipay_app_id and alipay_key")
        if problems:
            raise SettingsError("; ".join(problems), code="invalid_settings")


_FIELDS: Final = {f.name: f for f in dataclasses.fields(CentralSettings)}


def _convert(name: str, value: Any) -> Any:
    kind = str(_FIELDS[name].type)
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{name}: {value!r} is not a number", code="invalid_settings") from exc
    return None if value is None else str(value)


def load_settings(
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> CentralSettings:
    """Build the settings with the precedence CLI > environment > file > defaults.

    ``cli`` values that are None count as "not given".
    """
    merged: dict[str, Any] = {}
    if config_file is not None:
        with open(config_file, "rb") as fh:
            data = tomllib.load(fh)
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise SettingsError(f"unknown settings in {config_file}: {', '.join(unknown)}")
        merged.update(data)
    for name in _FIELDS:
        value = (env or {}).get(ENV_PREFIX + name.upper())
        if value is not None and value != "":
            merged[name] = value
    for name, value in (cli or {}).items():
        if name in _FIELDS and value is not None:
            merged[name] = value
    settings = CentralSettings(**{k: _convert(k, v) for k, v in merged.items()})
    settings.validate()
    return settings
