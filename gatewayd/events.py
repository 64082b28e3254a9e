"""The identify-event envelope: one shape for every output (MQTT, SSE, central, printers).

Events are frozen pydantic models, so ``gatewayd schema event`` can print the JSON Schema
generated from this very code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from enum import StrEnum
from functools import cached_property
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field
from ulid import ULID

from gatewayd.protocols.tokens import Method, Token, TokenKind, mask

__all__ = ["DeviceState", "DeviceStatus", "IdentifyEvent", "Method", "Phase", "TokenInfo"]


class Phase(StrEnum):
    """Where an event is in its life. Later phases reuse the ``event_id`` of ``detected``."""

    DETECTED = "detected"
    RESOLVED = "resolved"
    UNKNOWN = "unknown"
    UNRESOLVED = "unresolved"


class DeviceState(StrEnum):
    """A device's state: ``online`` reading, ``offline`` not present, ``failed`` misbehaving."""

    STARTING = "starting"
    ONLINE = "online"
    OFFLINE = "offline"
    FAILED = "failed"
    STOPPED = "stopped"


LOGGABLE_EXTRAS = frozenset(
    {"aim", "reason", "rings", "mobile", "check_digit", "track", "legacy", "purpose"}
)


class TokenInfo(BaseModel):
    """The token: ``kind``, ``value`` and kind-specific fields (e.g. ``rings``, ``aim``)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    kind: TokenKind
    value: str

    @classmethod
    def from_token(cls, token: Token) -> TokenInfo:
        return cls(kind=token.kind, value=token.value, **token.extra)

    def masked(self) -> dict[str, Any]:
        """This token for a log line: the value masked to its last 4 characters, and only
        extra fields known to hold no personal data (never a name, a birth date, a PIN)."""
        extra = {k: v for k, v in (self.model_extra or {}).items() if k in LOGGABLE_EXTRAS}
        return {"kind": self.kind.value, "value": mask(self.value), **extra}


def utc_timestamp(when: dt.datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-22T18:25:21.123Z``."""
    when = when or dt.datetime.now(dt.UTC)
    when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def new_event_id() -> str:
    """A ULID: unique, and sortable by creation time as a plain string."""
    return str(ULID())


class IdentifyEvent(BaseModel):
    """ "This token was presented at this terminal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(description="ULID, sortable; shared by every phase of one input")
    ts: str = Field(description="RFC 3339 UTC with milliseconds")
    store: str
    gateway: str
    terminal: str
    device: str
    method: Method
    token: TokenInfo
    phase: Phase = Phase.DETECTED
    member: dict[str, Any] | None = Field(
        default=None, description="member summary once resolved, else null"
    )
    source: str | None = Field(
        default=None, description="where a resolution came from: central or cache"
    )

    def to_json(self) -> str:
        return self.json_bytes.decode()

    @cached_property
    def json_bytes(self) -> bytes:
        """The serialised event, computed once however many sinks send it."""
        return self.__pydantic_serializer__.to_json(self)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (e.g. the ``resolved`` phase of a ``detected`` event), never with the
        original's cached JSON."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("json_bytes", None)
        return copy

    def log_fields(self) -> dict[str, Any]:
        """Fields for a log line, personal data masked."""
        return {
            "event_id": self.event_id,
            "terminal": self.terminal,
            "device": self.device,
            "method": self.method.value,
            "phase": self.phase.value,
            "token": self.token.masked(),
        }


class DeviceStatus(BaseModel):
    """A device's state as published on ``gateways/{gateway}/devices/{device}``."""

    model_config = ConfigDict(frozen=True)

    device: str
    state: DeviceState
    driver: str
    profile: str | None = None
    terminal: str
    last_error: str | None = None
    ts: str
