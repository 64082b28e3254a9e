"""A seeded central and gateways linked to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayd.simulate import PtyDevice
from tests.support.broker import Mosquitto
from tests.support.central import CentralProcess, new_secret, seed_demo
from tests.support.gateway import GatewayProcess, write_config

SECRET = new_secret()


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("central-template")
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


class LinkedGateway:
    """gw-1 of store-1, a scanner on pos-1, linked to ``central``."""

    def __init__(
        self,
        tmp_path: Path,
        broker: Mosquitto,
        central_url: str,
        keys: dict[str, Any],
        **central_options: Any,
    ) -> None:
        self.scanner = PtyDevice(tmp_path / "scanner")
        self.config = write_config(
            tmp_path / "gw.toml",
            mqtt_url=broker.url,
            gateway_id="gw-1",
            store="store-1",
            extra={
                "central": {
                    "url": central_url,
                    "key": keys["gateways"]["gw-1"]["api_key"],
                    **central_options,
                },
                # Bursts of thousands of scans (two messages each) in a few seconds.
                "mqtt": {"queue_size": 50_000},
            },
            devices=[
                {
                    "id": "scan1",
                    "driver": "serial_scanner",
                    "terminal": "pos-1",
                    "port": self.scanner.path,
                }
            ],
        )
        self.process = GatewayProcess(self.config)


@pytest.fixture
def linked(
    tmp_path: Path,
    broker: Mosquitto,
    seeded: tuple[Path, dict[str, Any]],
    gateways,
    request: pytest.FixtureRequest,
):
    """Makes gw-1; linked to the ``central`` fixture unless given another URL."""

    def make(url: str | None = None, **options: Any) -> LinkedGateway:
        if url is None:
            url = request.getfixturevalue("central").url
        gateway = LinkedGateway(tmp_path, broker, url, seeded[1], **options)
        gateways.append(gateway.process)
        return gateway

    return make
