"""Through a whole gateway (in-process, so it shares the fake bus) to a real Mosquitto broker:
the USB profiles load, the ID card goes out as its ID number only, a call as a phone token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gatewayd.config import load_settings
from gatewayd.daemon import Gateway
from gatewayd.plugins import usb_devices
from gatewayd.protocols.callerid import Call, encode_modem_text
from tests.support.broker import Mosquitto
from tests.support.gateway import write_config
from tests.support.mqtt import subscribed
from tests.usb.conftest import CARD
from tests.usb.fakes import FakeBus, FakeHidCallerIdBox, FakeSamvReader


async def test_id_card_and_call_reach_mqtt_through_their_profiles(
    tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = FakeBus()
    monkeypatch.setattr(usb_devices, "BACKEND", bus)
    reader = bus.attach(FakeSamvReader())
    box = bus.attach(FakeHidCallerIdBox())
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        devices=[
            {"id": "idr", "profile": "usb-routon-samv", "terminal": "pos1", "poll_ms": 50},
            {
                "id": "cid",
                "profile": "usb-callerid-hid-box",
                "terminal": "pos1",
                "usb": "1a2b:3c4d",
            },
        ],
    )
    topic = "gatewayd/v1/s1/terminals/pos1/identify"
    with capture_logs() as logs:
        gateway = Gateway(load_settings(config), config_path=config)
        task = asyncio.create_task(gateway.run(install_signals=False))
        try:
            async with subscribed(broker.port, topic) as sub:
                async with asyncio.timeout(5):
                    while {d.state.value for d in gateway.devices.values()} != {"online"}:
                        await asyncio.sleep(0.02)
                reader.card = CARD
                card_event = (await sub.get()).json()
                box.send(encode_modem_text(Call(number="13812345678"), rings_before=1))
                call_event = (await sub.get()).json()
        finally:
            gateway.request_stop()
            await asyncio.wait_for(task, 10)
    assert (card_event["device"], card_event["method"]) == ("idr", "id_card")
    assert card_event["token"] == {"kind": "id_number", "value": CARD.id_number}
    assert (call_event["device"], call_event["method"]) == ("cid", "caller_id")
    assert call_event["token"] == {
        "kind": "phone",
        "value": "13812345678",
        "mobile": True,
        "rings": 1,
    }
    logged = repr(logs)
    assert CARD.name not in logged and CARD.address not in logged
    assert CARD.id_number not in logged and "13812345678" not in logged
    assert reader.reads() == 1 and box.detaches == 1
