"""Finding plugins and asking them things, with every plugin's failure isolated.

Plugins come from the entry-point group ``gatewayd.plugins`` (the built-in drivers are
registered there too, exactly like a third-party distribution's) and from ``*.py`` files in
``plugins_dir``. ``[plugins] disabled`` blocks any of them by name.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
import structlog

from gatewayd import hookspecs
from gatewayd.errors import PluginError
from gatewayd.protocols.tokens import Method, Token, TokenError, classify, normalise

if TYPE_CHECKING:
    from gatewayd.drivers import Driver
    from gatewayd.events import DeviceStatus, IdentifyEvent
    from gatewayd.sinks import Sink

ENTRY_POINT_GROUP = "gatewayd.plugins"
LOCAL_PREFIX = "gatewayd_local_plugins"
log = structlog.get_logger("gatewayd.plugins")


class Plugins:
    """The gateway's pluggy manager plus the few questions the daemon asks it."""

    def __init__(self, disabled: Iterable[str] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.load_errors: dict[str, str] = {}
        for name in disabled:
            self.pm.set_blocked(name)

    def load(self, plugins_dir: Path | None = None, *, entry_points: bool = True) -> None:
        """Load entry-point plugins, then the files of ``plugins_dir`` (sorted by name)."""
        if entry_points:
            self._load_entry_points()
        if plugins_dir is not None:
            self.load_directory(plugins_dir)

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if self.pm.is_blocked(ep.name) or self.pm.has_plugin(ep.name):
                continue
            try:
                self.pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the daemon
                self._failed(ep.name, exc)

    def load_directory(self, directory: Path) -> None:
        if not directory.is_dir():
            log.warning("plugins_dir_missing", path=str(directory))
            return
        for path in sorted(directory.glob("*.py")):
            name = path.stem
            if self.pm.is_blocked(name) or self.pm.has_plugin(name) or name.startswith("_"):
                continue
            module_name = f"{LOCAL_PREFIX}.{name}"
            try:
                spec = importlib.util.spec_from_file_location(module_name, path)
                if spec is None or spec.loader is None:
                    raise PluginError(f"cannot import {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
                self.pm.register(module, name=name)
                log.info("plugin_loaded", plugin=name, path=str(path))
            except Exception as exc:  # noqa: BLE001
                sys.modules.pop(module_name, None)
                self._failed(name, exc)

    def _failed(self, name: str, exc: BaseException) -> None:
        self.load_errors[name] = f"{type(exc).__name__}: {exc}"
        log.error("plugin_load_failed", plugin=name, error=self.load_errors[name])

    def names(self) -> list[str]:
        return sorted(n for n, p in self.pm.list_name_plugin() if p is not None)

    def _each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of a hook separately, so one that raises is skipped."""
        results = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                result = impl.function(**kwargs)
            except Exception as exc:  # noqa: BLE001
                log.error(
                    "plugin_hook_failed", plugin=impl.plugin_name, hook=hook_name, error=repr(exc)
                )
                continue
            if result is not None:
                results.append((impl.plugin_name, result))
        return results

    def driver_classes(self) -> dict[str, type[Driver]]:
        """Driver name → class, from every plugin. Two plugins with one name: PluginError."""
        from gatewayd.drivers import Driver

        found: dict[str, type[Driver]] = {}
        owners: dict[str, str] = {}
        for plugin, classes in self._each("gatewayd_driver_classes"):
            for cls in classes:
                if not (isinstance(cls, type) and issubclass(cls, Driver)):
                    log.error("plugin_bad_driver", plugin=plugin, value=repr(cls))
                    continue
                if cls.name in found and found[cls.name] is not cls:
                    raise PluginError(
                        f"driver {cls.name!r} offered by both {owners[cls.name]} and {plugin}"
                    )
                found[cls.name], owners[cls.name] = cls, plugin
        return found

    def sinks(self, settings: Any) -> list[Sink]:
        from gatewayd.sinks import Sink

        out: list[Sink] = []
        for plugin, sinks in self._each("gatewayd_sinks", settings=settings):
            for sink in sinks:
                if isinstance(sink, Sink):
                    out.append(sink)
                else:
                    log.error("plugin_bad_sink", plugin=plugin, value=repr(sink))
        return out

    def classify(self, text: str, method: Method) -> Token:
        """Plugins first (first non-None wins), then the built-in classifier."""
        hook = self.pm.hook.gatewayd_classify_token
        if hook.get_hookimpls():
            try:
                claimed = hook(text=normalise(text), method=method.value)
            except TokenError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.error("plugin_classifier_failed", error=repr(exc))
            else:
                if isinstance(claimed, Token):
                    return claimed
        return classify(text, method)

    def notify_event(self, event: IdentifyEvent) -> None:
        if self.pm.hook.gatewayd_identify_event.get_hookimpls():
            self._each("gatewayd_identify_event", event=event)

    def notify_status(self, status: DeviceStatus) -> None:
        if self.pm.hook.gatewayd_device_status.get_hookimpls():
            self._each("gatewayd_device_status", status=status)
