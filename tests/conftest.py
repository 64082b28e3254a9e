"""Fixtures shared by every suite: a real Mosquitto broker and real gatewayd processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.central import logs as central_logs
from tests.support.broker import Mosquitto
from tests.support.gateway import GatewayProcess


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path)
    mosquitto.start()
    yield mosquitto
    mosquitto.kill()


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    """Collects gateway processes started by a test and kills leftovers afterwards."""
    started: list[GatewayProcess] = []
    yield started
    for gateway in started:
        gateway.kill()


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Commands run in-process configure structlog globally; undo it after each test."""
    yield
    central_logs.reset()
