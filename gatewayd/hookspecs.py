"""The whole plugin contract of gatewayd, in one module.

Plugins are modules (or objects) with functions named like the specs below, marked with
``@gatewayd.hookimpl``. They come from three places, in this order: the built-in drivers in
``gatewayd.plugins``, the entry-point group ``gatewayd.plugins`` of installed distributions,
and ``*.py`` files in the configured ``plugins_dir``. Any of them can be blocked by name with
``[plugins] disabled = ["name"]``.

Hooks are synchronous (pluggy cannot await): they are factories and observers. Long-running
work lives in the async methods of the driver and sink objects that the factories return.
An exception raised by a hook implementation is logged and isolated; it never stops the daemon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from gatewayd.drivers import Driver
    from gatewayd.events import DeviceStatus, IdentifyEvent
    from gatewayd.protocols.tokens import Token
    from gatewayd.sinks import Sink

PROJECT = "gatewayd"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def gatewayd_driver_classes() -> list[type[Driver]]:
    """Return the driver classes this plugin provides.

    Called once at start (and on reload). Each class has a unique ``name``: a device entry's
    ``driver = "name"`` (or its profile's ``driver``) selects it. A class's ``options`` model
    validates the device's transport settings; its errors name the config key.
    Two plugins offering the same name is a configuration error.
    """


@hookspec(firstresult=True)
def gatewayd_classify_token(text: str, method: str) -> Token | None:
    """Claim a normalised input as a token of a plugin's own format.

    ``text`` is the input with scanner noise removed; ``method`` is how it arrived
    (``barcode``, ``ic_card``…). Return a ``Token`` to claim it, or None to pass. The first
    non-None result wins; when every plugin passes, the built-in classifier in
    ``gatewayd.protocols.tokens`` decides. Called on the hot path: keep it cheap.
    """


@hookspec
def gatewayd_sinks(settings: Any) -> list[Sink]:
    """Return sinks (listeners) that receive every event and device state change.

    Called once at start with the gateway's frozen settings. Each sink gets its own bounded
    queue and task, so a slow or failing sink never delays another or the drivers.
    """


@hookspec
def gatewayd_identify_event(event: IdentifyEvent) -> None:
    """Observe an identify event synchronously, as soon as it is built.

    Called for every phase. Must not block: for I/O, return a sink from ``gatewayd_sinks``.
    """


@hookspec
def gatewayd_device_status(status: DeviceStatus) -> None:
    """Observe a device state change (``online``, ``offline``, ``failed``…)."""
