"""ID-card readers end to end: a SAM_V reader simulator on a pty → gatewayd → MQTT."""

from __future__ import annotations

from pathlib import Path

from gatewayd.protocols.samv import LONG_TERM, IdCard, Response, Sex
from gatewayd.simulators import DEMO_CARD, IdCardReaderSim
from tests.drivers._helpers import (
    DEVICES,
    IDENTIFY,
    next_event,
    no_event,
    start_gateway,
    wait_log,
    wait_state,
)
from tests.support.broker import Mosquitto
from tests.support.mqtt import subscribed

SECOND_CARD = IdCard(
    name="李四",
    sex=Sex.FEMALE,
    nation="回",
    birth_date="1880-01-01",
    address="广东省某地",
    id_number="440524188001010014",
    authority="某公安局",
    valid_from="2010-01-01",
    valid_to="2030-01-01",
)


def _device(reader: IdCardReaderSim, **options: object) -> dict[str, object]:
    return {
        "id": "idr1",
        "driver": "samv_reader",
        "terminal": "pos1",
        "port": reader.path,
        "poll_ms": 100,
        **options,
    }


async def test_card_read_once_per_stay(tmp_path: Path, broker: Mosquitto, gateways) -> None:
    reader = IdCardReaderSim(DEMO_CARD, tmp_path / "idr").start()
    gateway = start_gateway(tmp_path, broker, gateways, [_device(reader)])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "idr1", "online")
        reader.place()
        event = await next_event(sub)
        await no_event(sub, 0.6)  # the card stays: nothing more
        reader.remove()
        await no_event(sub, 0.3)
        reader.place(SECOND_CARD)
        second = await next_event(sub)
    assert event["method"] == "id_card"
    assert event["terminal"] == "pos1"
    assert event["token"] == {"kind": "id_number", "value": "11010519491231002X"}
    assert second["token"] == {"kind": "id_number", "value": "440524188001010014"}
    assert reader.reads == 2
    assert reader.requests[0] == (0x11, 0xFF)  # SAM status first (the baud probe)
    log = gateway.log()
    for personal in ("张三", "景山前街", "李四", "广东省某地"):
        assert personal not in log
    reader.stop()


async def test_reader_that_keeps_answering_find(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    """Some readers answer find OK while a read card stays: still one event per stay."""
    reader = IdCardReaderSim(DEMO_CARD, tmp_path / "idr", hides_read_card=False).start()
    start_gateway(tmp_path, broker, gateways, [_device(reader)])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "idr1", "online")
        reader.place()
        await next_event(sub)
        await no_event(sub, 0.7)
        reader.remove()
        await no_event(sub, 0.3)
        reader.place()
        await next_event(sub)
    assert reader.reads == 2
    reader.stop()


async def test_baud_rate_is_probed(tmp_path: Path, broker: Mosquitto, gateways) -> None:
    reader = IdCardReaderSim(DEMO_CARD, tmp_path / "idr", baud=19200).start()
    gateway = start_gateway(tmp_path, broker, gateways, [_device(reader)])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "idr1", "online", timeout=8)
        reader.place()
        event = await next_event(sub)
    assert event["token"]["value"] == DEMO_CARD.id_number
    found = await wait_log(gateway, "samv_reader_found")
    assert found["baudrate"] == 19200
    reader.stop()


async def test_publish_identity_adds_name_sex_birth(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    reader = IdCardReaderSim(DEMO_CARD, tmp_path / "idr").start()
    gateway = start_gateway(tmp_path, broker, gateways, [_device(reader, publish_identity=True)])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "idr1", "online")
        reader.place()
        event = await next_event(sub)
    assert event["token"] == {
        "kind": "id_number",
        "value": "11010519491231002X",
        "name": "张三",
        "sex": "male",
        "birth_date": "1949-12-31",
    }
    assert "address" not in event["token"]
    log = gateway.log()
    assert "张三" not in log and "1949-12-31" not in log  # published, never logged
    reader.stop()


class FailingReader(IdCardReaderSim):
    """Answers every read with SW3 41 (read failed), like a card pulled away mid-read."""

    def _answer(self, request):  # type: ignore[no-untyped-def]
        if request.cmd == 0x30:
            self.reads += 1
            return Response(sw3=0x41).encode(), None
        return super()._answer(request)


async def test_read_failure_is_logged_by_name_and_retried(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    reader = FailingReader(DEMO_CARD, tmp_path / "idr").start()
    gateway = start_gateway(tmp_path, broker, gateways, [_device(reader)])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "idr1", "online")
        reader.place()
        messages = await sub.drain(0.8)
    assert [m.topic for m in messages] == []  # no event, and no state change either
    error = await wait_log(gateway, "id_card_error")
    assert error["step"] == "read"
    assert error["status"] == "41"
    assert "read failed" in error["error"]
    assert reader.reads >= 2  # retried at the next polls, the device stays online
    assert gateway.status()["devices"][0]["state"] == "online"
    reader.stop()


def test_long_term_card_round_trips_through_the_simulator_card_file(tmp_path: Path) -> None:
    from gatewayd.simulators import load_card

    card_file = tmp_path / "card.json"
    card_file.write_text(
        '{"name": "王五", "sex": "2", "nation": "01", "birth": "19800101",'
        ' "address": "上海", "id_number": "11010519491231002x", "authority": "某局",'
        ' "valid_from": "20200101", "valid_to": "长期"}',
        encoding="utf-8",
    )
    card = load_card(card_file)
    assert card.sex is Sex.FEMALE
    assert card.nation == "汉"
    assert card.birth_date == "1980-01-01"
    assert card.id_number == "11010519491231002X"
    assert card.valid_to == LONG_TERM
