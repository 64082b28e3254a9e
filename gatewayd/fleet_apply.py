"""The gateway's side of fleet operations: apply a signed bundle, watch health, roll back.

Order of an apply (see docs/fleet.md): fetch the bundle from central, verify it (signature by a
trusted key, target, serial above the last one, hashes, paths), validate the would-be files
with the existing loaders in a child process (so new plugin code is never imported into the
running daemon before it is accepted), back up every file it replaces, write a pending-apply
marker, replace the files atomically, then reload (config and profiles) or re-exec the process
(plugins, or settings a reload cannot change). The gateway is healthy again when the devices
that were online are online, MQTT is connected if it was, and central is reachable if it was,
within ``[fleet] health_deadline`` (``fleet_health.py``); otherwise the backup is restored and
the old state reloaded.

The marker makes this work across crashes: a process that starts and finds a marker it did not
expect (the gateway died during the watch) restores the backup before it loads anything.
Outcomes and command results go to central through a small on-disk spool, so they survive
restarts and outages. That on-disk state and the recovery at startup are in ``fleet_state.py``;
``recover_at_startup``, ``reexec`` and ``FleetState`` stay importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from gatewayd.central_link import CentralUnavailable
from gatewayd.config import Settings, load_settings
from gatewayd.diagnostics import build_diagnostics
from gatewayd.errors import ConfigError, GatewayError
from gatewayd.events import DeviceState
from gatewayd.fleet import CONFIG_PATH, Bundle, BundleRejected, load_trusted_keys, verify_bundle
from gatewayd.fleet_health import health_baseline, health_problems
from gatewayd.fleet_state import FleetState as FleetState
from gatewayd.fleet_state import fleet_dir as fleet_dir
from gatewayd.fleet_state import recover_at_startup as recover_at_startup
from gatewayd.fleet_state import reexec as reexec
from gatewayd.fleet_state import restore_backup as restore_backup
from gatewayd.fleet_state import spool_outcome, write_atomic

if TYPE_CHECKING:
    from gatewayd.daemon import Gateway

log = structlog.get_logger("gatewayd.fleet")
FETCH_RETRY_SECONDS = 600.0
VALIDATE_TIMEOUT = 60.0
WATCH_INTERVAL = 0.25
SPOOL_RETRY = 2.0
# Sections a reload applies; any other change needs a restart of the process.
RELOADABLE = frozenset({"devices", "profiles_dir", "source"})


# -- validation in a child process ---------------------------------------------------------------


def validate_staged(config: Path, plugins_dir: Path | None, profiles_dir: Path | None) -> None:
    """The existing loaders over the would-be files: settings, profiles, plugins, devices.

    Runs in a child process (``python -m gatewayd.fleet_apply CONFIG [PLUGINS] [PROFILES]``);
    raises ``ConfigError`` naming every problem."""
    from gatewayd.daemon import build_specs, load_plugins
    from gatewayd.profiles import load_profiles

    settings = load_settings(config)
    updates: dict[str, Any] = {}
    if plugins_dir is not None:
        updates["plugins_dir"] = plugins_dir
    if profiles_dir is not None:
        updates["profiles_dir"] = profiles_dir
    settings = settings.model_copy(update=updates)
    plugins = load_plugins(settings)
    if plugins.load_errors:
        problems = [f"plugins: {name}: {error}" for name, error in plugins.load_errors.items()]
        raise ConfigError(str(config), problems)
    build_specs(settings, plugins.driver_classes(), load_profiles(settings.profiles_dir))


# -- the agent --------------------------------------------------------------------------------


@dataclass
class Plan:
    """Where each file of a verified bundle goes, and how the change takes effect."""

    writes: list[tuple[Path, bytes]] = field(default_factory=list)
    new_settings: Settings | None = None
    restart: bool = False
    profiles: set[str] = field(default_factory=set)


class FleetAgent:
    """Handles fleet commands from central's channel for one ``Gateway``."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.state = FleetState(fleet_dir(gateway.settings))
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy = asyncio.Lock()
        self._spooled = asyncio.Event()

    @property
    def gateway_path(self) -> str:
        return f"/v1/gateways/{self.settings.gateway.id}"

    async def run(self) -> None:
        """Background: finish a watch begun before a planned restart; send spooled reports."""
        marker = self.state.marker()
        if marker is not None:
            self._spawn(self._watch(marker))
        while True:
            await self._send_spooled()
            self._spooled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._spooled.wait(), SPOOL_RETRY)

    def handle(self, message_id: int | None, command: str, args: dict[str, Any]) -> bool:
        """Start a fleet command; False for commands this agent does not handle."""
        if command == "apply_bundle":
            self._spawn(self._apply_from_central(args.get("bundle_id"), message_id))
        elif command == "restart_device":
            self._spawn(self._restart_device(str(args.get("device", "")), message_id))
        elif command == "diagnostics":
            self._spawn(self._diagnostics(message_id))
        else:
            return False
        return True

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("fleet_task_failed", error=repr(task.exception()))

    def _report(self, path: str, body: dict[str, Any]) -> None:
        self.state.spool(path, body)
        self._spooled.set()

    def _result(self, message_id: int | None, command: str, ok: bool, result: Any) -> None:
        self._report(
            f"{self.gateway_path}/command-results",
            {"message_id": message_id, "command": command, "ok": ok, "result": result},
        )

    async def _send_spooled(self) -> None:
        central = self.gateway.central
        if central is None:
            return
        for path in self.state.spooled():
            try:
                item = json.loads(path.read_text())
                status, data = await central.client.post(item["path"], item["body"], 30.0)
            except CentralUnavailable as exc:
                log.info("fleet_report_deferred", error=str(exc))
                return
            except (OSError, ValueError, KeyError) as exc:
                status, data = 0, None
                log.error("fleet_report_unreadable", path=str(path), error=repr(exc))
            if status >= 400:
                log.error("fleet_report_refused", status=status, answer=str(data)[:300])
            path.unlink(missing_ok=True)

    # -- restart one device, diagnostics ---------------------------------------------------------

    async def _restart_device(self, device_id: str, message_id: int | None) -> None:
        driver = self.gateway.devices.get(device_id)
        if driver is None:
            self._result(
                message_id,
                "restart_device",
                False,
                {"device": device_id, "error": "unknown device"},
            )
            return
        await self.gateway._restart_device(type(driver), driver.spec)
        deadline = time.monotonic() + 5.0
        state = DeviceState.STARTING
        while time.monotonic() < deadline:
            current = self.gateway.devices.get(device_id)
            state = current.state if current else DeviceState.STOPPED
            if state is not DeviceState.STARTING:
                break
            await asyncio.sleep(0.1)
        log.info("device_restarted", device=device_id, state=state.value)
        self._result(
            message_id,
            "restart_device",
            state is DeviceState.ONLINE,
            {"device": device_id, "state": state.value},
        )

    async def _diagnostics(self, message_id: int | None) -> None:
        bundle = build_diagnostics(
            self.settings,
            self.gateway.status(),
            request_id=message_id,
            max_bytes=self.settings.fleet.diagnostics_max_bytes,
        )
        self._report(f"{self.gateway_path}/diagnostics", bundle)
        log.info("diagnostics_queued", request=message_id, logs=len(bundle["logs"]))

    # -- bundles ------------------------------------------------------------------------------

    async def _fetch(self, bundle_id: int) -> Any:
        central = self.gateway.central
        assert central is not None
        delay = 1.0
        give_up = time.monotonic() + FETCH_RETRY_SECONDS
        while True:
            try:
                status, data = await central.client.get(
                    f"{self.gateway_path}/bundles/{bundle_id}", 30.0
                )
            except CentralUnavailable as exc:
                if time.monotonic() > give_up:
                    raise BundleRejected("unavailable", f"cannot fetch: {exc}") from None
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
                continue
            if status != 200 or not isinstance(data, dict):
                raise BundleRejected("not_found", f"central answered HTTP {status}")
            return data.get("bundle")

    async def _apply_from_central(self, bundle_id: Any, message_id: int | None) -> None:
        if not isinstance(bundle_id, int):
            self._result(message_id, "apply_bundle", False, {"error": "bundle_id missing"})
            return
        marker: dict[str, Any] = {"bundle_id": bundle_id, "serial": None}
        async with self._busy:
            try:
                raw = await self._fetch(bundle_id)
                if self.state.marker() is not None:
                    raise BundleRejected("busy", "another bundle is still being applied")
                bundle = self._verify(raw)
                marker["serial"] = bundle.serial
                plan = await self._plan(bundle)
            except Exception as exc:  # every failure is reported to HQ
                if not isinstance(exc, BundleRejected):
                    log.exception("fleet_bundle_failed", bundle=bundle_id)
                    exc = BundleRejected("internal_error", f"{type(exc).__name__}: {exc}")
                log.warning(
                    "fleet_bundle_rejected",
                    bundle=bundle_id,
                    reason=exc.reason,
                    message=exc.message,
                )
                spool_outcome(
                    self.state, self.settings, marker, "rejected", exc.reason, exc.message
                )
                self._spooled.set()
                return
            try:
                marker = self._install(bundle_id, bundle, plan)
            except OSError as exc:
                log.exception("fleet_install_failed", bundle=bundle_id)
                self._roll_back_now(self.state.marker() or marker, f"install failed: {exc}")
                return
            log.info(
                "fleet_bundle_installed",
                bundle=bundle_id,
                serial=bundle.serial,
                restart=plan.restart,
                files=sorted(bundle.files),
            )
            if plan.restart:
                self.gateway.request_restart()
                return
            try:
                await self.gateway.reload()
                await self._restart_profile_users(plan.profiles)
            except (GatewayError, ConfigError) as exc:
                log.error("fleet_reload_failed", error=str(exc))
            await self._watch(marker)

    def _verify(self, raw: Any) -> Bundle:
        try:
            trusted = load_trusted_keys(self.settings.fleet.trusted_keys)
        except (OSError, ValueError) as exc:
            raise BundleRejected("bad_trusted_key", f"[fleet] trusted_keys: {exc}") from None
        if not trusted:
            raise BundleRejected("untrusted_key", "[fleet] trusted_keys is empty")
        return verify_bundle(
            raw,
            trusted,
            gateway_id=self.settings.gateway.id,
            store_id=self.settings.gateway.store,
            last_serial=self.state.last_serial(),
        )

    async def _plan(self, bundle: Bundle) -> Plan:
        """Map files to their places and validate the result; nothing is written yet."""
        plan = Plan()
        current = self.settings
        config_path = self.gateway.config_path
        target = current
        self.state.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="stage-", dir=self.state.root))
        try:
            staged_config = config_path
            if CONFIG_PATH in bundle.files:
                if config_path is None:
                    raise BundleRejected("no_config_file", "this gateway runs without a file")
                staged_config = config_path.with_name(f".{config_path.name}.fleet-new")
                staged_config.write_bytes(bundle.files[CONFIG_PATH])
                try:
                    target = load_settings(staged_config)
                except ConfigError as exc:
                    raise BundleRejected("invalid_config", "; ".join(exc.problems)[:500]) from None
                for name in ("id", "store", "state_dir"):
                    if getattr(target.gateway, name) != getattr(current.gateway, name):
                        raise BundleRejected(
                            "invalid_config", f"gateway.{name} may not change through a bundle"
                        )
                plan.writes.append((config_path, bundle.files[CONFIG_PATH]))
                plan.new_settings = target
            staged_dirs = {}
            for kind, directory in (
                ("plugins", target.plugins_dir),
                ("profiles", target.profiles_dir),
            ):
                names = [p for p in bundle.files if p.startswith(f"{kind}/")]
                if not names:
                    continue
                if directory is None:
                    raise BundleRejected("bad_path", f"{kind}_dir is not configured")
                staged = staging / kind
                if directory.is_dir():
                    shutil.copytree(directory, staged)
                staged.mkdir(parents=True, exist_ok=True)
                for path in names:
                    name = path.split("/", 1)[1]
                    (staged / name).write_bytes(bundle.files[path])
                    plan.writes.append((directory / name, bundle.files[path]))
                    if kind == "profiles":
                        plan.profiles.add(Path(name).stem)
                staged_dirs[kind] = staged
            if staged_config is None:
                raise BundleRejected("no_config_file", "this gateway runs without a file")
            await self._validate(
                staged_config, staged_dirs.get("plugins"), staged_dirs.get("profiles")
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if config_path is not None:
                config_path.with_name(f".{config_path.name}.fleet-new").unlink(missing_ok=True)
        changed = {
            name
            for name in type(current).model_fields
            if getattr(target, name) != getattr(current, name)
        }
        plan.restart = bundle.has_plugins or bool(changed - RELOADABLE)
        return plan

    async def _validate(
        self, config: Path, plugins_dir: Path | None, profiles_dir: Path | None
    ) -> None:
        args = [str(config), str(plugins_dir or ""), str(profiles_dir or "")]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gatewayd.fleet_apply",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), VALIDATE_TIMEOUT)
        except TimeoutError:
            process.kill()
            raise BundleRejected("invalid_config", "validation timed out") from None
        if process.returncode != 0:
            raise BundleRejected("invalid_config", output.decode(errors="replace").strip()[-500:])

    def _install(self, bundle_id: int, bundle: Bundle, plan: Plan) -> dict[str, Any]:
        """Back up, write the marker, then replace every file atomically; saves the serial."""
        backup_dir = self.state.root / "backup" / str(bundle.serial)
        shutil.rmtree(backup_dir, ignore_errors=True)
        backup_dir.mkdir(parents=True)
        files = []
        for index, (target, _data) in enumerate(plan.writes):
            backup: str | None = None
            if target.exists():
                backup = str(backup_dir / f"{index}-{target.name}")
                shutil.copy2(target, backup)
            files.append({"target": str(target), "backup": backup})
        now = time.time()
        marker = {
            "bundle_id": bundle_id,
            "serial": bundle.serial,
            "restart": plan.restart,
            "restart_expected": plan.restart,
            "started": now,
            "deadline": now + self.settings.fleet.health_deadline,
            "baseline": health_baseline(self.gateway),
            "files": files,
        }
        self.state.save_marker(marker)
        self.state.save_serial(bundle.serial)
        for target, data in plan.writes:
            write_atomic(target, data)
        return marker

    async def _restart_profile_users(self, profiles: set[str]) -> None:
        """A reload restarts devices whose entry changed; a changed profile restarts the
        devices that use it too."""
        for cls, spec in list(self.gateway._specs.values()):
            if spec.profile in profiles:
                await self.gateway._restart_device(cls, spec)

    # -- the health watch -----------------------------------------------------------------------

    def _roll_back_now(self, marker: dict[str, Any], message: str) -> None:
        """Restore the backup (when one was taken) and report ``rolled_back``."""
        if "files" in marker:
            restore_backup(marker)
        self.state.clear_marker()
        spool_outcome(self.state, self.settings, marker, "rolled_back", "unhealthy", message)
        self._spooled.set()

    async def _watch(self, marker: dict[str, Any]) -> None:
        problems: list[str] = []
        while True:
            problems = health_problems(self.gateway, marker["baseline"])
            if not problems or time.time() >= marker["deadline"]:
                break
            await asyncio.sleep(WATCH_INTERVAL)
        if not problems:
            self.state.clear_marker()
            log.info("fleet_bundle_applied", serial=marker["serial"])
            spool_outcome(self.state, self.settings, marker, "applied", None, None)
            self._spooled.set()
            return
        message = "not healthy within the deadline: " + "; ".join(problems)
        log.warning("fleet_rolling_back", serial=marker["serial"], problems=problems)
        self._roll_back_now(marker, message)
        if marker["restart"]:
            self.gateway.request_restart()
            return
        try:
            await self.gateway.reload()
        except (GatewayError, ConfigError) as exc:
            log.error("fleet_rollback_reload_failed", error=str(exc))


def _main(argv: list[str]) -> int:
    """``python -m gatewayd.fleet_apply CONFIG PLUGINS_DIR PROFILES_DIR`` (empty: as set)."""
    from gatewayd.logging import configure_logging

    configure_logging("error")
    config, plugins, profiles = [*argv, "", "", ""][:3]
    try:
        validate_staged(
            Path(config), Path(plugins) if plugins else None, Path(profiles) if profiles else None
        )
    except ConfigError as exc:
        print("; ".join(exc.problems))
        return 2
    except GatewayError as exc:
        print(str(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
