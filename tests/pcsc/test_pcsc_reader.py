"""The PC/SC driver against a real pcscd, real pyscard and virtual cards on vpcd readers.

pcscd polls the vpcd readers every 400 ms, so an insertion or removal is seen within ~0.4 s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gatewayd.events import DeviceState
from gatewayd.plugins.pcsc_reader import GET_UID
from gatewayd.protocols.tokens import Token, TokenKind
from tests.support.vpcd_card import VPCD_READERS, VirtualCard, wait_card_state

UID_A = bytes.fromhex("04A1B2C3")
UID_B = bytes.fromhex("0A0B0C0D0E0F10")
KEY = bytes.fromhex("A0A1A2A3A4A5")
TRANSPORT_KEY = b"\xff" * 6


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def until_logged(logs: list[dict[str, Any]], name: str, timeout: float = 5.0) -> dict:
    async with asyncio.timeout(timeout):
        while not events(logs, name):
            await asyncio.sleep(0.02)
    return events(logs, name)[0]


def never_failed(harness: Any) -> bool:
    return all(state is not DeviceState.FAILED for state, _ in harness.states)


async def test_uid_is_read_and_reported(cards: Any, start_driver: Any) -> None:
    harness = await start_driver()
    await harness.state_becomes(DeviceState.ONLINE)
    card = await cards.insert(VirtualCard(uid=UID_A))
    await harness.inputs_reach(1)
    assert harness.inputs[0].token == Token(kind=TokenKind.IC_UID, value="04A1B2C3")
    assert card.apdus == [GET_UID]
    assert harness.driver.state is DeviceState.ONLINE


async def test_card_left_on_the_reader_is_reported_once(cards: Any, start_driver: Any) -> None:
    harness = await start_driver()
    card = await cards.insert(VirtualCard(uid=UID_A))
    await harness.inputs_reach(1)
    await asyncio.sleep(2.0)  # five pcscd polling rounds with the card still there
    assert harness.values == ["04A1B2C3"]
    assert card.apdus == [GET_UID]


async def test_removed_and_put_back_is_reported_again(cards: Any, start_driver: Any) -> None:
    harness = await start_driver()
    first = await cards.insert(VirtualCard(uid=UID_A))
    await harness.inputs_reach(1)
    await cards.remove(first)
    await cards.insert(VirtualCard(uid=UID_B))
    await harness.inputs_reach(2)
    assert harness.values == ["04A1B2C3", "0A0B0C0D0E0F10"]


async def test_same_card_removed_and_put_back_quickly_is_reported_twice(
    cards: Any, start_driver: Any
) -> None:
    harness = await start_driver()
    card = await cards.insert(VirtualCard(uid=UID_A))
    await harness.inputs_reach(1)
    # Put back before the driver's next wait: only the reader's event counter tells.
    await cards.remove(card, wait=False)
    await cards.insert(VirtualCard(uid=UID_A))
    await harness.inputs_reach(2, timeout=5)
    assert harness.values == ["04A1B2C3", "04A1B2C3"]


async def test_card_left_through_a_lost_session_is_not_reported_again(
    cards: Any, start_driver: Any, logs: list[dict[str, Any]]
) -> None:
    harness = await start_driver()
    card = await cards.insert(VirtualCard(uid=UID_A))
    await harness.inputs_reach(1)
    # Lose the PC/SC session under the running driver (as a pcscd restart does): the base
    # reopens it and finds the card it reported still there, its removal never seen.
    await harness.driver._close()
    await until_logged(logs, "card_still_present")
    await harness.state_becomes(DeviceState.ONLINE)
    assert card.apdus == [GET_UID, GET_UID]  # read again to know it is the same card
    assert harness.values == ["04A1B2C3"]


async def test_card_already_present_at_start_is_reported(cards: Any, start_driver: Any) -> None:
    await cards.insert(VirtualCard(uid=UID_B))
    await asyncio.to_thread(wait_card_state, VPCD_READERS[0], True)
    harness = await start_driver()
    await harness.inputs_reach(1)
    assert harness.values == ["0A0B0C0D0E0F10"]


async def test_mifare_number_with_the_right_key(cards: Any, start_driver: Any) -> None:
    card = VirtualCard(blocks={5: b"8800123456".ljust(16, b"\x00")}, keys={1: (KEY, TRANSPORT_KEY)})
    harness = await start_driver(read="mifare", block=5, key="a0a1a2a3a4a5", key_type="A")
    await cards.insert(card)
    await harness.inputs_reach(1)
    assert harness.inputs[0].token == Token(kind=TokenKind.CARD_NUMBER, value="8800123456")
    assert card.apdus == [
        bytes.fromhex("FF82000006A0A1A2A3A4A5"),
        bytes.fromhex("FF860000050100056000"),
        bytes.fromhex("FFB0000510"),
    ]


async def test_mifare_bcd_number_with_key_b(cards: Any, start_driver: Any) -> None:
    block = bytes.fromhex("8800123456") + b"\xff" * 11
    card = VirtualCard(blocks={8: block}, keys={2: (TRANSPORT_KEY, KEY)})
    harness = await start_driver(
        read="mifare", block=8, key=KEY.hex(), key_type="B", encoding="bcd"
    )
    await cards.insert(card)
    await harness.inputs_reach(1)
    assert harness.values == ["8800123456"]
    assert card.apdus[1] == bytes.fromhex("FF860000050100086100")


async def test_mifare_wrong_key_logs_an_error_and_stays_online(
    cards: Any, start_driver: Any, logs: list[dict[str, Any]]
) -> None:
    card = VirtualCard(blocks={5: b"8800123456".ljust(16, b"\x00")}, keys={1: (KEY, KEY)})
    harness = await start_driver(read="mifare", block=5)  # transport key FF..FF: refused
    await cards.insert(card)
    failure = await until_logged(logs, "card_read_failed")
    assert failure["error"] == "authentication_failed"
    assert failure["sw"] == "63 00"
    assert "authenticate" in failure["detail"]
    assert not any(apdu.startswith(b"\xff\xb0") for apdu in card.apdus)
    await asyncio.sleep(1.0)  # the card stays: no retry, no event
    assert harness.inputs == []
    assert len(events(logs, "card_read_failed")) == 1
    assert harness.driver.state is DeviceState.ONLINE
    assert never_failed(harness)
    assert harness.driver.failures == 0


async def test_card_removed_mid_read_gives_no_event(
    cards: Any, start_driver: Any, logs: list[dict[str, Any]]
) -> None:
    harness = await start_driver()
    card = await cards.insert(VirtualCard(uid=UID_A, remove_on=GET_UID))
    await until_logged(logs, "card_removed_during_read")
    assert harness.inputs == []
    assert events(logs, "card_read_failed") == []
    assert harness.driver.state is DeviceState.ONLINE
    assert never_failed(harness)
    await cards.remove(card)
    await cards.insert(VirtualCard(uid=UID_B))
    await harness.inputs_reach(1)
    assert harness.values == ["0A0B0C0D0E0F10"]


async def test_reader_chosen_by_glob_ignores_other_readers(cards: Any, start_driver: Any) -> None:
    harness = await start_driver(reader="Virtual PCD * 01")
    await harness.state_becomes(DeviceState.ONLINE)
    assert harness.driver.reader == "Virtual PCD 00 01"
    await cards.insert(VirtualCard(uid=UID_A), reader=0)
    await cards.insert(VirtualCard(uid=UID_B), reader=1)
    await harness.inputs_reach(1)
    await asyncio.sleep(1.0)
    assert harness.values == ["0A0B0C0D0E0F10"]


async def test_missing_reader_is_offline_and_stop_is_prompt(start_driver: Any) -> None:
    harness = await start_driver(reader="ACS ACR122*")
    await harness.state_becomes(DeviceState.OFFLINE)
    assert "ACS ACR122*" in (harness.driver.last_error or "")
    await asyncio.sleep(0.6)  # now waiting for the reader list to change
    started = time.monotonic()
    await harness.driver.stop()
    await asyncio.wait_for(harness.task, 3)
    assert time.monotonic() - started < 1.5
    assert harness.driver.state is DeviceState.STOPPED


async def test_stop_while_waiting_for_a_card_is_prompt(start_driver: Any) -> None:
    harness = await start_driver()
    await harness.state_becomes(DeviceState.ONLINE)
    await asyncio.sleep(0.3)  # inside SCardGetStatusChange
    started = time.monotonic()
    await harness.driver.stop()
    await asyncio.wait_for(harness.task, 3)
    assert time.monotonic() - started < 1.0
    assert [state for state, _ in harness.states] == [DeviceState.ONLINE, DeviceState.STOPPED]


async def test_pcscd_gone_is_offline_and_back_reads_again(
    pcscd_up: Any, cards: Any, start_driver: Any
) -> None:
    harness = await start_driver()
    await harness.state_becomes(DeviceState.ONLINE)
    await asyncio.to_thread(pcscd_up.stop)
    await harness.state_becomes(DeviceState.OFFLINE)
    assert "pcscd" in (harness.driver.last_error or "")
    await asyncio.to_thread(pcscd_up.start)
    await harness.state_becomes(DeviceState.ONLINE, timeout=10)
    await cards.insert(VirtualCard(uid=UID_A))
    await harness.inputs_reach(1)
    assert harness.values == ["04A1B2C3"]
    assert never_failed(harness)
