"""The gateway daemon: devices in, identify events out.

Lifecycle in the aiohttp style: every resource (embedded broker, sinks, HTTP server, device
tasks) is acquired in ``run`` and released in reverse order, within a bounded time. SIGHUP
rebuilds the settings and restarts only the devices whose configuration changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from gatewayd import __version__
from gatewayd.central_link import CentralLink
from gatewayd.config import DeviceConfig, Settings, describe_errors, load_settings
from gatewayd.drivers import DeviceSpec, Driver, RawInput
from gatewayd.errors import ConfigError, GatewayError
from gatewayd.events import (
    DeviceState,
    DeviceStatus,
    IdentifyEvent,
    TokenInfo,
    new_event_id,
    utc_timestamp,
)
from gatewayd.fleet_apply import FleetAgent
from gatewayd.http_api import build_app
from gatewayd.metrics import Metrics
from gatewayd.mqtt import EpochStore, MqttSink
from gatewayd.plugin_manager import Plugins
from gatewayd.profiles import Profile, load_profiles, merged_options
from gatewayd.protocols.tokens import RepeatSuppressor, TokenError
from gatewayd.sinks import Notifier, Sink
from gatewayd.sse import SseHub
from gatewayd.systemd import Notify

log = structlog.get_logger("gatewayd")
SHUTDOWN_SECONDS = 4.0
WATCHDOG_FALLBACK = 10.0


def load_plugins(settings: Settings) -> Plugins:
    plugins = Plugins(disabled=settings.plugins.disabled)
    plugins.load(settings.plugins_dir)
    return plugins


def build_specs(
    settings: Settings, drivers: dict[str, type[Driver]], profiles: dict[str, Profile]
) -> dict[str, tuple[type[Driver], DeviceSpec]]:
    """Resolve every enabled device to its driver class and validated options.

    Raises ``ConfigError`` naming ``devices[i].key`` for every problem found.
    """
    problems: list[str] = []
    out: dict[str, tuple[type[Driver], DeviceSpec]] = {}
    for index, device in enumerate(settings.devices):
        where = f"devices[{index}]"
        profile = profiles.get(device.profile) if device.profile else None
        if device.profile and profile is None:
            problems.append(f"{where}.profile: unknown profile {device.profile!r}")
            continue
        driver_name = device.driver or (profile.driver if profile else None)
        cls = drivers.get(driver_name or "")
        if cls is None:
            known = ", ".join(sorted(drivers)) or "none loaded"
            problems.append(f"{where}.driver: unknown driver {driver_name!r} (known: {known})")
            continue
        try:
            options = cls.options.model_validate(merged_options(profile, device.options()))
        except ValidationError as exc:
            problems.extend(describe_errors(exc, prefix=("devices", index)))
            continue
        if not device.enabled:
            continue
        out[device.id] = (
            cls,
            DeviceSpec(
                id=device.id,
                terminal=device.terminal,
                driver=cls.name,
                profile=device.profile,
                options=options,
                profile_data=profile.model_dump() if profile else {},
            ),
        )
    if problems:
        raise ConfigError(settings.source, problems)
    return out


class Gateway:
    """One store gateway: its devices, its sinks and its local API."""

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        plugins: Plugins | None = None,
        extra_sinks: Sequence[Sink] = (),
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.plugins = plugins or load_plugins(settings)
        self.profiles = load_profiles(settings.profiles_dir)
        self.metrics = Metrics()
        self.sse = SseHub(settings.http.replay_buffer)
        self.mqtt = MqttSink(settings, epochs=EpochStore(settings.gateway.state_dir / "epoch"))
        self.central: CentralLink | None = None
        if settings.central.url:
            self.central = CentralLink(settings, publish=self.publish, health=self.health,
                                       on_message=self._on_central_message,
                                       metrics=self.metrics)
        self.notifier = Notifier(
            [
                self.mqtt,
                self.sse,
                *([self.central] if self.central else []),
                *extra_sinks,
                *self.plugins.sinks(settings),
            ]
        )
        self.devices: dict[str, Driver] = {}
        self.device_configs: dict[str, DeviceConfig] = {}
        self._device_tasks: dict[str, asyncio.Task[None]] = {}
        self.suppressor = RepeatSuppressor(settings.gateway.dedupe_window_ms / 1000)
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.extra_routes: list[Callable[[web.Application], None]] = []
        self.started = time.monotonic()
        self.http_port: int | None = None
        self._stop = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._reload = asyncio.Event()
        self._notify = Notify()
        self.driver_classes = self.plugins.driver_classes()
        self._specs = build_specs(settings, self.driver_classes, self.profiles)
        self.restart_requested = False  # set by fleet bundles: ``gatewayd run`` re-execs
        self.fleet = FleetAgent(self) if self.central is not None else None

    # -- inputs and states (called by drivers, on the event loop) --------------------------

    def _on_input(self, device_id: str, raw: RawInput) -> IdentifyEvent | None:
        """A driver read something: an event, or a logged rejection (never an exception)."""
        try:
            return self._accept(device_id, raw)
        except TokenError as exc:
            self.errors[device_id] += 1
            self.metrics.device_errors.labels(device_id).inc()
            log.warning("input_rejected", device=device_id, error=str(exc))
            return None

    def _accept(self, device_id: str, raw: RawInput) -> IdentifyEvent | None:
        """Classify, drop repeats, build and publish. Raises ``TokenError`` for non-tokens."""
        driver = self.devices.get(device_id)
        if driver is None:
            return None
        method = raw.method or driver.method
        token = raw.token or self.plugins.classify(raw.text, method)
        if self.suppressor.is_repeat(device_id, token.value, time.monotonic()):
            self.metrics.suppressed.inc()
            return None
        if raw.extra:
            token = type(token)(
                kind=token.kind, value=token.value, extra={**token.extra, **raw.extra}
            )
        event = IdentifyEvent(
            event_id=new_event_id(),
            ts=utc_timestamp(),
            store=self.settings.gateway.store,
            gateway=self.settings.gateway.id,
            terminal=driver.spec.terminal,
            device=device_id,
            method=method,
            token=TokenInfo.from_token(token),
        )
        self.publish(event)
        return event

    def publish(self, event: IdentifyEvent) -> None:
        """Hand an event (any phase) to every sink and observer."""
        self.counts[event.method.value] += 1
        self.metrics.events.labels(event.method.value, event.token.kind.value).inc()
        self.metrics.events_by_phase.labels(
            event.method.value, event.token.kind.value, event.phase.value
        ).inc()
        log.info("identify", **event.log_fields())
        self.notifier.publish(event)
        self.plugins.notify_event(event)

    def _on_state(self, device_id: str, state: DeviceState, error: str | None) -> None:
        driver = self.devices.get(device_id)
        if driver is None:
            return
        if state is DeviceState.FAILED:
            self.errors[device_id] += 1
            self.metrics.device_errors.labels(device_id).inc()
        self.metrics.device_state.labels(device_id).set(1 if state is DeviceState.ONLINE else 0)
        status = self._device_status(driver)
        self.notifier.publish(status)
        self.plugins.notify_status(status)

    def _device_status(self, driver: Driver) -> DeviceStatus:
        return DeviceStatus(
            device=driver.spec.id,
            state=driver.state,
            driver=driver.name,
            profile=driver.spec.profile,
            terminal=driver.spec.terminal,
            last_error=driver.last_error,
            ts=utc_timestamp(),
        )

    def _on_central_message(self, message: dict[str, Any]) -> None:
        """A message from central's channel: for terminals (MQTT and SSE), or a command."""
        payload = message.get("payload") or {}
        if message.get("kind") == "command":
            command, args = str(payload.get("command")), payload.get("args") or {}
            if self.fleet is not None and self.fleet.handle(message.get("id"), command, args):
                return  # fleet commands (docs/fleet.md) are acked to central
            self._command(command, args)
            return
        terminal = str(message.get("terminal") or "all")
        body = {"id": message.get("id"), "kind": message.get("kind"), "terminal": terminal,
                "payload": payload}
        self.mqtt.enqueue(self.mqtt.topics.messages(terminal),
                          json.dumps(body, ensure_ascii=False).encode(), qos=1)
        self.sse.add_message(terminal, body)

    def _command(self, command: str, args: dict[str, Any]) -> None:
        log.info("central_command", command=command)
        if command == "reload":
            self.request_reload()
        elif command == "restart_device":
            device_id = str(args.get("device", ""))
            if device_id in self.devices:
                driver = self.devices[device_id]
                cls = type(driver)
                spec = driver.spec
                task = asyncio.create_task(self._restart_device(cls, spec))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _restart_device(self, cls: type[Driver], spec: DeviceSpec) -> None:
        await self._stop_device(spec.id)
        self._start_device(cls, spec)

    def inject(self, device_id: str, text: str, method: Any = None) -> IdentifyEvent | None:
        """An input for a configured device, from the local API (kiosks, manual entry)."""
        return self._accept(device_id, RawInput(text=text, method=method))

    # -- reporting --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "gateway": self.settings.gateway.id,
            "store": self.settings.gateway.store,
            "version": __version__,
            "uptime": round(time.monotonic() - self.started, 3),
            "mqtt": {
                "connected": self.mqtt.connected,
                "epoch": self.mqtt.epoch,
                "queued": len(self.mqtt.pending),
                "dropped": self.mqtt.dropped,
            },
            "devices": [
                self._device_status(d).model_dump(mode="json") for d in self.devices.values()
            ],
            "counters": dict(self.counts),
            "central": self.central.status() if self.central else None,
        }

    def health(self) -> dict[str, Any]:
        return {
            "ts": utc_timestamp(),
            "uptime": round(time.monotonic() - self.started, 3),
            "counters": dict(self.counts),
            "queues": {
                "mqtt": len(self.mqtt.pending),
                **({"outbox": self.central.outbox.depth} if self.central else {}),
                **{name: s["queued"] for name, s in self.notifier.stats().items()},
            },
            "dropped": {
                "mqtt": self.mqtt.dropped,
                "sse": self.sse.dropped,
                **({"outbox": self.central.outbox.dropped} if self.central else {}),
            },
            "errors": dict(self.errors),
            "devices": {d.spec.id: d.state.value for d in self.devices.values()},
        }

    def refresh_metrics(self) -> None:
        self.metrics.mqtt_connected.set(1 if self.mqtt.connected else 0)
        self.metrics.mqtt_queue.set(len(self.mqtt.pending))
        self.metrics.mqtt_dropped.set(self.mqtt.dropped)
        self.metrics.sse_clients.set(len(self.sse.clients))
        if self.central is not None:
            self.metrics.outbox_depth.set(self.central.outbox.depth)
            self.metrics.central_reachable.set(1 if self.central.central_up else 0)

    # -- devices ----------------------------------------------------------------------------

    def _start_device(self, cls: type[Driver], spec: DeviceSpec) -> None:
        driver = cls(spec)
        self.devices[spec.id] = driver
        self._device_tasks[spec.id] = asyncio.create_task(
            self._supervise(driver), name=f"device:{spec.id}"
        )

    async def _supervise(self, driver: Driver) -> None:
        """Run a driver; even a bug that escapes the driver base never ends the daemon."""
        while not self._stop.is_set():
            try:
                await driver.run(self._on_input, self._on_state)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.error("driver_crashed", device=driver.spec.id, error=repr(exc))
                await asyncio.sleep(driver.backoff_delay())

    def add_device(self, cls: type[Driver], spec: DeviceSpec) -> None:
        """Start a device found at run time (auto discovery)."""
        self._start_device(cls, spec)

    async def remove_device(self, device_id: str) -> None:
        """Stop a device that went away for good; its retained state says ``stopped``."""
        driver = self.devices.get(device_id)
        await self._stop_device(device_id)
        if driver is not None:
            driver.state = DeviceState.STOPPED
            self.notifier.publish(self._device_status(driver))

    async def _stop_device(self, device_id: str) -> None:
        driver = self.devices.pop(device_id, None)
        task = self._device_tasks.pop(device_id, None)
        if driver is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(driver.stop(), 2.0)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 2.0)

    # -- lifecycle --------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def request_restart(self) -> None:
        """Stop, then let ``gatewayd run`` start the process afresh (fleet plugin bundles)."""
        self.restart_requested = True
        self._stop.set()

    async def run(self, *, install_signals: bool = True) -> None:
        """Start everything, serve until ``request_stop`` (or SIGTERM), then shut down."""
        loop = asyncio.get_running_loop()
        if install_signals:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        broker = None
        if self.settings.mqtt.embedded:
            from gatewayd.embedded_broker import EmbeddedBroker  # amqtt is heavy: only if used

            broker = EmbeddedBroker(self.settings.mqtt.embedded_listen)
            await broker.start()
        runner: web.AppRunner | None = None
        background: list[asyncio.Task[None]] = []
        try:
            await self.notifier.start()
            if self.settings.http.enabled:
                runner = await self._start_http()
            for cls, spec in self._specs.values():
                self._start_device(cls, spec)
            self.device_configs = {d.id: d for d in self.settings.devices}
            background = [
                asyncio.create_task(self._health_loop(), name="health"),
                *self._auto_tasks(),
                asyncio.create_task(self._watchdog_loop(), name="watchdog"),
                asyncio.create_task(self._reload_loop(), name="reload"),
                *([asyncio.create_task(self.fleet.run(), name="fleet")] if self.fleet else []),
            ]
            log.info(
                "gateway_started",
                gateway=self.settings.gateway.id,
                store=self.settings.gateway.store,
                devices=len(self.devices),
                http_port=self.http_port,
            )
            self._notify.send("READY=1")
            await self._stop.wait()
        finally:
            self._notify.send("STOPPING=1")
            log.info("gateway_stopping")
            for task in background:
                task.cancel()
            await asyncio.wait_for(
                asyncio.gather(
                    *(self._stop_device(d) for d in list(self.devices)), return_exceptions=True
                ),
                SHUTDOWN_SECONDS / 2,
            )
            await self.notifier.stop(drain_seconds=SHUTDOWN_SECONDS / 2)
            if runner is not None:
                await runner.cleanup()
            if broker is not None:
                await broker.stop()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            log.info("gateway_stopped")

    async def _start_http(self) -> web.AppRunner:
        runner = web.AppRunner(
            build_app(self), handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        host, port = self.settings.http.host_port()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise GatewayError(f"http.listen {self.settings.http.listen}: {exc}") from exc
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else port
        return runner

    def _auto_tasks(self) -> list[asyncio.Task[None]]:
        if not self.settings.discovery.auto:
            return []
        from gatewayd.autodevices import AutoDevices

        return [asyncio.create_task(AutoDevices(self).run(), name="auto-devices")]

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.mqtt.health_interval)
            self.mqtt.publish_health(self.health())

    async def _watchdog_loop(self) -> None:
        interval = self._notify.watchdog_interval() or WATCHDOG_FALLBACK
        while True:
            self._notify.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _reload_loop(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()
            try:
                await self.reload()
            except GatewayError as exc:
                log.error("reload_failed", error=str(exc))

    async def reload(self) -> None:
        """Re-read the config; restart only the devices whose entry changed."""
        if self.config_path is None:
            raise GatewayError("no configuration file to reload from")
        self._notify.send("RELOADING=1")
        new = load_settings(self.config_path)
        specs = build_specs(new, self.plugins.driver_classes(), load_profiles(new.profiles_dir))
        new_configs = {d.id: d for d in new.devices}
        changed = [
            device_id
            for device_id in set(self.device_configs) | set(new_configs)
            if self.device_configs.get(device_id) != new_configs.get(device_id)
        ]
        for device_id in changed:
            await self._stop_device(device_id)
            if device_id in specs:
                self._start_device(*specs[device_id])
        for section in ("mqtt", "http", "gateway", "central"):
            if getattr(new, section) != getattr(self.settings, section):
                log.warning("reload_needs_restart", section=section)
        self.device_configs = new_configs
        self._specs = specs
        # Devices and per-terminal settings (payment window, kiosk keys) apply at once; the
        # sections that own sockets keep their running values until a restart.
        self.settings = self.settings.model_copy(
            update={"devices": new.devices, "terminals": new.terminals}
        )
        if self.central is not None:
            self.central.settings = self.settings
        log.info("reloaded", changed=sorted(changed))
        self._notify.send("READY=1")
