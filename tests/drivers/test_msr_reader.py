"""Serial magstripe readers end to end: swipes on a pty → gatewayd → MQTT."""

from __future__ import annotations

from pathlib import Path

from gatewayd.simulate import PtyDevice
from gatewayd.simulators import demo_swipe
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


def _device(port: str, **options: object) -> dict[str, object]:
    return {"id": "msr1", "terminal": "pos1", "port": port, **options}


async def test_swipe_gives_the_track2_card_number(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    reader = PtyDevice(tmp_path / "msr")
    gateway = start_gateway(
        tmp_path, broker, gateways, [_device(reader.path, profile="msr-generic-serial")]
    )
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "msr1", "online")
        reader.write(demo_swipe("6225880137706181"))
        event = await next_event(sub)
        reader.write(b"%E?;8800001234567890=30121010000?\r\n")  # track 1 unreadable
        second = await next_event(sub)
        reader.write(b"%E?;E?\r\n")  # nothing readable: logged, no event
        await no_event(sub, 0.4)
    assert event["method"] == "magstripe"
    assert event["token"] == {
        "kind": "card_number",  # not a UnionPay payment code, though it starts with 62
        "value": "6225880137706181",
        "track": 2,
        "check_digit": True,
    }
    assert second["token"]["value"] == "8800001234567890"
    assert (await wait_log(gateway, "msr_track_error"))["tracks"] == [1]
    unreadable = await wait_log(gateway, "msr_unreadable_swipe")
    assert "no readable track" in unreadable["reason"]
    assert "6225880137706181" not in gateway.log()
    reader.close()


async def test_card_number_rule_from_the_profile(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    """A chain whose number sits in track 2's discretionary data, without a suffix."""
    reader = PtyDevice(tmp_path / "msr")
    start_gateway(
        tmp_path,
        broker,
        gateways,
        [_device(reader.path, driver="msr_reader", flush_timeout_ms=100)],
        device_toml='card_number = [{track = 2, field = "discretionary", start = 0, stop = 8}]',
    )
    async with subscribed(broker.port, IDENTIFY, DEVICES) as sub:
        await wait_state(sub, "msr1", "online")
        reader.write(b";6000001111=301210177123456000?")  # no CR: flushed after 100 ms
        event = await next_event(sub)
        reader.write(b";6000001111?\r")  # no discretionary data: no number by this rule
        await no_event(sub, 0.4)
    assert event["token"] == {
        "kind": "card_number",
        "value": "77123456",
        "track": 2,
        "check_digit": False,
    }
    reader.close()
