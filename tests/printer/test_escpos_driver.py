"""The printer driver's sessions: a TCP printer on 127.0.0.1, a pty serial printer, outages."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gatewayd.events import DeviceState
from gatewayd.plugins.escpos_printer import PrintJobFailed
from tests.printer.fakes import FakeNetworkPrinter, FakeSerialPrinter
from tests.support.net import free_port

HI = bytes.fromhex("1B40 1B7400") + b"Hi\n" + bytes.fromhex("1B64061D5600")
DRAWER = bytes.fromhex("1B700019FA")


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_network_printer_receives_the_exact_bytes(
    network_printer: FakeNetworkPrinter, start_printer: Any
) -> None:
    harness = await start_printer(connection="network", host="127.0.0.1", port=network_printer.port)
    await harness.state_becomes(DeviceState.ONLINE)
    result = await harness.driver.perform("print", {"text": "Hi"})
    assert result["status"] == "printed"
    await harness.driver.perform("open-drawer", {})
    assert bytes(network_printer.received) == HI + DRAWER
    assert {1, 4} <= set(network_printer.queries)  # DLE EOT 1 (online) and 4 (paper)
    assert harness.driver.paper == "ok"


async def test_status_is_polled_while_idle(
    network_printer: FakeNetworkPrinter, start_printer: Any
) -> None:
    harness = await start_printer(connection="network", host="127.0.0.1", port=network_printer.port)
    await harness.state_becomes(DeviceState.ONLINE)
    before = len(network_printer.queries)
    await asyncio.sleep(0.5)  # status_interval 0.1 s
    assert len(network_printer.queries) >= before + 6
    assert network_printer.received == b""


async def test_unreachable_printer_is_offline(start_printer: Any) -> None:
    harness = await start_printer(connection="network", host="127.0.0.1", port=free_port())
    await harness.state_becomes(DeviceState.OFFLINE)
    assert "not reachable" in (harness.driver.last_error or "")


async def test_printer_that_stops_answering_is_offline(
    network_printer: FakeNetworkPrinter, start_printer: Any
) -> None:
    harness = await start_printer(connection="network", host="127.0.0.1", port=network_printer.port)
    await harness.state_becomes(DeviceState.ONLINE)
    network_printer.answer = False
    await harness.state_becomes(DeviceState.OFFLINE)
    assert "does not answer" in (harness.driver.last_error or "")
    network_printer.answer = True
    await harness.state_becomes(DeviceState.ONLINE)


async def test_paper_out_is_offline_until_paper_is_back(
    network_printer: FakeNetworkPrinter, start_printer: Any
) -> None:
    harness = await start_printer(connection="network", host="127.0.0.1", port=network_printer.port)
    await harness.state_becomes(DeviceState.ONLINE)
    network_printer.status[4] = 0x1E  # near end: still printing
    await asyncio.sleep(0.3)
    assert harness.driver.paper == "near_end"
    assert harness.driver.state is DeviceState.ONLINE
    network_printer.status[4] = 0x72
    await harness.state_becomes(DeviceState.OFFLINE)
    assert harness.driver.last_error == "paper out"
    assert harness.driver.paper == "out"
    network_printer.status[4] = 0x12
    await harness.state_becomes(DeviceState.ONLINE)
    assert harness.driver.paper == "ok"


async def test_printer_reporting_offline_is_offline(
    network_printer: FakeNetworkPrinter, start_printer: Any
) -> None:
    network_printer.status[1] = 0x1A  # bit 3: offline (cover open)
    harness = await start_printer(connection="network", host="127.0.0.1", port=network_printer.port)
    await harness.state_becomes(DeviceState.OFFLINE)
    assert "reports offline" in (harness.driver.last_error or "")


async def test_job_waits_while_offline_and_prints_when_the_printer_is_back(
    network_printer: FakeNetworkPrinter, start_printer: Any
) -> None:
    port = network_printer.port
    harness = await start_printer(connection="network", host="127.0.0.1", port=port)
    await harness.state_becomes(DeviceState.ONLINE)
    await network_printer.stop()
    await harness.state_becomes(DeviceState.OFFLINE)
    job = asyncio.create_task(harness.driver.perform("print", {"text": "Hi"}))
    await asyncio.sleep(0.5)
    assert not job.done()
    assert (await harness.driver.perform("status", {}))["queued"] == 1
    back = await FakeNetworkPrinter(port).start()
    try:
        result = await asyncio.wait_for(job, 5)
        assert result["status"] == "printed"
        assert bytes(back.received) == HI
        assert harness.driver.state is DeviceState.ONLINE
        online, offline = DeviceState.ONLINE, DeviceState.OFFLINE
        assert [s for s, _ in harness.states] == [online, offline, online]
    finally:
        await back.stop()


async def test_job_fails_visibly_when_offline_past_the_bound(
    start_printer: Any, logs: list[dict[str, Any]]
) -> None:
    harness = await start_printer(
        connection="network", host="127.0.0.1", port=free_port(), job_timeout=0.5
    )
    await harness.state_becomes(DeviceState.OFFLINE)
    started = asyncio.get_running_loop().time()
    with pytest.raises(PrintJobFailed, match=r"not printed within 0.5s.*offline"):
        await harness.driver.perform("print", {"text": "Hi"})
    assert 0.45 < asyncio.get_running_loop().time() - started < 2.0
    assert (await harness.driver.perform("status", {}))["queued"] == 0
    assert events(logs, "print_job_failed")


async def test_job_cut_off_mid_send_is_sent_again(
    network_printer: FakeNetworkPrinter, start_printer: Any, logs: list[dict[str, Any]]
) -> None:
    harness = await start_printer(connection="network", host="127.0.0.1", port=network_printer.port)
    await harness.state_becomes(DeviceState.ONLINE)
    network_printer.drop_jobs = 1
    result = await asyncio.wait_for(harness.driver.perform("print", {"text": "Hi"}), 5)
    assert result["status"] == "printed"
    assert bytes(network_printer.received) == HI
    assert [entry["attempts"] for entry in events(logs, "print_job_retry")] == [1]
    assert DeviceState.OFFLINE in [state for state, _ in harness.states]


async def test_job_fails_after_max_attempts(
    network_printer: FakeNetworkPrinter, start_printer: Any
) -> None:
    harness = await start_printer(
        connection="network", host="127.0.0.1", port=network_printer.port, max_attempts=2
    )
    await harness.state_becomes(DeviceState.ONLINE)
    network_printer.drop_jobs = 5
    with pytest.raises(PrintJobFailed, match="2 attempts"):
        await asyncio.wait_for(harness.driver.perform("print", {"text": "Hi"}), 5)
    assert network_printer.received == b""
    assert network_printer.drop_jobs == 3
    await harness.state_becomes(DeviceState.ONLINE)


async def test_stop_fails_the_queued_jobs(start_printer: Any) -> None:
    harness = await start_printer(connection="network", host="127.0.0.1", port=free_port())
    await harness.state_becomes(DeviceState.OFFLINE)
    job = asyncio.create_task(harness.driver.perform("open-drawer", {}))
    await asyncio.sleep(0.1)
    await harness.driver.stop()
    with pytest.raises(PrintJobFailed, match="stopped"):
        await asyncio.wait_for(job, 2)
    await asyncio.wait_for(harness.task, 2)
    assert harness.driver.state is DeviceState.STOPPED


async def test_serial_printer_on_a_pty(start_printer: Any) -> None:
    printer = FakeSerialPrinter()
    try:
        harness = await start_printer(connection="serial", port=printer.device, baudrate=19200)
        await harness.state_becomes(DeviceState.ONLINE)
        await harness.driver.perform("print", {"text": "Hi"})
        assert bytes(printer.received) == HI
        assert {1, 4} <= set(printer.queries)
        printer.answer = False
        await harness.state_becomes(DeviceState.OFFLINE)
    finally:
        await harness.driver.stop()
        await asyncio.wait_for(harness.task, 5)
        printer.close()


async def test_missing_serial_port_is_offline(start_printer: Any) -> None:
    harness = await start_printer(connection="serial", port="/dev/does-not-exist")
    await harness.state_becomes(DeviceState.OFFLINE)
    assert "/dev/does-not-exist" in (harness.driver.last_error or "")
