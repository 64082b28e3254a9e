"""The USB SAM_V ID-card reader driver against an emulated reader on a fake pyusb backend."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from gatewayd.events import DeviceState
from gatewayd.plugins.usb_devices import UsbSamvReader
from gatewayd.protocols.tokens import TokenKind
from tests.usb.conftest import CARD, OTHER_CARD
from tests.usb.fakes import FakeBus, FakeSamvReader

FIND = (0x20, 0x01)
READER = {"usb": "0400:C35A", "poll_ms": 20}


def personal_data_logged(logs: list[dict[str, Any]]) -> list[str]:
    text = repr(logs)
    secrets = (CARD.name, CARD.address, CARD.authority, CARD.id_number, OTHER_CARD.name)
    return [secret for secret in secrets if secret in text]


async def test_a_card_becomes_an_id_number_token_split_over_the_four_pipes(
    bus: FakeBus, start_driver: Any, logs: list[dict[str, Any]]
) -> None:
    reader = bus.attach(FakeSamvReader())
    harness = await start_driver(UsbSamvReader, **READER)
    await harness.state_becomes(DeviceState.ONLINE)
    assert reader.set_configurations == 1 and reader.claimed == {0}
    reader.card = CARD
    await harness.until(lambda: len(harness.inputs) == 1)
    token = harness.inputs[0].token
    assert token is not None
    assert (token.kind, token.value, token.extra) == (TokenKind.ID_NUMBER, CARD.id_number, {})
    first = reader.requests.index((0x30, 0x01))
    assert reader.requests[first - 2 : first + 1] == [FIND, (0x20, 0x02), (0x30, 0x01)]
    assert reader.violations == []  # every head was 7 bytes on 0x02, every body on 0x06
    assert any(entry["event"] == "id_card_read" for entry in logs)
    assert personal_data_logged(logs) == []


def finds_since(reader: FakeSamvReader, start: int) -> int:
    return reader.requests[start:].count(FIND)


async def test_a_card_left_in_the_field_is_read_and_reported_once_until_it_leaves(
    bus: FakeBus, start_driver: Any
) -> None:
    reader = bus.attach(FakeSamvReader())
    harness = await start_driver(UsbSamvReader, **READER)
    reader.card = CARD
    await harness.until(lambda: len(harness.inputs) == 1)
    count = len(reader.requests)
    await harness.until(lambda: finds_since(reader, count) >= 5)
    assert len(harness.inputs) == 1 and reader.reads() == 1  # found again, never re-read

    reader.card = None
    count = len(reader.requests)
    await harness.until(lambda: finds_since(reader, count) >= 2)
    reader.card = CARD
    await harness.until(lambda: len(harness.inputs) == 2)
    reader.card = None
    count = len(reader.requests)
    await harness.until(lambda: finds_since(reader, count) >= 2)
    reader.card = OTHER_CARD
    await harness.until(lambda: len(harness.inputs) == 3)
    values = [raw.token.value for raw in harness.inputs if raw.token]
    assert values == [CARD.id_number, CARD.id_number, OTHER_CARD.id_number]


async def test_a_single_missed_find_does_not_report_the_card_again(
    bus: FakeBus, start_driver: Any
) -> None:
    reader = bus.attach(FakeSamvReader())
    harness = await start_driver(UsbSamvReader, **READER, absent_polls=3)
    reader.card = CARD
    await harness.until(lambda: len(harness.inputs) == 1)
    reader.card = None
    count = len(reader.requests)
    await harness.until(lambda: finds_since(reader, count) >= 2)  # two finds fail: < 3
    reader.card = CARD
    count = len(reader.requests)
    await harness.until(lambda: finds_since(reader, count) >= 3)
    assert len(harness.inputs) == 1 and reader.reads() == 1


async def test_a_bad_checksum_is_logged_without_an_event_and_the_reader_goes_on(
    bus: FakeBus, start_driver: Any, logs: list[dict[str, Any]]
) -> None:
    reader = bus.attach(FakeSamvReader())
    reader.corrupt_reads = 1
    reader.card = CARD
    harness = await start_driver(UsbSamvReader, **READER)
    await harness.until(lambda: len(harness.inputs) == 1)
    assert reader.reads() == 2  # the spoilt answer, then a good one
    errors = [entry for entry in logs if entry["event"] == "samv_frame_error"]
    assert len(errors) == 1
    assert errors[0]["step"] == "read" and "checksum" in errors[0]["error"]
    assert harness.state_names() == ["online"]
    assert personal_data_logged(logs) == []


async def test_unplugged_mid_read_goes_offline_and_reads_again_when_plugged_back(
    bus: FakeBus, start_driver: Any
) -> None:
    reader = bus.attach(FakeSamvReader())
    harness = await start_driver(UsbSamvReader, **READER)
    await harness.state_becomes(DeviceState.ONLINE)
    reader.respond = False
    reader.read_waiting.clear()
    await harness.until(reader.read_waiting.is_set)  # the driver waits on 0x81
    reader.unplug()
    await harness.state_becomes(DeviceState.OFFLINE)
    assert "device gone" in (harness.states[-1][1] or "")
    opened = bus.opened
    await asyncio.sleep(0.6)  # absent: retried quickly, found missing every time
    assert harness.driver.state is DeviceState.OFFLINE
    assert "no USB device 0400:c35a" in (harness.driver.last_error or "")
    assert bus.opened == opened  # a missing device is never opened

    reader.respond = True
    reader.card = CARD
    reader.plug()
    await harness.state_becomes(DeviceState.ONLINE)
    await harness.until(lambda: len(harness.inputs) == 1)
    assert harness.state_names() == ["online", "offline", "online"]


async def test_a_card_left_on_the_reader_through_a_replug_is_not_reported_again(
    bus: FakeBus, start_driver: Any
) -> None:
    reader = bus.attach(FakeSamvReader())
    reader.card = CARD
    harness = await start_driver(UsbSamvReader, **READER)
    await harness.until(lambda: len(harness.inputs) == 1)
    reader.unplug()
    await harness.state_becomes(DeviceState.OFFLINE)
    reader.plug()
    await harness.state_becomes(DeviceState.ONLINE)
    await harness.until(lambda: reader.reads() == 2)  # read to learn which card it is
    count = len(reader.requests)
    await harness.until(lambda: finds_since(reader, count) >= 3)
    assert len(harness.inputs) == 1 and reader.reads() == 2
    reader.card = None
    count = len(reader.requests)
    await harness.until(lambda: finds_since(reader, count) >= 2)
    reader.card = CARD
    await harness.until(lambda: len(harness.inputs) == 2)


async def test_a_reader_that_stops_answering_fails_and_is_reopened(
    bus: FakeBus, start_driver: Any
) -> None:
    reader = bus.attach(FakeSamvReader())
    reader.respond = False
    harness = await start_driver(UsbSamvReader, **READER, response_timeout_ms=200)
    await harness.state_becomes(DeviceState.FAILED)
    assert "no complete answer within 200 ms" in (harness.driver.last_error or "")
    reader.respond = True
    reader.card = CARD
    await harness.until(lambda: len(harness.inputs) == 1, timeout=5)
    assert harness.state_names()[:3] == ["online", "failed", "online"]


async def test_endpoints_are_options_for_a_reader_with_one_bulk_pair(
    bus: FakeBus, start_driver: Any
) -> None:
    reader = bus.attach(FakeSamvReader(single_pipe=True))
    reader.card = CARD
    wrong = await start_driver(UsbSamvReader, **READER)
    await wrong.state_becomes(DeviceState.FAILED)
    assert "no endpoint 0x02, 0x06, 0x85 (it has 0x01, 0x81)" in (wrong.driver.last_error or "")
    await wrong.driver.stop()

    pipes = {"ep_out_header": 1, "ep_out_body": 1, "ep_in_header": 0x81, "ep_in_body": 0x81}
    right = await start_driver(UsbSamvReader, **READER, **pipes)
    await right.until(lambda: len(right.inputs) == 1)
    assert right.inputs[0].token is not None
    assert right.inputs[0].token.value == CARD.id_number
    assert reader.violations == []


async def test_the_serial_number_picks_one_of_two_identical_readers(
    bus: FakeBus, start_driver: Any
) -> None:
    first = bus.attach(FakeSamvReader(serial="A0001", address=5))
    second = bus.attach(FakeSamvReader(serial="B0002", address=6))
    first.card, second.card = OTHER_CARD, CARD
    harness = await start_driver(UsbSamvReader, **READER, serial_number="B0002")
    await harness.until(lambda: len(harness.inputs) == 1)
    assert harness.inputs[0].token is not None
    assert harness.inputs[0].token.value == CARD.id_number
    assert first.requests == []


async def test_a_udev_device_node_path_names_the_reader(
    bus: FakeBus, start_driver: Any, tmp_path: Path
) -> None:
    other = bus.attach(FakeSamvReader(bus=1, address=5))
    reader = bus.attach(FakeSamvReader(bus=3, address=7))
    other.card = reader.card = CARD
    link = tmp_path / "usb-routon-samv"  # as /dev/gatewayd/<profile-id> from the udev rules
    os.symlink("/dev/bus/usb/003/007", link)
    harness = await start_driver(UsbSamvReader, usb=str(link), poll_ms=20)
    await harness.until(lambda: len(harness.inputs) == 1)
    assert other.requests == [] and reader.reads() == 1


async def test_identity_fields_only_with_publish_identity_and_never_logged(
    bus: FakeBus, start_driver: Any, logs: list[dict[str, Any]]
) -> None:
    reader = bus.attach(FakeSamvReader())
    reader.card = CARD
    harness = await start_driver(UsbSamvReader, **READER, publish_identity=True)
    await harness.until(lambda: len(harness.inputs) == 1)
    token = harness.inputs[0].token
    assert token is not None
    assert token.extra == {"name": "张三", "sex": "male", "birth_date": "1949-12-31"}
    assert personal_data_logged(logs) == []


async def test_a_faulty_sam_fails_the_device_and_other_statuses_are_logged(
    bus: FakeBus, start_driver: Any, logs: list[dict[str, Any]]
) -> None:
    reader = bus.attach(FakeSamvReader())
    reader.find_status = 0x24  # unknown error: logged, polled past
    harness = await start_driver(UsbSamvReader, **READER)
    await harness.until(lambda: reader.requests.count(FIND) >= 3)
    assert harness.driver.state is DeviceState.ONLINE
    errors = [e for e in logs if e["event"] == "id_card_error"]
    assert errors and errors[0]["step"] == "find" and errors[0]["status"] == "24"

    reader.find_status = 0x60  # SAM self-test failed: a reopen (after backoff) may cure it
    await harness.state_becomes(DeviceState.FAILED)
    assert "find: status 60" in (harness.driver.last_error or "")
    reader.find_status = None
    reader.card = CARD
    await harness.until(lambda: len(harness.inputs) == 1)
