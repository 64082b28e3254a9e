"""Exact ESC/POS bytes, through the driver's ``dummy`` connection (python-escpos ``Dummy``)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gatewayd.errors import UnsupportedAction
from gatewayd.plugins import escpos_printer
from gatewayd.plugins.escpos_printer import (
    EscposOptions,
    EscposPrinter,
    PrintRequestInvalid,
    kv_line,
    mask_card,
    paper_state,
    text_width,
    yuan,
)

INIT, CUT = bytes.fromhex("1B40"), bytes.fromhex("1B64061D5600")  # ESC @; feed 6, GS V 0
RULE = b"-" * 32 + b"\n"
MEMBER = {
    "card_number": "8800123456781234",
    "level": "金卡",
    "points": 1280,
    "balance_fen": 12345,
    "member_code": "96000000000000000017",
}
# QR, native (GS ( k): model 2, module size 6, error correction L, store, print.
QR_MEMBER_CODE = (
    bytes.fromhex("1D286B040031413200 1D286B0300314306 1D286B0300314530")
    + bytes.fromhex("1D286B17003150 30")
    + b"96000000000000000017"
    + bytes.fromhex("1D286B0300315130")
)
MEMBER_SLIP_ZH = (
    INIT
    + bytes.fromhex("1B4501 1B6101")  # bold, centred
    + "会员信息\n".encode("gb18030")
    + bytes.fromhex("1B4500 1B6100 1B7400")  # bold off, left, code page 0
    + RULE
    + "卡号".encode("gb18030") + b" " * 20 + b"****1234\n"
    + "等级".encode("gb18030") + b" " * 24 + "金卡\n".encode("gb18030")
    + "积分".encode("gb18030") + b" " * 24 + b"1280\n"
    + "储值余额".encode("gb18030") + b" " * 16 + "123.45元\n".encode("gb18030")
    + RULE
    + bytes.fromhex("1B6101") + QR_MEMBER_CODE + b"\n" + bytes.fromhex("1B6100")
    + CUT
)  # fmt: skip


@pytest.fixture
async def dummy(start_printer: Any) -> EscposPrinter:
    harness = await start_printer(connection="dummy", width=32)
    return harness.driver


async def test_text(dummy: EscposPrinter) -> None:
    result = await dummy.perform("print", {"text": "Hi"})
    assert result["status"] == "printed"
    assert result["bytes"] == 14
    assert dummy.dummy_output == INIT + bytes.fromhex("1B7400") + b"Hi\n" + CUT


async def test_member_slip(dummy: EscposPrinter) -> None:
    await dummy.perform("print", {"template": "member_slip", "data": MEMBER})
    assert dummy.dummy_output == MEMBER_SLIP_ZH


async def test_member_slip_in_english_without_code_or_balance(start_printer: Any) -> None:
    harness = await start_printer(connection="dummy", width=32, language="en", cut=False)
    data = {"card_number": "1234", "level": "GOLD", "points": 0}
    await harness.driver.perform("print", {"template": "member_slip", "data": data})
    assert harness.driver.dummy_output == (
        INIT
        + bytes.fromhex("1B4501 1B6101 1B7400")
        + b"MEMBER\n"
        + bytes.fromhex("1B4500 1B6100")
        + RULE
        + b"Card" + b" " * 24 + b"****\n"
        + b"Level" + b" " * 23 + b"GOLD\n"
        + b"Points" + b" " * 25 + b"0\n"
        + b"Balance" + b" " * 24 + b"-\n"
        + RULE
    )  # fmt: skip


@pytest.mark.parametrize(
    ("params", "expected"),
    [({}, "1B700019FA"), ({"pin": 2}, "1B700019FA"), ({"pin": 5}, "1B700119FA")],
)
async def test_drawer_kick(dummy: EscposPrinter, params: dict, expected: str) -> None:
    await dummy.perform("open-drawer", params)
    assert dummy.dummy_output == bytes.fromhex(expected)


async def test_drawer_pin_from_options(start_printer: Any) -> None:
    harness = await start_printer(connection="dummy", drawer_pin=5)
    await harness.driver.perform("open-drawer", {})
    assert harness.driver.dummy_output == bytes.fromhex("1B700119FA")


async def test_receipt_template(dummy: EscposPrinter) -> None:
    data = {"title": "X", "lines": [["Tea", "12.00"]], "footer": "Thanks"}
    await dummy.perform("print", {"template": "receipt", "data": data})
    assert dummy.dummy_output == (
        INIT
        + bytes.fromhex("1B4501 1B6101 1B7400")
        + b"X\n"
        + bytes.fromhex("1B4500 1B6100")
        + b"Tea" + b" " * 24 + b"12.00\n"
        + b"Thanks\n"
        + CUT
    )  # fmt: skip


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"template": "nope"},
        {"text": 42},
        {"text": "x", "template": "member_slip"},
        {"template": "member_slip", "data": ["x"]},
        {"template": "member_slip", "data": {"points": "many"}},
        {"template": "member_slip", "data": {"balance_fen": 1.5}},
        {"template": "member_slip", "data": {"balance_fen": True}},
        {"template": "receipt", "data": {"lines": [["only label"]]}},
    ],
)
async def test_bad_print_requests_are_refused(dummy: EscposPrinter, params: dict) -> None:
    with pytest.raises(PrintRequestInvalid):
        await dummy.perform("print", params)
    assert dummy.dummy_output == b""


async def test_bad_drawer_pin_is_refused(dummy: EscposPrinter) -> None:
    with pytest.raises(PrintRequestInvalid):
        await dummy.perform("open-drawer", {"pin": 3})


async def test_unknown_action(dummy: EscposPrinter) -> None:
    with pytest.raises(UnsupportedAction):
        await dummy.perform("reboot", {})


async def test_status_action(dummy: EscposPrinter) -> None:
    status = await dummy.perform("status", {})
    assert status == {"state": "online", "paper": "unknown", "queued": 0, "last_error": None}


@pytest.mark.parametrize(
    ("fen", "text"), [(0, "0.00"), (5, "0.05"), (12345, "123.45"), (-1234, "-12.34"), (100, "1.00")]
)
def test_yuan_from_fen(fen: int, text: str) -> None:
    assert yuan(fen) == text


@pytest.mark.parametrize(
    ("number", "masked"), [("8800123456781234", "****1234"), ("12345", "****2345"), ("123", "****")]
)
def test_card_numbers_show_the_last_four_only(number: str, masked: str) -> None:
    assert mask_card(number) == masked


def test_lines_count_cjk_as_two_columns() -> None:
    assert text_width("积分1") == 5
    assert kv_line("积分", "10", 8) == "积分  10"
    assert kv_line("储值余额", "123.45元", 12) == "储值余额\n    123.45元"


@pytest.mark.parametrize(
    ("status", "paper"), [(0x12, "ok"), (0x1E, "near_end"), (0x72, "out"), (0x7E, "out")]
)
def test_paper_sensor_status(status: int, paper: str) -> None:
    assert paper_state(status) == paper


@pytest.mark.parametrize(
    "options",
    [
        {"connection": "network"},
        {"connection": "network", "host": "10.0.0.9", "port": "/dev/ttyS0"},
        {"connection": "serial"},
        {"connection": "serial", "port": 9100},
        {"connection": "usb", "vendor_id": "04b8"},
        {"connection": "bluetooth"},
        {"connection": "dummy", "drawer_pin": 3},
        {"connection": "dummy", "colour": "red"},
    ],
)
def test_invalid_options_are_refused(options: dict) -> None:
    with pytest.raises(ValidationError):
        EscposOptions(**options)


def test_usb_ids_accept_hex_strings() -> None:
    options = EscposOptions(connection="usb", vendor_id="04b8", product_id="0x0e15")
    assert (options.vendor_id, options.product_id) == (0x04B8, 0x0E15)


def test_plugin_offers_the_driver() -> None:
    assert escpos_printer.gatewayd_driver_classes() == [EscposPrinter]
    assert EscposPrinter.name == "escpos"


PROFILES = Path(__file__).resolve().parents[2] / "firmware-profiles"
PROFILE_KEYS = {"id", "vendor", "model", "family", "driver", "match", "options", "notes", "unknown"}


@pytest.mark.parametrize("name", ["printer-epson-tm-t20", "printer-xprinter-xp58"])
def test_printer_profiles_are_valid_driver_options(name: str) -> None:
    profile = tomllib.loads((PROFILES / f"{name}.toml").read_text(encoding="utf-8"))
    assert set(profile) >= PROFILE_KEYS
    assert (profile["id"], profile["family"], profile["driver"]) == (name, "printer", "escpos")
    assert all(isinstance(fact, str) and fact for fact in profile["unknown"])
    # A device entry supplies what the profile leaves open (the XP-58's connection).
    options = EscposOptions(
        **{"connection": "serial", "port": "/dev/ttyUSB0", **profile["options"]}
    )
    slip = escpos_printer.render_member_slip({"member_code": "96000000000000000017"}, options)
    assert slip.startswith(INIT)


def test_tm_t20_profile_is_the_usb_id_it_matches() -> None:
    profile = tomllib.loads((PROFILES / "printer-epson-tm-t20.toml").read_text(encoding="utf-8"))
    options = EscposOptions(**profile["options"])
    assert profile["match"]["usb"] == [f"{options.vendor_id:04x}:{options.product_id:04x}"]
    assert (options.width, options.profile) == (48, "TM-T20II")
