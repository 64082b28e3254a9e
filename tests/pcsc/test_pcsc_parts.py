"""The PC/SC driver's pure parts: status words, stored numbers, reader names, options."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gatewayd.plugins import pcsc_reader
from gatewayd.plugins.pcsc_reader import (
    AUTH_STATUS_WORDS,
    STATUS_WORDS,
    CardAuthenticationFailed,
    CardCommunicationError,
    CardDataInvalid,
    CardError,
    CardOperationFailed,
    CardUnsupported,
    CardWrongLength,
    PcscOptions,
    PcscReader,
    check_status,
    decode_stored_number,
    is_sector_trailer,
    match_reader,
)

READERS = ["ACS ACR122U PICC Interface 00 00", "Virtual PCD 00 00", "Virtual PCD 00 01"]


def test_status_90_00_returns_the_data() -> None:
    assert check_status(bytes.fromhex("04A1B2C39000"), "get UID", STATUS_WORDS) == bytes.fromhex(
        "04A1B2C3"
    )


@pytest.mark.parametrize(
    ("response", "table", "error", "sw"),
    [
        ("6300", STATUS_WORDS, CardOperationFailed, "63 00"),
        ("6300", AUTH_STATUS_WORDS, CardAuthenticationFailed, "63 00"),
        ("6982", STATUS_WORDS, CardAuthenticationFailed, "69 82"),
        ("6A81", STATUS_WORDS, CardUnsupported, "6A 81"),
        ("6282", STATUS_WORDS, CardWrongLength, "62 82"),
        ("6C04", STATUS_WORDS, CardWrongLength, "6C 04"),
        ("6F00", STATUS_WORDS, CardOperationFailed, "6F 00"),
    ],
)
def test_status_words_map_to_named_errors(
    response: str, table: dict, error: type[CardError], sw: str
) -> None:
    with pytest.raises(error) as caught:
        check_status(bytes.fromhex(response), "step", table)
    assert caught.value.sw_hex == sw
    assert str(caught.value).startswith("step: ")


@pytest.mark.parametrize("response", [b"", b"\x90"])
def test_a_response_without_status_word_is_a_communication_error(response: bytes) -> None:
    with pytest.raises(CardCommunicationError):
        check_status(response, "get UID", STATUS_WORDS)


@given(st.binary(max_size=40))
def test_check_status_returns_data_or_raises_a_card_error(response: bytes) -> None:
    try:
        data = check_status(response, "fuzz", AUTH_STATUS_WORDS)
    except CardError:
        return
    assert response == data + b"\x90\x00"


@pytest.mark.parametrize(
    ("block", "encoding", "number"),
    [
        (b"8800123456".ljust(16, b"\x00"), "ascii", "8800123456"),
        (b"  M-0042".ljust(16, b"\xff"), "ascii", "M-0042"),
        (bytes.fromhex("8800123456") + b"\xff" * 11, "bcd", "8800123456"),
        (bytes.fromhex("F12345") + b"\xff" * 13, "bcd", "12345"),
        (
            bytes.fromhex("00112233445566778899AABBCCDDEEFF"),
            "hex",
            "00112233445566778899AABBCCDDEEFF",
        ),
    ],
)
def test_stored_numbers_decode(block: bytes, encoding: str, number: str) -> None:
    assert decode_stored_number(block, encoding) == number


@pytest.mark.parametrize(
    ("block", "encoding"),
    [
        (bytes(16), "ascii"),
        (b"88\x01123".ljust(16, b"\x00"), "ascii"),
        ("卡号".encode().ljust(16, b"\x00"), "ascii"),
        (b"\xff" * 16, "bcd"),
        (bytes.fromhex("88A0") + b"\xff" * 14, "bcd"),
    ],
)
def test_blocks_without_a_number_are_rejected(block: bytes, encoding: str) -> None:
    with pytest.raises(CardDataInvalid):
        decode_stored_number(block, encoding)


@pytest.mark.parametrize(
    ("pattern", "reader"),
    [
        ("", READERS[0]),
        ("Virtual PCD 00 01", "Virtual PCD 00 01"),
        ("ACS ACR122*", READERS[0]),
        ("Virtual PCD * 01", "Virtual PCD 00 01"),
        ("virtual pcd", "Virtual PCD 00 00"),
        ("Gemalto*", None),
        ("OMNIKEY", None),
    ],
)
def test_reader_names_match_exactly_by_glob_or_substring(pattern: str, reader: str | None) -> None:
    assert match_reader(READERS, pattern) == reader


def test_no_reader_matches_when_there_are_none() -> None:
    assert match_reader([], "") is None


@pytest.mark.parametrize(("block", "trailer"), [(3, True), (7, True), (4, False), (0, False)])
def test_sector_trailers_of_1k(block: int, trailer: bool) -> None:
    assert is_sector_trailer(block) is trailer


def test_sector_trailers_of_4k_large_sectors() -> None:
    assert is_sector_trailer(143) and is_sector_trailer(255)
    assert not is_sector_trailer(131)


def test_options_defaults_and_normalisation() -> None:
    options = PcscOptions(read="mifare", key="a0a1a2a3a4a5")
    assert options.key == "A0A1A2A3A4A5"
    assert (options.block, options.key_type, options.encoding) == (4, "A", "ascii")
    assert PcscOptions().read == "uid"


@pytest.mark.parametrize(
    "options",
    [
        {"key": "FFFF"},
        {"key": "GGGGGGGGGGGG"},
        {"read": "mifare", "block": 7},
        {"block": 256},
        {"key_type": "C"},
        {"encoding": "utf-16"},
        {"baud": 9600},
    ],
)
def test_invalid_options_are_refused(options: dict) -> None:
    with pytest.raises(ValidationError):
        PcscOptions(**options)


def test_plugin_offers_the_driver() -> None:
    assert pcsc_reader.gatewayd_driver_classes() == [PcscReader]
    assert PcscReader.name == "pcsc"
    assert PcscReader.options is PcscOptions


PROFILES = Path(__file__).resolve().parents[2] / "firmware-profiles"
PROFILE_KEYS = {"id", "vendor", "model", "family", "driver", "match", "options", "notes", "unknown"}


@pytest.mark.parametrize("name", ["ic-acs-acr122u", "ic-generic-pcsc"])
def test_ic_reader_profiles_are_valid_driver_options(name: str) -> None:
    profile = tomllib.loads((PROFILES / f"{name}.toml").read_text(encoding="utf-8"))
    assert set(profile) >= PROFILE_KEYS
    assert (profile["id"], profile["family"], profile["driver"]) == (name, "ic_reader", "pcsc")
    assert all(isinstance(fact, str) and fact for fact in profile["unknown"])
    PcscOptions(**profile["options"])


def test_acr122u_profile_matches_its_usb_id_and_reader_name() -> None:
    profile = tomllib.loads((PROFILES / "ic-acs-acr122u.toml").read_text(encoding="utf-8"))
    assert profile["match"] == {"usb": ["072f:2200"], "pcsc_reader": "ACS ACR122*"}
    reader = match_reader(READERS, PcscOptions(**profile["options"]).reader)
    assert reader == "ACS ACR122U PICC Interface 00 00"
