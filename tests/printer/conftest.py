"""A printer driver under its own ``run()``, a TCP printer on 127.0.0.1, captured logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from structlog.testing import capture_logs

from gatewayd.drivers import DeviceSpec
from gatewayd.events import DeviceState
from gatewayd.plugins.escpos_printer import EscposOptions, EscposPrinter
from tests.printer.fakes import FakeNetworkPrinter


@dataclass
class Harness:
    driver: EscposPrinter
    task: asyncio.Task[None]
    states: list[tuple[DeviceState, str | None]] = field(default_factory=list)

    async def state_becomes(self, state: DeviceState, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while self.driver.state != state:
                await asyncio.sleep(0.01)


@pytest.fixture
async def start_printer() -> AsyncIterator[Callable[..., Any]]:
    harnesses: list[Harness] = []

    async def start(terminal: str = "T1", **options: Any) -> Harness:
        defaults = {"status_interval": 0.1, "retry_interval": 0.05, "reply_timeout": 0.3}
        spec = DeviceSpec(
            id="printer1",
            terminal=terminal,
            driver="escpos",
            profile=None,
            options=EscposOptions(**{**defaults, **options}),
        )
        driver = EscposPrinter(spec)
        harness: Harness

        def on_state(device: str, state: DeviceState, error: str | None) -> None:
            harness.states.append((state, error))

        def on_input(device: str, raw: Any) -> None:
            raise AssertionError("a printer has no input")

        task = asyncio.create_task(driver.run(on_input, on_state))
        harness = Harness(driver=driver, task=task)
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        await harness.driver.stop()
        await asyncio.wait_for(harness.task, 5)


@pytest.fixture
async def network_printer() -> AsyncIterator[FakeNetworkPrinter]:
    printer = await FakeNetworkPrinter().start()
    yield printer
    await printer.stop()


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured
