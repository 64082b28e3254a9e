"""``[discovery] auto = true``: start every attached device that matches a firmware profile,
and start and stop hot-plugged ones by themselves.

The attached set is rescanned every ``interval`` seconds (cheap: a few directory listings and,
with PC/SC, one reader list). Configured ``[[devices]]`` always win: a device whose port is
named by a configured entry is never started twice.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import structlog
from pydantic import ValidationError

from gatewayd.discovery import Found, list_pcsc_readers, match, scan
from gatewayd.drivers import DeviceSpec
from gatewayd.profiles import Profile

if TYPE_CHECKING:
    from gatewayd.daemon import Gateway

log = structlog.get_logger("gatewayd.auto")
# Which option carries the discovered address, per kind of attachment.
ADDRESS_OPTION = {"serial": "port", "input": "path", "pcsc": "reader", "usb": "usb"}


def auto_id(profile: Profile, item: Found) -> str:
    tail = item.usb or item.path.rsplit("/", 1)[-1]
    return "auto-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{profile.id}-{tail}").strip("-")[:80]


class AutoDevices:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.settings = gateway.settings.discovery
        self.started: dict[str, str] = {}  # device id -> address

    def configured_addresses(self) -> set[str]:
        addresses: set[str] = set()
        for device in self.gateway.settings.devices:
            addresses.update(
                str(v) for k, v in device.options().items() if k in ADDRESS_OPTION.values()
            )
        return addresses

    def wanted(self) -> dict[str, tuple[Profile, Found]]:
        readers = list_pcsc_readers() if self.settings.pcsc else []
        items = scan(self.settings.dev_root, self.settings.sys_root, readers)
        taken = self.configured_addresses()
        out: dict[str, tuple[Profile, Found]] = {}
        for item in items:
            profile_id = match(item, self.gateway.profiles)
            if profile_id is None:
                continue
            profile = self.gateway.profiles[profile_id]
            address = item.usb if item.kind == "usb" else item.path
            if address in taken:
                continue
            out[auto_id(profile, item)] = (profile, item)
        return out

    async def run(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception as exc:  # noqa: BLE001 - discovery must never stop the daemon
                log.error("auto_discovery_failed", error=repr(exc))
            await asyncio.sleep(self.settings.interval)

    async def sync(self) -> None:
        wanted = await asyncio.to_thread(self.wanted)
        for device_id in [d for d in self.started if d not in wanted]:
            log.info("auto_device_gone", device=device_id)
            self.started.pop(device_id)
            await self.gateway.remove_device(device_id)
        for device_id, (profile, item) in wanted.items():
            if device_id in self.started:
                continue
            cls = self.gateway.driver_classes.get(profile.driver)
            if cls is None:
                log.warning("auto_device_no_driver", device=device_id, driver=profile.driver)
                continue
            address_key = ADDRESS_OPTION[item.kind]
            address = item.usb if item.kind == "usb" else item.path
            try:
                options = cls.options.model_validate({**profile.options, address_key: address})
            except ValidationError as exc:
                log.warning("auto_device_bad_options", device=device_id, error=str(exc))
                continue
            spec = DeviceSpec(
                id=device_id,
                terminal=self.settings.terminal,
                driver=cls.name,
                profile=profile.id,
                options=options,
                profile_data=profile.model_dump(),
            )
            log.info(
                "auto_device_found", device=device_id, profile=profile.id, address=str(address)
            )
            self.started[device_id] = str(address)
            self.gateway.add_device(cls, spec)
