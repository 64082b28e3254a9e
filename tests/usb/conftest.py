"""USB drivers under their own ``Driver.run()``, on a fake bus plugged into pyusb, logs captured."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from structlog.testing import capture_logs

from gatewayd.drivers import DeviceSpec, Driver, RawInput
from gatewayd.events import DeviceState
from gatewayd.plugins import usb_devices
from gatewayd.protocols.samv import IdCard, Sex
from tests.usb.fakes import FakeBus

CARD = IdCard(
    name="张三",
    sex=Sex.MALE,
    nation="汉",
    birth_date="1949-12-31",
    address="北京市东城区景山前街4号",
    id_number="11010519491231002X",
    authority="北京市公安局东城分局",
    valid_from="2015-06-01",
    valid_to="2035-06-01",
)
OTHER_CARD = IdCard(
    name="李四",
    sex=Sex.FEMALE,
    nation="回",
    birth_date="1880-01-01",
    address="广东省",
    id_number="440524188001010014",
    authority="某公安局",
    valid_from="2010-01-01",
    valid_to="long-term",
)


@dataclass
class Harness:
    driver: Driver
    task: asyncio.Task[None] | None = None
    inputs: list[RawInput] = field(default_factory=list)
    states: list[tuple[DeviceState, str | None]] = field(default_factory=list)

    def on_input(self, device: str, raw: RawInput) -> None:
        self.inputs.append(raw)

    def on_state(self, device: str, state: DeviceState, error: str | None) -> None:
        self.states.append((state, error))

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)

    async def state_becomes(self, state: DeviceState, timeout: float = 5.0) -> None:
        await self.until(lambda: self.driver.state == state, timeout)

    def state_names(self) -> list[str]:
        return [state.value for state, _error in self.states]


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> FakeBus:
    fake = FakeBus()
    monkeypatch.setattr(usb_devices, "BACKEND", fake)
    return fake


@pytest.fixture
async def start_driver(
    bus: FakeBus, logs: list[dict[str, Any]]
) -> AsyncIterator[Callable[..., Any]]:
    """``start(cls, **options)`` runs a driver; teardown checks that ``stop()`` is prompt."""
    harnesses: list[Harness] = []

    async def start(cls: type[Driver], **options: Any) -> Harness:
        spec = DeviceSpec(
            id="dev1",
            terminal="T1",
            driver=cls.name,
            profile=None,
            options=cls.options.model_validate(options),
        )
        harness = Harness(driver=cls(spec))
        harness.task = asyncio.create_task(harness.driver.run(harness.on_input, harness.on_state))
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        assert harness.task is not None
        async with asyncio.timeout(1.5):  # a blocked read gives up within SLICE_MS
            await harness.driver.stop()
            if harness.driver.state is not DeviceState.FAILED:  # else asleep in its backoff
                await harness.task
                assert harness.driver.state is DeviceState.STOPPED
        harness.task.cancel()  # as the daemon does after stop()
        with contextlib.suppress(asyncio.CancelledError):
            await harness.task
