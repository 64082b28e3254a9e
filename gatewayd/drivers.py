"""The driver base: one small interface per device, in the python-can ``BusABC`` style.

A driver subclass overrides three protected methods: ``_open`` (acquire the transport),
``_read`` (yield raw inputs) and optionally ``_close``. The public ``run`` owned by this base
does the rest: state reporting, error routing, and restart with exponential backoff, so that
one misbehaving device never touches another.
"""

from __future__ import annotations

import asyncio
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import structlog
from pydantic import BaseModel, ConfigDict

from gatewayd.errors import DeviceUnavailable, UnsupportedAction
from gatewayd.events import DeviceState
from gatewayd.protocols.tokens import Method, Token

BACKOFF_INITIAL = 1.0
BACKOFF_CAP = 60.0
OFFLINE_RETRY = 0.25


@dataclass(frozen=True, kw_only=True, slots=True)
class RawInput:
    """What a driver read: text to classify, or a token it already classified itself.

    ``extra`` fields are added to the token (e.g. ``rings`` for a caller-ID event).
    ``method`` overrides the driver's method (a face terminal that also scans barcodes).
    """

    text: str = ""
    token: Token | None = None
    method: Method | None = None
    extra: Mapping[str, str | int | bool] = field(default_factory=dict)


class DriverOptions(BaseModel):
    """A driver's own validated options. Subclass per driver and name it in ``options``."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, kw_only=True)
class DeviceSpec:
    """Everything a driver instance is built from: the device entry merged with its profile."""

    id: str
    terminal: str
    driver: str
    profile: str | None
    options: DriverOptions
    profile_data: Mapping[str, Any] = field(default_factory=dict)


StateCallback = Callable[[str, DeviceState, str | None], None]
InputCallback = Callable[[str, RawInput], object]


class Driver(ABC):
    """Base of every device driver. Subclasses set ``name``, ``method`` and ``options``."""

    name: ClassVar[str]
    method: ClassVar[Method]
    options: ClassVar[type[DriverOptions]] = DriverOptions

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.log = structlog.get_logger("gatewayd.device").bind(
            device=spec.id, driver=self.name, terminal=spec.terminal
        )
        self.state = DeviceState.STARTING
        self.last_error: str | None = None
        self.failures = 0
        self._closed = False

    # -- the override points -------------------------------------------------------------

    @abstractmethod
    async def _open(self) -> None:
        """Acquire the transport. Raise ``DeviceUnavailable`` when the device is absent."""

    @abstractmethod
    def _read(self) -> AsyncIterator[RawInput]:
        """Yield raw inputs until the transport ends. Raise ``DeviceUnavailable`` on unplug."""

    async def _close(self) -> None:  # noqa: B027 - optional override
        """Release the transport. Idempotent, and safe after a partial or failed ``_open``:
        called after every session and every failed open, and by ``stop()``."""

    # -- the public side owned by the base -----------------------------------------------

    async def run(self, on_input: InputCallback, on_state: StateCallback) -> None:
        """Open, read, and reopen forever: until cancelled or ``stop()``.

        Absent devices are retried every ``OFFLINE_RETRY`` seconds; failures back off
        exponentially with jitter, capped at ``BACKOFF_CAP`` seconds.
        """
        while not self._closed:
            try:
                await self._open()
            except DeviceUnavailable as exc:
                await self._safe_close()  # release whatever a half-done open acquired
                self._set_state(on_state, DeviceState.OFFLINE, str(exc))
                await asyncio.sleep(OFFLINE_RETRY)
                continue
            except asyncio.CancelledError:
                await self._safe_close()
                raise
            except Exception as exc:  # noqa: BLE001 - a driver bug must not kill the daemon
                await self._safe_close()
                await self._failed(on_state, exc)
                continue
            try:
                self._set_state(on_state, DeviceState.ONLINE, None)
                async for raw in self._read():
                    self.failures = 0
                    on_input(self.spec.id, raw)
                if not self._closed:
                    raise DeviceUnavailable("transport ended")
            except DeviceUnavailable as exc:
                self._set_state(on_state, DeviceState.OFFLINE, str(exc))
                await asyncio.sleep(OFFLINE_RETRY)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                await self._failed(on_state, exc)
            finally:
                await self._safe_close()
        self._set_state(on_state, DeviceState.STOPPED, None)

    async def stop(self) -> None:
        """Stop reading and release the transport. Idempotent."""
        self._closed = True
        await self._safe_close()

    async def perform(self, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Carry out a named action (``print``, ``open-drawer``…) for the local HTTP API.

        ``POST /v1/devices/{id}/actions/{action}`` lands here. Drivers with actions override
        it; the base refuses every action with ``UnsupportedAction``.
        """
        raise UnsupportedAction(f"driver {self.name!r} has no action {action!r}")

    def backoff_delay(self) -> float:
        """The delay before the next restart after ``failures`` consecutive failures."""
        base: float = min(BACKOFF_CAP, BACKOFF_INITIAL * 2.0 ** max(0, self.failures - 1))
        return base * random.uniform(0.8, 1.0)

    # -- internals -----------------------------------------------------------------------

    async def _failed(self, on_state: StateCallback, exc: BaseException) -> None:
        self.failures += 1
        self._set_state(on_state, DeviceState.FAILED, f"{type(exc).__name__}: {exc}")
        delay = self.backoff_delay()
        self.log.error(
            "device_failed", error=self.last_error, retry_in=round(delay, 2), failures=self.failures
        )
        await asyncio.sleep(delay)

    async def _safe_close(self) -> None:
        try:
            await self._close()
        except Exception as exc:  # noqa: BLE001 - closing a broken transport may fail too
            self.log.warning("device_close_failed", error=str(exc))

    def _set_state(self, on_state: StateCallback, state: DeviceState, error: str | None) -> None:
        if error is not None:
            self.last_error = error
        if state == self.state:
            return
        self.state = state
        self.log.info("device_state", state=state.value, error=error)
        on_state(self.spec.id, state, error)
