"""Settings: one typed, frozen object built at start from the TOML file, the environment
and the command line (precedence: CLI > environment > file > defaults).

Nothing mutates it afterwards: a reload builds a new one and the daemon diffs the two.
Every error names the file and the key, e.g. ``gatewayd.toml: devices[2].port: required``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gatewayd.errors import ConfigError

ENV_PREFIX = "GATEWAYD_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Section):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    store: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    state_dir: Path = Path("/var/lib/gatewayd")
    dedupe_window_ms: int = Field(default=500, ge=0, le=60_000)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class MqttSection(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    embedded_listen: str = "127.0.0.1:1883"
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_insecure: bool = False
    keepalive: int = Field(default=30, ge=5, le=3600)
    queue_size: int = Field(default=10_000, ge=1, le=1_000_000)
    health_interval: float = Field(default=30.0, gt=0)
    topic_prefix: str = "gatewayd/v1"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value == "embedded":
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must be mqtt://host:port, mqtts://host:port or embedded")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        return value

    @property
    def embedded(self) -> bool:
        return self.url == "embedded"

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or (8883 if self.tls else 1883)


class HttpSection(_Section):
    listen: str = "127.0.0.1:8765"
    token: str | None = Field(default=None, min_length=16)
    max_body: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    replay_buffer: int = Field(default=1000, ge=1, le=100_000)
    enabled: bool = True

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8765")
        return value

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def loopback(self) -> bool:
        host = self.host_port()[0]
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


class CentralSection(_Section):
    url: str | None = None
    key: str | None = None
    timeout_ms: int = Field(default=800, ge=10, le=60_000)
    heartbeat_interval: float = Field(default=30.0, gt=0)
    cache_ttl_hours: float = Field(default=24.0, ge=0)
    outbox_max_items: int = Field(default=200_000, ge=10)
    outbox_max_age_days: float = Field(default=7.0, gt=0)
    batch_size: int = Field(default=500, ge=1, le=1000)
    tls_ca: Path | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be http://host:port or https://host")
        return value.rstrip("/") if value else value


class TerminalConfig(_Section):
    """Per-terminal settings: the payment-code window, and the kiosk page (docs/kiosk.md),
    enabled only for a terminal given a ``kiosk_key_sha256`` (the key itself is never stored)."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    identify_on_payment_code: bool = True
    payment_window_seconds: float = Field(default=300.0, ge=0, le=3600)
    kiosk_key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    kiosk_lang: Literal["zh", "en"] = "zh"
    kiosk_display_seconds: float = Field(default=15.0, ge=1, le=3600)
    kiosk_session_days: int = Field(default=180, ge=1, le=400)


class DiscoverySection(_Section):
    """``auto = true``: devices that match a profile start without a ``[[devices]]`` entry."""

    auto: bool = False
    terminal: str = Field(default="auto", pattern=r"^[A-Za-z0-9_.-]+$")
    interval: float = Field(default=2.0, gt=0, le=3600)
    dev_root: Path = Path("/dev")
    sys_root: Path = Path("/sys")
    pcsc: bool = True


class PluginsSection(_Section):
    disabled: tuple[str, ...] = ()


class FleetSection(_Section):
    """Signed bundles from HQ (see docs/fleet.md): which keys to trust, how long to wait."""

    trusted_keys: tuple[str, ...] = ()
    health_deadline: float = Field(default=60.0, gt=0, le=3600)
    diagnostics_max_bytes: int = Field(default=48 * 1024, ge=4096, le=16 * 1024 * 1024)


class DeviceConfig(BaseModel):
    """One ``[[devices]]`` entry. Transport keys (``port``, ``path``, ``reader``…) are the
    driver's own options, validated by the driver's options model."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    terminal: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    driver: str | None = None
    profile: str | None = None
    enabled: bool = True

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Settings(_Section):
    gateway: GatewaySection
    mqtt: MqttSection = MqttSection()
    http: HttpSection = HttpSection()
    central: CentralSection = CentralSection()
    plugins: PluginsSection = PluginsSection()
    discovery: DiscoverySection = DiscoverySection()
    fleet: FleetSection = FleetSection()
    plugins_dir: Path | None = None
    profiles_dir: Path | None = None
    devices: tuple[DeviceConfig, ...] = ()
    terminals: tuple[TerminalConfig, ...] = ()
    source: str = Field(default="<defaults>", exclude=True)

    def terminal(self, terminal_id: str) -> TerminalConfig:
        for terminal in self.terminals:
            if terminal.id == terminal_id:
                return terminal
        return TerminalConfig(id=terminal_id)

    @model_validator(mode="after")
    def _token_off_loopback(self) -> Settings:
        if not self.http.loopback and not self.http.token:
            raise ValueError("http.token: required when http.listen is not a loopback address")
        return self

    @field_validator("devices")
    @classmethod
    def _unique_ids(cls, devices: tuple[DeviceConfig, ...]) -> tuple[DeviceConfig, ...]:
        seen: set[str] = set()
        for device in devices:
            if device.id in seen:
                raise ValueError(f"duplicate device id {device.id!r}")
            seen.add(device.id)
            if not device.driver and not device.profile:
                raise ValueError(f"device {device.id!r}: needs 'driver' or 'profile'")
        return devices


def format_location(loc: tuple[int | str, ...]) -> str:
    """``('devices', 2, 'port')`` → ``devices[2].port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe_errors(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[str]:
    """Pydantic errors as ``key: message`` lines a field engineer can act on."""
    lines = []
    for error in exc.errors():
        loc = tuple(p for p in (*prefix, *error["loc"]) if not str(p).startswith("function-"))
        message = "required" if error["type"] == "missing" else error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        message = re.sub(r"^Value error, ", "", message)
        lines.append(f"{format_location(loc) or '(top level)'}: {message}")
    return lines


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``GATEWAYD_MQTT__URL=…`` → ``{"mqtt": {"url": …}}`` (sections only, not devices)."""
    out: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        out.setdefault(section, {})[key] = value
    return out


def _merge(base: dict[str, Any], overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    merged = dict(base)
    for section, values in overrides.items():
        current = merged.get(section)
        merged[section] = {**(current if isinstance(current, dict) else {}), **values}
    return merged


def load_settings(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Read, merge and validate. Raises ``ConfigError`` naming the file and each bad key."""
    source = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"invalid TOML: {exc}"]) from None
    data = _merge(raw, _env_overrides(os.environ if environ is None else environ))
    data = _merge(data, overrides or {})
    return settings_from_dict(data, source)


def settings_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Settings:
    try:
        settings = Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(source, describe_errors(exc)) from None
    base = Path(source).parent if source.startswith("<") is False else Path.cwd()
    updates: dict[str, Any] = {}
    for key in ("plugins_dir", "profiles_dir"):
        value = getattr(settings, key)
        if value is not None and not value.is_absolute():
            updates[key] = (base / value).resolve()
    if not settings.gateway.state_dir.is_absolute():
        updates["gateway"] = settings.gateway.model_copy(
            update={"state_dir": (base / settings.gateway.state_dir).resolve()}
        )
    return settings.model_copy(update=updates) if updates else settings
