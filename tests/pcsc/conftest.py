"""A real pcscd with two vpcd readers, virtual cards, and the real driver under its own ``run()``.

The session starts its own pcscd (``tests.support.vpcd_card.PcscdProcess``). pcscd's socket
path is fixed, so a pcscd we did not start (the system one) makes every test here fail with
instructions rather than quietly testing against a daemon with unknown readers, or stopping a
daemon that is not ours.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from structlog.testing import capture_logs

from gatewayd.drivers import DeviceSpec, RawInput
from gatewayd.events import DeviceState
from gatewayd.plugins.pcsc_reader import PcscOptions, PcscReader
from tests.support.vpcd_card import (
    VPCD_READERS,
    PcscdProcess,
    VirtualCard,
    wait_card_state,
)


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscdProcess]:
    daemon = PcscdProcess(tmp_path_factory.mktemp("pcscd"))
    problem = daemon.preflight()
    if problem:
        pytest.fail(f"cannot run the PC/SC tests: {problem}", pytrace=False)
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture
def pcscd_up(pcscd: PcscdProcess) -> PcscdProcess:
    """pcscd running at the start of the test, even if an earlier test stopped it."""
    pcscd.start()
    return pcscd


class Cards:
    """Virtual cards inserted by a test; removed, and seen removed by pcscd, afterwards."""

    def __init__(self) -> None:
        self._inserted: list[tuple[VirtualCard, int]] = []

    async def insert(self, card: VirtualCard, reader: int = 0) -> VirtualCard:
        await asyncio.to_thread(card.insert, reader)
        self._inserted.append((card, reader))
        return card

    async def remove(self, card: VirtualCard, *, wait: bool = True) -> None:
        await asyncio.to_thread(card.remove)
        readers = [r for c, r in self._inserted if c is card]
        self._inserted = [(c, r) for c, r in self._inserted if c is not card]
        if wait:
            for reader in readers:
                await asyncio.to_thread(wait_card_state, VPCD_READERS[reader], False)

    async def remove_all(self) -> None:
        for card, _reader in list(self._inserted):
            await self.remove(card)


@pytest.fixture
async def cards(pcscd_up: PcscdProcess) -> AsyncIterator[Cards]:
    inserted = Cards()
    yield inserted
    await inserted.remove_all()


@dataclass
class Harness:
    """A driver running under the base's ``run()``, with what it reported."""

    driver: PcscReader
    task: asyncio.Task[None]
    inputs: list[RawInput] = field(default_factory=list)
    states: list[tuple[DeviceState, str | None]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def inputs_reach(self, count: int, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: len(self.inputs) >= count, timeout)

    async def state_becomes(self, state: DeviceState, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: self.driver.state == state, timeout)

    @property
    def values(self) -> list[str]:
        return [raw.token.value for raw in self.inputs if raw.token is not None]


@pytest.fixture
async def start_driver(pcscd_up: PcscdProcess) -> AsyncIterator[Callable[..., Any]]:
    harnesses: list[Harness] = []

    async def start(**options: Any) -> Harness:
        spec = DeviceSpec(
            id="ic1",
            terminal="T1",
            driver="pcsc",
            profile=None,
            options=PcscOptions(**{"reader": VPCD_READERS[0], **options}),
        )
        driver = PcscReader(spec)
        harness: Harness

        def on_input(device: str, raw: RawInput) -> None:
            harness.inputs.append(raw)
            harness.changed.set()

        def on_state(device: str, state: DeviceState, error: str | None) -> None:
            harness.states.append((state, error))
            harness.changed.set()

        task = asyncio.create_task(driver.run(on_input, on_state))
        harness = Harness(driver=driver, task=task)
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        await harness.driver.stop()
        await asyncio.wait_for(harness.task, 5)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured
