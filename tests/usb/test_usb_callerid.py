"""The USB HID caller-ID box driver against an emulated box, in each of its framings."""

from __future__ import annotations

from typing import Any

import pytest

from gatewayd.events import DeviceState
from gatewayd.plugins.usb_devices import UsbHidCallerId, UsbHidCallerIdOptions, unframe_report
from gatewayd.protocols.callerid import AbsenceReason, Call, encode_mdmf, encode_modem_text
from gatewayd.protocols.tokens import Method, TokenKind, classify
from tests.usb.fakes import FakeBus, FakeHidCallerIdBox

BOX = {"usb": "1a2b:3c4d"}
MOBILE = "13812345678"


def numbers(harness: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(raw.text, dict(raw.extra)) for raw in harness.inputs]


async def test_a_text_report_becomes_a_phone_token_with_its_rings(
    bus: FakeBus, start_driver: Any
) -> None:
    box = bus.attach(FakeHidCallerIdBox())
    harness = await start_driver(UsbHidCallerId, **BOX)
    await harness.state_becomes(DeviceState.ONLINE)
    assert box.detaches == 1 and box.claimed == {0}  # usbhid let go of it first
    box.send(encode_modem_text(Call(number=MOBILE, date="1122", time="1830"), rings_before=1))
    await harness.until(lambda: len(harness.inputs) == 1)
    assert numbers(harness) == [(MOBILE, {"rings": 1})]
    token = classify(harness.inputs[0].text, UsbHidCallerId.method)
    assert (token.kind, token.value, token.extra) == (TokenKind.PHONE, MOBILE, {"mobile": True})


async def test_fsk_packets_behind_a_length_byte(bus: FakeBus, start_driver: Any) -> None:
    box = bus.attach(FakeHidCallerIdBox(report_size=16, length_prefix=True))
    harness = await start_driver(UsbHidCallerId, **BOX, format="fsk", length_prefix=True)
    await harness.state_becomes(DeviceState.ONLINE)
    call = Call(number="02112345678", name="WANG", date="1122", time="0905")
    box.send(b"\x55" * 10 + encode_mdmf(call))
    await harness.until(lambda: len(harness.inputs) == 1)
    assert numbers(harness) == [("02112345678", {"rings": 0})]
    token = classify(harness.inputs[0].text, Method.CALLER_ID)
    assert (token.kind, token.extra) == (TokenKind.PHONE, {"mobile": False})


async def test_dtmf_digits_with_a_report_id_byte(bus: FakeBus, start_driver: Any) -> None:
    box = bus.attach(FakeHidCallerIdBox())
    harness = await start_driver(UsbHidCallerId, **BOX, format="dtmf", header_bytes=1)
    await harness.state_becomes(DeviceState.ONLINE)
    message = b"A" + MOBILE.encode() + b"C"
    for start in range(0, len(message), 7):
        box.queue_in(0x81, (b"\x02" + message[start : start + 7]).ljust(8, b"\x00"))
    await harness.until(lambda: len(harness.inputs) == 1)
    assert numbers(harness) == [(MOBILE, {"rings": 0})]


async def test_a_broken_packet_is_logged_and_the_next_call_still_comes_through(
    bus: FakeBus, start_driver: Any, logs: list[dict[str, Any]]
) -> None:
    box = bus.attach(FakeHidCallerIdBox(length_prefix=True))
    harness = await start_driver(UsbHidCallerId, **BOX, format="fsk", length_prefix=True)
    await harness.state_becomes(DeviceState.ONLINE)
    packet = encode_mdmf(Call(number=MOBILE, date="1122", time="1830"))
    box.send(packet[:-1] + bytes([packet[-1] ^ 1]))
    box.send(packet)
    await harness.until(lambda: len(harness.inputs) == 1)
    assert numbers(harness) == [(MOBILE, {"rings": 0})]
    errors = [e for e in logs if e["event"] == "caller_id_undecodable"]
    assert len(errors) == 1 and "checksum" in errors[0]["error"]
    assert harness.state_names() == ["online"]


async def test_a_partial_message_is_dropped_after_the_idle_time(
    bus: FakeBus, start_driver: Any, logs: list[dict[str, Any]]
) -> None:
    box = bus.attach(FakeHidCallerIdBox())
    harness = await start_driver(UsbHidCallerId, **BOX, format="dtmf", idle_ms=300)
    await harness.state_becomes(DeviceState.ONLINE)
    box.send(b"A13812")  # the end code never comes
    await harness.until(lambda: any(e["event"] == "caller_id_undecodable" for e in logs))
    box.send(b"A" + MOBILE.encode() + b"C")
    await harness.until(lambda: len(harness.inputs) == 1)
    assert numbers(harness) == [(MOBILE, {"rings": 0})]


async def test_a_withheld_number_is_logged_not_emitted(
    bus: FakeBus, start_driver: Any, logs: list[dict[str, Any]]
) -> None:
    box = bus.attach(FakeHidCallerIdBox())
    harness = await start_driver(UsbHidCallerId, **BOX)
    await harness.state_becomes(DeviceState.ONLINE)
    box.send(encode_modem_text(Call(reason=AbsenceReason.PRIVATE), rings_before=0))
    box.send(encode_modem_text(Call(number=MOBILE), rings_before=0))
    await harness.until(lambda: len(harness.inputs) == 1)
    withheld = [e for e in logs if e["event"] == "caller_id_withheld"]
    assert [e["reason"] for e in withheld] == ["private"]
    assert numbers(harness) == [(MOBILE, {"rings": 0})]


async def test_the_box_unplugged_and_back_goes_offline_then_reads_again(
    bus: FakeBus, start_driver: Any
) -> None:
    box = bus.attach(FakeHidCallerIdBox())
    harness = await start_driver(UsbHidCallerId, **BOX)
    await harness.state_becomes(DeviceState.ONLINE)
    box.read_waiting.clear()
    await harness.until(box.read_waiting.is_set)
    box.unplug()
    await harness.state_becomes(DeviceState.OFFLINE)
    box.plug()  # usbhid binds again on replug: the driver must detach it again
    await harness.state_becomes(DeviceState.ONLINE)
    box.send(encode_modem_text(Call(number=MOBILE), rings_before=2))
    await harness.until(lambda: len(harness.inputs) == 1)
    assert numbers(harness) == [(MOBILE, {"rings": 2})]
    assert box.detaches == 2
    assert harness.state_names() == ["online", "offline", "online"]


@pytest.mark.parametrize(
    ("report", "options", "payload"),
    [
        (b"RING\r\n\x00\x00", {}, b"RING\r\n"),
        (b"RING\r\n\x00\x00", {"strip_padding": False}, b"RING\r\n\x00\x00"),
        (b"\x01\x03abcde", {"header_bytes": 1, "length_prefix": True}, b"abc"),
        (b"\xf2xyz", {"length_prefix": True, "length_mask": 0x0F}, b"xy"),
        (b"", {"length_prefix": True}, b""),
    ],
)
def test_report_framing(report: bytes, options: dict[str, Any], payload: bytes) -> None:
    opts = UsbHidCallerIdOptions(usb="1a2b:3c4d", **options)
    assert unframe_report(report, opts) == payload
