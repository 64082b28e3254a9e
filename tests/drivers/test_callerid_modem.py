"""Caller-ID modems end to end: a modem simulator on a pty → gatewayd → MQTT (and HTTP)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

from gatewayd.simulators import ModemSim
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
from tests.support.gateway import GatewayProcess
from tests.support.mqtt import subscribed


def _device(modem: ModemSim, **options: object) -> dict[str, object]:
    return {
        "id": "line1",
        "driver": "callerid_modem",
        "terminal": "pos1",
        "port": modem.path,
        **options,
    }


async def _call(modem: ModemSim, number: str, **kwargs: Any) -> None:
    await asyncio.to_thread(modem.play_call, number, **kwargs)


async def test_number_published_before_anyone_answers(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    modem = ModemSim(tmp_path / "modem").start()
    start_gateway(tmp_path, broker, gateways, [_device(modem, country="B5")])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "line1", "online")
        call = asyncio.create_task(_call(modem, "13800138000", rings=4, period=0.4))
        event = await next_event(sub)
        assert not call.done()  # still ringing: nobody has picked up yet
        await call
        await no_event(sub, 0.3)  # the later rings add nothing
    assert event["method"] == "caller_id"
    assert event["token"] == {
        "kind": "phone",
        "value": "13800138000",
        "mobile": True,
        "rings": 1,
    }
    assert modem.commands == ["ATZ", "AT E1 V1 Q0", "AT+GCI=B5", "AT+VCID=1"]
    modem.stop()


async def test_usr_chipset_falls_back_to_hash_cid(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    modem = ModemSim(tmp_path / "modem", flavour="usr").start()
    gateway = start_gateway(tmp_path, broker, gateways, [_device(modem)])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "line1", "online")
        await _call(modem, "01087654321", rings=2, period=0.2, name="ZHANG SAN")
        event = await next_event(sub)
    assert event["token"] == {"kind": "phone", "value": "01087654321", "mobile": False, "rings": 1}
    assert modem.commands[-2:] == ["AT+VCID=1", "AT#CID=1"]
    enabled = await wait_log(gateway, "caller_id_enabled")
    assert enabled["command"] == "AT#CID=1"
    modem.stop()


async def test_modem_without_caller_id_fails(tmp_path: Path, broker: Mosquitto, gateways) -> None:
    modem = ModemSim(tmp_path / "modem", flavour="usr").start()
    gateway = start_gateway(tmp_path, broker, gateways, [_device(modem, caller_id=["AT+VCID=1"])])
    async with subscribed(broker.port, DEVICES) as sub:
        await wait_state(sub, "line1", "failed")
    assert "refused every caller-ID command" in gateway.status()["devices"][0]["last_error"]
    modem.stop()


async def test_raw_fsk_packets(tmp_path: Path, broker: Mosquitto, gateways) -> None:
    modem = ModemSim(tmp_path / "modem").start()
    device = _device(modem, format="fsk", caller_id=["AT+VCID=2"])
    start_gateway(tmp_path, broker, gateways, [device])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "line1", "online")
        await _call(modem, "13912345678", rings=2, period=0.2, name="LI SI")
        event = await next_event(sub)
    assert event["token"] == {"kind": "phone", "value": "13912345678", "mobile": True, "rings": 1}
    modem.stop()


async def test_dtmf_caller_id_before_the_first_ring(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    modem = ModemSim(tmp_path / "modem", line="dtmf").start()
    device = _device(modem, format="dtmf", caller_id=["AT+FCLASS=8"])
    start_gateway(tmp_path, broker, gateways, [device])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "line1", "online")
        await _call(modem, "13712345678", rings=2, period=0.2)
        event = await next_event(sub)
    assert event["token"] == {"kind": "phone", "value": "13712345678", "mobile": True, "rings": 0}
    modem.stop()


async def test_private_number_gives_no_event(tmp_path: Path, broker: Mosquitto, gateways) -> None:
    modem = ModemSim(tmp_path / "modem").start()
    gateway = start_gateway(tmp_path, broker, gateways, [_device(modem)])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "line1", "online")
        await _call(modem, "P", rings=2, period=0.2)
        await no_event(sub, 0.5)
    line = await wait_log(gateway, "call_without_number")
    assert line["reason"] == "private"
    modem.stop()


async def test_init_resent_after_the_modem_comes_back(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    modem = ModemSim(tmp_path / "modem").start()
    start_gateway(tmp_path, broker, gateways, [_device(modem)])
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "line1", "online")
        modem.unplug()
        await wait_state(sub, "line1", "offline", timeout=2)
        modem.plug()  # a power-cycled modem: caller ID is off again until re-enabled
        await wait_state(sub, "line1", "online", timeout=3)
        await _call(modem, "13800138000", rings=2, period=0.2)
        event = await next_event(sub)
    assert event["token"]["value"] == "13800138000"
    assert modem.commands.count("AT+VCID=1") == 2
    modem.stop()


def _post(gateway: GatewayProcess, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        gateway.base_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_remote_password_entry(tmp_path: Path, broker: Mosquitto, gateways) -> None:
    modem = ModemSim(tmp_path / "modem", password="4711").start()
    gateway = start_gateway(tmp_path, broker, gateways, [_device(modem)])
    action = "/v1/devices/line1/actions/collect-password"
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "line1", "online")
        status, body = await asyncio.to_thread(_post, gateway, action, {"terminal": "pos1"})
        assert status == 502 and "no recent call" in body["error"]["message"]
        await _call(modem, "13800138000", rings=1, period=0.2)
        await next_event(sub)
        status, body = await asyncio.to_thread(_post, gateway, action, {"terminal": "pos2"})
        assert status == 502 and "pos1" in body["error"]["message"]
        status, body = await asyncio.to_thread(_post, gateway, action, {"terminal": "pos1"})
        assert status == 200 and body["collecting"] is True
        event = await next_event(sub)
    assert event["terminal"] == "pos1"
    assert event["method"] == "caller_id"
    assert event["token"] == {
        "kind": "phone",
        "value": "13800138000",
        "mobile": True,
        "password": "4711",
        "purpose": "password_entry",
    }
    await asyncio.sleep(0.3)  # hang-up and re-init finish after the event
    voice = modem.commands[modem.commands.index("AT+FCLASS=8") :]
    assert voice[:5] == ["AT+FCLASS=8", "AT+VLS=1", "AT+VLS=0", "ATH0", "AT+FCLASS=0"]
    assert voice[-1] == "AT+VCID=1"  # caller ID re-enabled after hanging up
    assert "4711" not in gateway.log()  # a 4-digit PIN escapes the 6+ digit masking rule
    assert await wait_log(gateway, "password_entry_collected")
    modem.stop()


async def test_failed_init_releases_the_port(tmp_path: Path) -> None:
    """The driver base closes only sessions that opened: a failed init must close itself."""
    import pytest

    from gatewayd.drivers import DeviceSpec
    from gatewayd.errors import DeviceFailed
    from gatewayd.plugins.callerid_modem import CallerIdModem, CallerIdOptions

    modem = ModemSim(tmp_path / "modem", flavour="usr").start()
    options = CallerIdOptions(port=modem.path, caller_id=("AT+VCID=1",))
    driver = CallerIdModem(
        DeviceSpec(
            id="line1", terminal="pos1", driver="callerid_modem", profile=None, options=options
        )
    )
    with pytest.raises(DeviceFailed, match="refused every caller-ID command"):
        await driver._open()
    assert driver._writer is None
    assert driver._tasks == set()
    modem.stop()
