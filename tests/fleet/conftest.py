"""A seeded central, a Mosquitto broker and gw-1 (store-1) trusting a fresh HQ signing key."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayd.fleet import build_bundle, generate_keys, load_private_key
from gatewayd.simulate import PtyDevice
from tests.support.broker import Mosquitto
from tests.support.central import CentralProcess, new_secret, seed_demo
from tests.support.gateway import GatewayProcess, write_config

SECRET = new_secret()
DEADLINE = 3.0


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("fleet-central-template")
    keys = seed_demo(workdir, SECRET)
    return workdir / "central.db", keys


@pytest.fixture
def central(tmp_path: Path, seeded: tuple[Path, dict[str, Any]]) -> Iterator[CentralProcess]:
    template, keys = seeded
    workdir = tmp_path / "central"
    workdir.mkdir()
    process = CentralProcess(workdir, template, keys, SECRET).start()
    yield process
    process.stop()


def call(central: CentralProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """An admin request that returns (status, JSON) for errors too."""
    try:
        return 200, central.admin(method, path, body)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Fleet:
    """gw-1 with one or two pty scanners, its config file, and the HQ key that signs."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, central: CentralProcess) -> None:
        self.tmp = tmp_path
        self.broker = broker
        self.central = central
        private, public = generate_keys(tmp_path / "hq")
        self.key = load_private_key(private)
        self.public = public.read_text().strip()
        self.scanners = {name: PtyDevice(tmp_path / name) for name in ("scan1", "scan2")}
        self.plugins_dir = tmp_path / "plugins"
        self.profiles_dir = tmp_path / "profiles"
        self.plugins_dir.mkdir()
        self.profiles_dir.mkdir()
        self.config = tmp_path / "gw" / "gatewayd.toml"
        self.config.parent.mkdir()
        self.http_port: int | None = None
        self.http_token: str | None = None
        self.process: GatewayProcess | None = None

    def device(self, name: str, **options: Any) -> dict[str, Any]:
        entry = {"id": name, "terminal": "pos-1", "port": self.scanners[name].path}
        entry.update(options or {"driver": "serial_scanner"})
        return entry

    def config_text(
        self,
        devices: list[dict[str, Any]],
        *,
        mqtt_url: str | None = None,
        deadline: float = DEADLINE,
    ) -> bytes:
        """A whole gatewayd.toml for gw-1 (written beside the real one, then read back)."""
        scratch = self.config.with_name("scratch.toml")
        write_config(
            scratch,
            mqtt_url=mqtt_url or self.broker.url,
            gateway_id="gw-1",
            store="store-1",
            http_port=self.http_port,
            devices=devices,
            top={"plugins_dir": str(self.plugins_dir), "profiles_dir": str(self.profiles_dir)},
            extra={
                "central": {
                    "url": self.central.url,
                    "key": self.central.keys["gateways"]["gw-1"]["api_key"],
                    "heartbeat_interval": 1,
                },
                "fleet": {"trusted_keys": [self.public], "health_deadline": deadline},
                **({"http": {"token": self.http_token}} if self.http_token else {}),
            },
        )
        data = scratch.read_bytes()
        scratch.unlink()
        return data

    def start(self, devices: list[dict[str, Any]], **options: Any) -> GatewayProcess:
        self.config.write_bytes(self.config_text(devices, **options))
        self.process = GatewayProcess(self.config)
        self.http_port = self.process.http_port
        self.process.start()
        return self.process

    def sign(self, files: dict[str, bytes], **options: Any) -> dict[str, Any]:
        options.setdefault("gateways", ["gw-1"])
        return build_bundle(self.key, files, **options)

    def push(self, bundle: dict[str, Any]) -> int:
        status, body = call(self.central, "POST", "/v1/gateways/gw-1/bundles", bundle)
        assert status == 200, body
        bundle_id: int = body["id"]
        return bundle_id

    def outcome(self, bundle_id: int, timeout: float = 40.0) -> dict[str, Any]:
        """The gw-1 delivery of a bundle once it is no longer pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            delivery: dict[str, Any] = self.central.admin("GET", f"/v1/fleet/bundles/{bundle_id}")[
                "deliveries"
            ][0]
            if delivery["status"] != "pending":
                return delivery
            time.sleep(0.2)
        raise TimeoutError(f"bundle {bundle_id} still pending:\n{self.log()}")

    def log(self) -> str:
        return self.process.log() if self.process else ""

    def devices(self) -> dict[str, str]:
        assert self.process is not None
        status = self.process.status(self.http_token)
        return {d["device"]: d["state"] for d in status["devices"]}

    def wait_devices(self, expected: dict[str, str], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.devices() == expected:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"devices never became {expected}:\n{self.log()[-4000:]}")


@pytest.fixture
def fleet(
    tmp_path: Path, broker: Mosquitto, central: CentralProcess, gateways: list[GatewayProcess]
) -> Iterator[Fleet]:
    the_fleet = Fleet(tmp_path, broker, central)
    yield the_fleet
    if the_fleet.process is not None:
        the_fleet.process.kill()
    for scanner in the_fleet.scanners.values():
        scanner.unplug()
